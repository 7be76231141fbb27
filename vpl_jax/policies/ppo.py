"""PPO with a tanh-Gaussian policy, PureJaxRL-style: one ``jit`` for a whole training run.

    >>> env = LatentReward(envs.make("navigation"), table_sampler(thetas), oracle_reward)
    >>> ppo = make_train(env, PPOConfig())
    >>> runner_state, metrics = jax.jit(ppo.train)(key)                   # one seed
    >>> runner_state, metrics = jax.jit(jax.vmap(ppo.train))(keys)        # S seeds at once

Training is also chunkable, for progress bars and checkpoints: ``ppo.init(key)`` returns the
whole training state as a plain pytree (:class:`RunnerState`), and
``ppo.train_chunk(runner_state, num_updates)`` runs that many updates (``num_updates`` is static);
``train`` is ``train_chunk(init(key), config.num_updates)``, and two chunks give bit-identical
results to one. The learning-rate schedule reads the optimiser's own step count, so it continues
across chunks.

One update (``_update_step``), in the order the code runs:

1. roll the policy out for ``num_steps`` steps in ``num_envs`` environments (``lax.scan`` over
   ``_env_step``, ``vmap`` over environments), auto-resetting finished episodes; then, if
   ``make_train`` was given a ``rollout_reward`` hook, replace the rollout's rewards by what it
   returns (see below);
2. divide rewards by the running standard deviation of the discounted return (optional; learned
   rewards come at arbitrary scales, e.g. VPL-SPO's win probabilities differ by a few percent);
3. GAE advantages, bootstrapping truncated episodes (time limit, not failure) with the value of
   the observation they ended in — ``r + gamma * V(s_final)`` — and terminated ones with 0;
4. update the observation normaliser with the rollout's observations (as Brax's PPO does, before
   the gradient steps, so the clipped ratio also limits the policy change the new statistics
   cause);
5. ``update_epochs`` passes of clipped-surrogate SGD over ``num_minibatches`` shuffled minibatches.

**The rollout-reward hook.** Some objectives score a whole trajectory against other rollouts of
the *current* policy, which a per-step environment reward cannot see: Nash-MD's return is a
trajectory's win probability against opponents drawn from the current policy (mixed with a
reference), with a KL penalty to the reference (:mod:`vpl_jax.nash.control`).
``make_train(env, config, rollout_reward=hook, hook_state=s0)`` calls
``hook(distribution, policy, traj, key, state) -> (reward f32[T, B], metrics, state)`` once per
update, right after the rollout and before reward normalisation and GAE: ``distribution(policy,
obs)`` is the policy's action distribution, ``policy`` the :class:`PolicyParams` the rollout used,
``traj`` the rollout (:class:`Transition` fields with leading axes ``[T, B]``), ``state`` the
hook's own state (a pytree of arrays, ``s0`` at the start, carried in
``RunnerState.hook_state``; e.g. the mode weights of Nash-MD's mixed policy); ``reward`` replaces
``traj.reward`` and ``metrics`` (scalars) join the update's metrics. Without a hook nothing
changes (not even the PRNG stream).

Observations are normalised by running mean and standard deviation (Brax's
``running_statistics``), except the trailing latent ``z`` appended by
:class:`~vpl_jax.policies.wrappers.LatentReward`: its scale is already meaningful, and a test
user's ``z`` may lie where training ``z`` barely varied, where normalising would blow it up.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.envs.base import Env, State
from brax.training.acme import running_statistics

from vpl_jax.checks import (
    Choice,
    ConfigError,
    DataWarning,
    Each,
    Float,
    Int,
    TrainingDivergedError,
    check_config,
    checked,
)
from vpl_jax.policies.networks import (
    ACTIVATIONS,
    ActorCritic,
    entropy_estimate,
    log_prob_of_pre_squash,
    tanh_gaussian,
)
from vpl_jax.policies.wrappers import latent_size, observation_size, wrap_for_training


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters. Defaults train a latent-conditioned navigation policy on 2 CPU cores.

    Attributes:
      total_timesteps: environment steps of a full ``train`` run (rounded down to whole updates).
      num_envs: B, parallel environments.
      num_steps: T, rollout length per update; an update uses ``B * T`` transitions.
      update_epochs: passes over the rollout per update.
      num_minibatches: minibatches per pass; must divide ``B * T``.
      learning_rate: Adam's step size (linearly annealed to 0 if ``anneal_lr``).
      anneal_lr: anneal the learning rate linearly over ``total_timesteps``.
      gamma: discount.
      gae_lambda: GAE's lambda.
      clip_eps: PPO's ratio clipping.
      clip_value: also clip the value update to ``clip_eps`` around the rollout's value (off by
        default: with unnormalised returns it slows value learning).
      ent_coef: weight of the entropy bonus (a one-sample estimate for the squashed policy).
      vf_coef: weight of the value loss.
      max_grad_norm: global gradient-norm clipping.
      hidden_sizes: widths of the actor's and the critic's hidden layers.
      activation: hidden activation, one of tanh, relu, swish, elu.
      init_log_std: initial log standard deviation of the pre-squash Gaussian.
      state_dependent_std: the standard deviation is a head of the actor (a function of the
        observation and the latent z) instead of one learned vector for every state and user;
        see :mod:`vpl_jax.policies.networks` for why a latent-conditioned policy needs it (on
        highway's mixed-weight populations it lifts the oracle's minority returns by 5-11;
        on navigation's two goals it costs about 1-3 of ~33). ``False`` is PureJaxRL's.
      normalize_observations: normalise observations (not the latent) by running statistics.
      obs_clip: clip normalised observations to ``[-obs_clip, obs_clip]``.
      reward_scale: multiplies rewards before GAE (values are learned on this scale).
      normalize_rewards: divide rewards by the running standard deviation of the discounted
        return (as Gym's ``NormalizeReward``), so learned rewards of any scale train alike.
      center_rewards: subtract the running mean of the per-step reward first. A constant offset
        (e.g. VPL-SPO's win probabilities, about 0.5 per step) otherwise dominates the return's
        spread and drowns the signal. Only for tasks without early termination, where an offset
        does not change the optimal policy (navigation, highway; not the ant).
      episode_length: time limit of training episodes; ``None`` uses ``env.episode_length``.
      action_repeat: environment steps per policy step (Brax's ``EpisodeWrapper``).
      bootstrap_truncation: bootstrap episodes cut by the time limit with the value of their
        final observation (``False`` treats them as terminal, as many PPO codes do).
    """

    total_timesteps: int = checked(1_000_000, Int(ge=1))
    num_envs: int = checked(256, Int(ge=1))
    num_steps: int = checked(40, Int(ge=1))
    update_epochs: int = checked(4, Int(ge=1))
    num_minibatches: int = checked(4, Int(ge=1))
    learning_rate: float = checked(1e-3, Float(gt=0))
    anneal_lr: bool = True
    gamma: float = checked(0.99, Float(ge=0, le=1))
    gae_lambda: float = checked(0.95, Float(ge=0, le=1))
    clip_eps: float = checked(0.2, Float(gt=0))
    clip_value: bool = False
    ent_coef: float = checked(0.0, Float(ge=0))  # a negative weight maximises the loss term
    vf_coef: float = checked(0.5, Float(ge=0))
    max_grad_norm: float = checked(0.5, Float(gt=0))
    hidden_sizes: tuple[int, ...] = checked((64, 64), Each(Int(ge=1), min_count=1))
    activation: str = checked("tanh", Choice(ACTIVATIONS))
    # exp(-10)..exp(2): beyond, the initial policy is deterministic or its squashed actions
    # saturate at the bounds (an initial std of e^50 is a coin flip between -1 and 1).
    init_log_std: float = checked(-0.5, Float(ge=-10, le=2))
    state_dependent_std: bool = True
    normalize_observations: bool = True
    obs_clip: float = checked(10.0, Float(gt=0))
    reward_scale: float = checked(1.0, Float(gt=0))
    normalize_rewards: bool = True
    center_rewards: bool = False
    episode_length: int | None = checked(None, Int(ge=1, optional=True))
    action_repeat: int = checked(1, Int(ge=1))
    bootstrap_truncation: bool = True

    def __post_init__(self):
        check_config(self)
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"PPOConfig.num_minibatches={self.num_minibatches}: must divide "
                f"num_envs * num_steps = {self.batch_size}"
            )
        if not self.normalize_rewards and not 1e-2 <= self.reward_scale <= 1e2:
            warnings.warn(
                f"PPOConfig.reward_scale={self.reward_scale:g} with normalize_rewards=False: the "
                f"critic learns returns {self.reward_scale:g} times their size and PPO may not "
                f"learn at all (at 1e6 the navigation oracle's success was seen to fall from 1 "
                f"to 0); keep normalize_rewards, or a scale in [0.01, 100]",
                DataWarning,
                stacklevel=2,
            )

    @property
    def batch_size(self) -> int:
        """Transitions per update, ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def env_steps_per_update(self) -> int:
        return self.batch_size * self.action_repeat

    @property
    def num_updates(self) -> int:
        """Updates in a full ``train`` run."""
        return max(1, self.total_timesteps // self.env_steps_per_update)


class RunnerState(NamedTuple):
    """Everything a training run carries between updates: a plain pytree of arrays."""

    params: Any  # network parameters
    opt_state: optax.OptState
    obs_stats: running_statistics.RunningStatisticsState  # over the O - Z normalised entries
    reward_stats: running_statistics.RunningStatisticsState  # of the per-step reward, f32[]
    return_stats: running_statistics.RunningStatisticsState  # of the discounted return, f32[]
    discounted_return: jax.Array  # f32[B] each environment's discounted return so far
    env_state: State  # B environments (leading axis B)
    key: jax.Array
    update: jax.Array  # i32[]: updates done so far
    hook_state: Any  # the rollout-reward hook's state (f32[0] without a hook)


class PolicyParams(NamedTuple):
    """What acting needs: the network parameters and the observation statistics."""

    params: Any
    obs_stats: running_statistics.RunningStatisticsState


class Transition(NamedTuple):
    """One step of one environment (a rollout stacks them to ``[T, B, ...]``)."""

    obs: jax.Array  # f32[O] observation the action was taken in (raw, z included)
    pre_squash: jax.Array  # f32[A] Gaussian sample u; the action was tanh(u)
    log_prob: jax.Array  # f32[] log pi(tanh(u) | obs) under the rollout's policy
    value: jax.Array  # f32[] V(obs) under the rollout's critic
    reward: jax.Array  # f32[] scaled reward of the step
    done: jax.Array  # f32[] 1 if the episode ended with this step (terminated or truncated)
    truncation: jax.Array  # f32[] 1 if it ended by the time limit
    final_obs: jax.Array  # f32[O] the observation the step led to, before any reset
    episode_metrics: dict  # f32[] each: the finished episode's sums (valid where done)


class PPO(NamedTuple):
    """The pure functions of one PPO configuration (see the module docstring)."""

    init: Callable[[jax.Array], RunnerState]
    train_chunk: Callable[[RunnerState, int], tuple[RunnerState, dict]]
    train: Callable[[jax.Array], tuple[RunnerState, dict]]
    policy_params: Callable[[RunnerState], PolicyParams]
    act: Callable[..., jax.Array]
    config: PPOConfig
    env: Env  # the training environment (with the episode and auto-reset wrappers)
    # distribution(policy, obs: f32[..., O]) -> tanh-Gaussian over f32[..., A] actions.
    distribution: Callable[[PolicyParams, jax.Array], Any] | None = None
    # value(policy, obs: f32[..., O]) -> f32[...]: the critic, on PPO's normalised reward scale.
    value: Callable[[PolicyParams, jax.Array], jax.Array] | None = None


#: ``hook(distribution, policy, traj, key, state) -> (reward f32[T, B], metrics, state)``: see
#: the module docstring ("The rollout-reward hook").
RolloutReward = Callable[
    [Callable[[PolicyParams, jax.Array], Any], PolicyParams, Transition, jax.Array, Any],
    tuple[jax.Array, dict, Any],
]


def generalized_advantages(
    value: jax.Array,
    reward: jax.Array,
    done: jax.Array,
    last_value: jax.Array,
    gamma: float,
    gae_lambda: float,
    truncation: jax.Array | None = None,
    final_value: jax.Array | None = None,
) -> jax.Array:
    """GAE (Schulman et al., 2016) along the leading time axis.

    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}`` with
    ``delta_t = reward_t + gamma * (1 - done_t) * value_{t+1} - value_t``, where ``value_T`` is
    ``last_value`` and ``done_t`` means step t ended its episode (so ``value_{t+1}`` belongs to
    the next episode and is not used).

    With ``truncation`` and ``final_value``, an episode cut by the time limit at step t
    (``done_t = truncation_t = 1``) is bootstrapped: its last TD error is
    ``reward_t + gamma * final_value_t - value_t``, as if the episode went on from its final
    observation — the same advantages as for the untruncated prefix ending in that observation.

    Args:
      value, reward, done: f32[T, ...].
      last_value: f32[...], the value of the observation after the last step.
      truncation: f32[T, ...] 1 where step t ended its episode by the time limit (None: never).
      final_value: f32[T, ...] the value of the observation step t ended in, before any reset
        (read only where ``truncation`` is 1).

    Returns:
      f32[T, ...] advantages; the value targets are ``advantages + value``.
    """
    chex.assert_equal_shape([value, reward, done])
    chex.assert_shape(last_value, value.shape[1:])
    if (truncation is None) != (final_value is None):
        raise ValueError("truncation and final_value go together (both or neither)")
    if truncation is not None:
        chex.assert_equal_shape([value, truncation, final_value])
        reward = reward + gamma * truncation * final_value

    def _gae_step(carry, t):
        gae, next_value = carry
        value, reward, done = t
        delta = reward + gamma * next_value * (1 - done) - value
        gae = delta + gamma * gae_lambda * (1 - done) * gae
        return (gae, value), gae

    _, advantages = jax.lax.scan(
        _gae_step, (jnp.zeros_like(last_value), last_value), (value, reward, done), reverse=True
    )
    return advantages


def policy_network(config: PPOConfig, action_size: int) -> ActorCritic:
    """The actor-critic network PPO builds for ``config`` (also for params trained elsewhere,
    e.g. behaviour-cloned references, and handed to PPO)."""
    return ActorCritic(
        action_size=action_size,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        init_log_std=config.init_log_std,
        state_dependent_std=config.state_dependent_std,
    )


def make_train(
    env: Env,
    config: PPOConfig,
    rollout_reward: RolloutReward | None = None,
    hook_state: Any = None,
) -> PPO:
    """Builds PPO for ``env`` (a task, or a task in :class:`LatentReward`).

    ``env`` is unbatched and un-reset; ``make_train`` adds the time limit and auto-reset. Pure
    Python: it may be called inside ``jax.vmap`` with an ``env`` whose reward closes over traced
    arrays. ``rollout_reward``, if given, rescores every rollout, starting from its state
    ``hook_state`` (see the module docstring). Returns a :class:`PPO` whose functions are pure
    and not yet jitted.
    """
    if hook_state is None:
        hook_state = jnp.zeros((0,))
    episode_length = config.episode_length or getattr(env, "episode_length", None)
    if episode_length is None:
        raise ValueError("PPOConfig.episode_length is required: the env has no episode_length")
    train_env = wrap_for_training(env, episode_length, config.action_repeat)
    obs_size = observation_size(env)
    num_latent = latent_size(env)
    num_normalised = obs_size - num_latent
    action_size = env.action_size
    network = policy_network(config, action_size)
    num_updates = config.num_updates
    schedule = (
        optax.linear_schedule(
            config.learning_rate,
            0.0,
            num_updates * config.update_epochs * config.num_minibatches,
        )
        if config.anneal_lr
        else config.learning_rate
    )
    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(schedule, eps=1e-5)
    )

    def normalise(obs_stats, obs: jax.Array) -> jax.Array:
        """f32[..., O] -> f32[..., O]: normalised task observation, latent passed through."""
        if not config.normalize_observations:
            return obs
        x = running_statistics.normalize(
            obs[..., :num_normalised], obs_stats, max_abs_value=config.obs_clip
        )
        return jnp.concatenate([x, obs[..., num_normalised:]], axis=-1)

    def apply(params, obs_stats, obs):
        """(dist over f32[..., A], value f32[...]) for raw observations ``obs: f32[..., O]``."""
        mean, log_std, value = network.apply(params, normalise(obs_stats, obs))
        return tanh_gaussian(mean, log_std), value

    def distribution(policy: PolicyParams, obs: jax.Array):
        """The tanh-Gaussian action distribution for raw observations ``obs: f32[..., O]``."""
        return apply(policy.params, policy.obs_stats, obs)[0]

    def value(policy: PolicyParams, obs: jax.Array) -> jax.Array:
        """f32[...]: the critic's value of raw observations ``obs: f32[..., O]`` (z included),
        on the scale it was learned (rewards scaled, and normalised if configured; see
        :func:`vpl_jax.policies.critic_values` for reward units)."""
        return apply(policy.params, policy.obs_stats, obs)[1]

    def init(key: jax.Array) -> RunnerState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = network.init(k_net, jnp.zeros((obs_size,)))
        env_state = jax.vmap(train_env.reset)(jax.random.split(k_env, config.num_envs))
        chex.assert_shape(env_state.obs, (config.num_envs, obs_size))
        return RunnerState(
            params=params,
            opt_state=tx.init(params),
            obs_stats=running_statistics.init_state(jnp.zeros((num_normalised,))),
            reward_stats=running_statistics.init_state(jnp.zeros(())),
            return_stats=running_statistics.init_state(jnp.zeros(())),
            discounted_return=jnp.zeros((config.num_envs,)),
            env_state=env_state,
            key=k_run,
            update=jnp.zeros((), jnp.int32),
            hook_state=hook_state,
        )

    def _loss(params, obs_stats, batch, key):
        traj, advantages, targets = batch
        dist, value = apply(params, obs_stats, traj.obs)
        log_prob = log_prob_of_pre_squash(dist, traj.pre_squash)

        value_loss = jnp.square(value - targets)
        if config.clip_value:
            clipped = traj.value + jnp.clip(value - traj.value, -config.clip_eps, config.clip_eps)
            value_loss = jnp.maximum(value_loss, jnp.square(clipped - targets))
        value_loss = 0.5 * value_loss.mean()

        log_ratio = log_prob - traj.log_prob
        ratio = jnp.exp(log_ratio)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        surrogate = jnp.minimum(
            ratio * advantages,
            jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps) * advantages,
        )
        policy_loss = -surrogate.mean()
        entropy = entropy_estimate(dist, key).mean()
        total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
        return total, {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            # Schulman's low-variance estimator of KL(old || new).
            "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
            "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > config.clip_eps),
        }

    def _update_step(runner_state: RunnerState, _):
        # Read by name (not unpacked by position), so adding a field cannot shift the others.
        params, opt_state = runner_state.params, runner_state.opt_state
        obs_stats, reward_stats = runner_state.obs_stats, runner_state.reward_stats
        return_stats, discounted_return = runner_state.return_stats, runner_state.discounted_return
        env_state, key, hook_state = (
            runner_state.env_state,
            runner_state.key,
            runner_state.hook_state,
        )

        # 1. Rollout.
        def _env_step(carry, _):
            env_state, key = carry
            key, k_act = jax.random.split(key)
            dist, value = apply(params, obs_stats, env_state.obs)
            u = dist.distribution.sample(seed=k_act)
            next_state = train_env.step_batch(env_state, jnp.tanh(u))
            transition = Transition(
                obs=env_state.obs,
                pre_squash=u,
                log_prob=log_prob_of_pre_squash(dist, u),
                value=value,
                reward=next_state.reward * config.reward_scale,
                done=next_state.done,
                truncation=next_state.info["truncation"],
                final_obs=next_state.info["final_obs"],
                episode_metrics=next_state.info["episode_metrics"],
            )
            return (next_state, key), transition

        (env_state, key), traj = jax.lax.scan(_env_step, (env_state, key), None, config.num_steps)
        chex.assert_shape(traj.reward, (config.num_steps, config.num_envs))
        hook_metrics = {}
        if rollout_reward is not None:
            key, k_hook = jax.random.split(key)
            policy = PolicyParams(params, obs_stats)
            reward, hook_metrics, hook_state = rollout_reward(
                distribution, policy, traj, k_hook, hook_state
            )
            chex.assert_shape(reward, traj.reward.shape)
            traj = traj._replace(reward=reward * config.reward_scale)

        # 2. Reward normalisation: a shift only on request (it would change what ending an
        # episode early is worth), then a scale.
        reward = traj.reward
        if config.center_rewards:
            reward_stats = running_statistics.update(reward_stats, reward)
            reward = reward - reward_stats.mean
        if config.normalize_rewards:

            def _accumulate(g, t):
                reward, done = t
                g = reward + config.gamma * g
                return g * (1 - done), g

            discounted_return, returns = jax.lax.scan(
                _accumulate, discounted_return, (reward, traj.done)
            )
            return_stats = running_statistics.update(return_stats, returns)
            reward = reward / return_stats.std

        # 3. GAE. A truncated episode continues beyond the time limit in the MDP we mean, so its
        # last reward gets gamma * V(final observation); a terminated one's future is worth 0.
        _, last_value = apply(params, obs_stats, env_state.obs)
        truncation = traj.truncation if config.bootstrap_truncation else None
        final_value = (
            apply(params, obs_stats, traj.final_obs)[1] if truncation is not None else None
        )
        advantages = generalized_advantages(
            traj.value,
            reward,
            traj.done,
            last_value,
            config.gamma,
            config.gae_lambda,
            truncation=truncation,
            final_value=final_value,
        )
        targets = advantages + traj.value

        # 4. Observation statistics, from this rollout.
        if config.normalize_observations:
            obs_stats = running_statistics.update(obs_stats, traj.obs[..., :num_normalised])

        # 5. Minibatch epochs.
        def _update_epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm, k_ent = jax.random.split(key, 3)
            batch = (traj, advantages, targets)
            batch = jax.tree.map(lambda x: x.reshape((config.batch_size, *x.shape[2:])), batch)
            permutation = jax.random.permutation(k_perm, config.batch_size)
            minibatches = jax.tree.map(
                lambda x: x[permutation].reshape((config.num_minibatches, -1, *x.shape[1:])),
                batch,
            )

            def _update_minibatch(carry, inputs):
                params, opt_state = carry
                minibatch, k = inputs
                grads, losses = jax.grad(_loss, has_aux=True)(params, obs_stats, minibatch, k)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), losses

            (params, opt_state), losses = jax.lax.scan(
                _update_minibatch,
                (params, opt_state),
                (minibatches, jax.random.split(k_ent, config.num_minibatches)),
            )
            return (params, opt_state, key), losses

        (params, opt_state, key), losses = jax.lax.scan(
            _update_epoch, (params, opt_state, key), None, config.update_epochs
        )

        # Episodes that ended in this rollout: their returns of the environment's reward (the
        # training reward unless a rollout_reward hook replaced it; a hook reports its own
        # metrics) and the sums of the environment's metrics (e.g. the task's own reward under
        # LatentReward).
        ended = traj.done
        num_ended = ended.sum()
        metrics = {
            f"episode_{name}": jnp.sum(value * ended) / jnp.maximum(num_ended, 1)
            for name, value in traj.episode_metrics.items()
        }
        metrics["episode_return"] = metrics.pop("episode_sum_reward")
        metrics["episodes"] = num_ended
        metrics["env_steps"] = (runner_state.update + 1) * config.env_steps_per_update
        metrics["return_std"] = return_stats.std
        metrics.update(jax.tree.map(jnp.mean, losses))
        metrics.update(hook_metrics)

        runner_state = RunnerState(
            params=params,
            opt_state=opt_state,
            obs_stats=obs_stats,
            reward_stats=reward_stats,
            return_stats=return_stats,
            discounted_return=discounted_return,
            env_state=env_state,
            key=key,
            update=runner_state.update + 1,
            hook_state=hook_state,
        )
        return runner_state, metrics

    def train_chunk(runner_state: RunnerState, num_updates: int) -> tuple[RunnerState, dict]:
        """Runs ``num_updates`` (static) updates; metrics have a leading axis ``[num_updates]``."""
        return jax.lax.scan(_update_step, runner_state, None, num_updates)

    def train(key: jax.Array) -> tuple[RunnerState, dict]:
        """A full run of ``config.num_updates`` updates from ``init(key)``."""
        return train_chunk(init(key), num_updates)

    def policy_params(runner_state: RunnerState) -> PolicyParams:
        return PolicyParams(runner_state.params, runner_state.obs_stats)

    def act(policy: PolicyParams, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """f32[..., A] action for ``obs: f32[..., O]`` (z included): the mode-like
        ``tanh(mean)`` if ``key`` is None, else a sample."""
        dist, _ = apply(policy.params, policy.obs_stats, obs)
        if key is None:
            return jnp.tanh(dist.distribution.loc)
        return jnp.tanh(dist.distribution.sample(seed=key))

    return PPO(
        init=init,
        train_chunk=train_chunk,
        train=train,
        policy_params=policy_params,
        act=act,
        config=config,
        env=train_env,
        distribution=distribution,
        value=value,
    )


#: PPO's loss metrics (means over an update's minibatches): NaN or inf in any means divergence.
LOSSES = ("policy_loss", "value_loss", "entropy")


def check_converged(metrics: dict) -> None:
    """Raises :class:`~vpl_jax.checks.TrainingDivergedError` when one of PPO's :data:`LOSSES` in
    ``metrics`` (a chunk's, as :meth:`PPO.train_chunk` returns them: a leading update axis,
    then any run axes) is NaN or inf. A diverged PPO goes on with NaN params and its policy's
    returns come out NaN; a host read per chunk stops it where it happened instead."""
    for name in LOSSES:
        if name not in metrics:
            continue
        loss = np.asarray(metrics[name])
        bad = ~np.isfinite(loss)
        if not bad.any():
            continue
        where = tuple(np.argwhere(bad)[0])
        run = f" (run {where[1:] if len(where) > 2 else where[1]})" if len(where) > 1 else ""
        steps = np.asarray(metrics["env_steps"])[where] if "env_steps" in metrics else None
        at = f"at {int(steps)} env steps" if steps is not None else f"in update {where[0]}"
        raise TrainingDivergedError(
            f"PPO diverged: {name} is {loss[where]} {at}{run}; lower ppo.learning_rate, keep "
            "ppo.max_grad_norm, or check the reward for NaN or inf"
        )


def train_chunked(
    init: Callable[[], Any],
    train_chunk: Callable[[Any, int], tuple[Any, dict]],
    total: int,
    chunk_size: int,
    checkpointer=None,
    desc: str = "PPO",
) -> tuple[Any, dict]:
    """``(state, history)`` of ``total`` PPO updates run in jitted chunks of ``chunk_size``
    (:func:`~vpl_jax.runtime.checkpoint.run_chunked`: a progress bar, and with a
    ``checkpointer`` saves between chunks and resumes a repeated call), stopping with
    :class:`~vpl_jax.checks.TrainingDivergedError` after the first chunk whose losses are NaN
    or inf (:func:`check_converged`, before a diverged state is saved or trained on).

    ``init() -> state``; ``train_chunk(state, n) -> (state, metrics)`` with a leading update
    axis on the metrics (as :meth:`PPO.train_chunk`; already jitted). :func:`train_ppo` is one
    :class:`PPO`'s run; :class:`vpl_jax.pipeline.PolicyTrainer` runs R at once through it.
    """
    from vpl_jax.runtime.checkpoint import run_chunked  # lazy: orbax is slow to import

    def chunk(state, n):
        state, metrics = train_chunk(state, n)
        if not isinstance(metrics["policy_loss"], jax.core.Tracer):  # a structure trace
            check_converged(metrics)
        return state, metrics

    return run_chunked(init, chunk, total, chunk_size, checkpointer=checkpointer, desc=desc)


def train_ppo(
    ppo: PPO,
    key: jax.Array,
    total: int,
    chunk_size: int,
    checkpointer=None,
    desc: str = "PPO",
) -> tuple[RunnerState, dict]:
    """``(runner state, history)`` of ``total`` updates of ``ppo`` from ``ppo.init(key)``, in
    jitted chunks of ``chunk_size`` (:func:`train_chunked`). The same numbers as
    ``ppo.train_chunk(ppo.init(key), total)``; ``history``'s leaves lead with ``total``."""
    init = jax.jit(ppo.init)
    train_chunk = jax.jit(ppo.train_chunk, static_argnums=1)
    return train_chunked(lambda: init(key), train_chunk, total, chunk_size, checkpointer, desc)
