"""Brax-style wrappers for policy training: a per-episode latent with its reward, and auto-reset.

``LatentReward`` turns any task into the environment a latent-conditioned policy is trained in:
at every episode start it draws ``z = z_sampler(key)``, appends ``z`` to the observation, and
replaces the reward with ``reward_fn(next_state, z)`` (the task's own reward is kept as
``metrics["task_reward"]``, so Brax's episode wrapper sums it per episode). All four policy
variants go through it:

=================  =============================================  ================================
variant            ``z_sampler``                                  ``reward_fn``
=================  =============================================  ================================
BTL                :func:`no_latent` (``z: f32[0]``)              ``learned_reward(r(x))``
VPL, VPL+scaling   :func:`table_sampler` of training users'       ``learned_reward(r(x, z))``
                   posterior means, :func:`posterior_sampler`,    (scaled or not)
                   or :func:`prior_sampler`
oracle             :func:`table_sampler` of true ``theta``        :func:`oracle_reward`
=================  =============================================  ================================

``x`` is the step's reward-model input of the model's kind (``"transition"``: the observation
before the step, the action and the observation after it; see :func:`~vpl_jax.rewards.
step_inputs`): the reward function sees the whole transition, not only the state it led to.

Samplers and reward functions are pure; they may close over traced arrays (e.g. a per-seed reward
model's parameters inside ``jax.vmap``), so one trainer can be ``vmap``-ed over reward models.

``AutoResetWrapper`` differs from Brax's on purpose: Brax's restores the *first* state of each
environment (same start, same ``info``; the step counter in ``info["t"]`` and the latent would
carry over), whereas ours resets with a fresh key, so every episode draws a new start and a new
``z``. It also records the observation the episode ended in (``info["final_obs"]``), so PPO can
bootstrap the value of truncated episodes. Over a batch of environments, :meth:`AutoResetWrapper.
step_batch` runs those resets only on steps where an episode ended (Brax's wrapper gets the same
saving by never resetting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import chex
import jax
import jax.numpy as jnp
from brax.envs.base import Env, State, Wrapper
from brax.envs.wrappers.training import EpisodeWrapper

from vpl_jax.rewards.batch import step_inputs
from vpl_jax.rewards.scaling import ScaleMethod, scale_rewards

ZSampler = Callable[[jax.Array], jax.Array]  # key -> f32[Z]
RewardFn = Callable[[State, jax.Array], jax.Array]  # (next_state, z f32[Z]) -> f32[]


def observation_size(env: Env) -> int:
    """The observation size of ``env``, from an abstract trace (Brax's property runs a reset)."""
    return jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1]


def latent_size(env: Env) -> int:
    """Z: the number of trailing observation entries that are the latent (0 when unwrapped)."""
    return getattr(env, "latent_size", 0)


class LatentReward(Wrapper):
    """Draws ``z`` per episode, appends it to the observation, rewards ``reward_fn(next, z)``.

    ``reward_fn`` sees the inner environment's next state: ``next_state.obs`` is the observation
    *without* ``z`` (what a learned reward was trained on), ``next_state.info["features"]`` the
    task's features, and — for this call only, not in the returned state —
    ``next_state.info["prev_obs"]`` (the observation before the step, without ``z``) and
    ``next_state.info["action"]``, so a reward can read the whole transition. The task's own
    reward is kept in ``metrics["task_reward"]``; ``z`` lives in ``info["latent"]``.

    ``episode_context(z) -> pytree``, if given, is computed once per episode at reset and kept in
    ``info["reward_context"]``, where ``reward_fn`` can read it: for reward terms that depend on
    ``z`` alone (e.g. a scaled reward's reference rewards), so a step pays for one reward call.
    """

    def __init__(
        self,
        env: Env,
        z_sampler: ZSampler,
        reward_fn: RewardFn,
        episode_context: Callable[[jax.Array], Any] | None = None,
    ):
        super().__init__(env)
        self.z_sampler = z_sampler
        self.reward_fn = reward_fn
        self.episode_context = episode_context
        z = jax.eval_shape(z_sampler, jax.random.PRNGKey(0))
        if z.ndim != 1:
            raise ValueError(f"z_sampler must return f32[Z], got shape {z.shape}")
        self.latent_size = z.shape[0]
        self._inner_obs_size = observation_size(env)

    @property
    def observation_size(self) -> int:
        return self._inner_obs_size + self.latent_size

    def reset(self, rng: jax.Array) -> State:
        k_env, k_z = jax.random.split(rng)
        state = self.env.reset(k_env)
        z = self.z_sampler(k_z)
        chex.assert_shape(z, (self.latent_size,))
        state.info["latent"] = z
        if self.episode_context is not None:
            state.info["reward_context"] = self.episode_context(z)
        return state.replace(
            obs=jnp.concatenate([state.obs, z], axis=-1),
            metrics={**state.metrics, "task_reward": state.reward},
        )

    def step(self, state: State, action: jax.Array) -> State:
        z = state.info["latent"]
        inner = state.replace(obs=state.obs[..., : self._inner_obs_size])
        next_state = self.env.step(inner, action)
        transition = {**next_state.info, "prev_obs": inner.obs, "action": action}
        reward = self.reward_fn(next_state.replace(info=transition), z)
        chex.assert_shape(reward, next_state.reward.shape)
        return next_state.replace(
            obs=jnp.concatenate([next_state.obs, z], axis=-1),
            reward=reward.astype(jnp.float32),
            metrics={**next_state.metrics, "task_reward": next_state.reward},
        )


class AutoResetWrapper(Wrapper):
    """Resets finished episodes with a fresh key (unbatched; ``vmap`` it over environments).

    The state returned for a step that ends an episode is the new episode's first state, except
    for what describes the finished transition: ``reward``, ``done``, ``metrics`` and the info
    entries in ``TRANSITION_INFO`` (features, truncation and Brax's episode metrics, which stay
    readable at the step an episode ends, as with Brax's wrapper). ``info["final_obs"]`` is the
    observation the step led to, before any reset.
    """

    TRANSITION_INFO = ("features", "truncation", "episode_done", "episode_metrics")

    def reset(self, rng: jax.Array) -> State:
        k_reset, k_next = jax.random.split(rng)
        state = self.env.reset(k_reset)
        state.info["reset_key"] = k_next
        state.info["final_obs"] = state.obs
        return state

    def step(self, state: State, action: jax.Array) -> State:
        """One environment's step; under ``vmap`` every environment runs a reset every step
        (``jnp.where`` keeps it only where an episode ended). Prefer :meth:`step_batch`."""
        key, k_reset = jax.random.split(state.info["reset_key"])
        next_state = self._inner_step(state, action, key)
        return self._reset_done(next_state, self.env.reset(k_reset))

    def step_batch(self, state: State, action: jax.Array) -> State:
        """The step of a batch of environments (leading axis B), equal to ``vmap(step)``, that
        runs the batch's resets only on steps where some episode ended (a ``lax.cond`` on
        the batch: with fixed horizons, once per episode instead of every step). Under an
        outer ``vmap`` (e.g. over seeds) the cond becomes a select and resets run every step
        again; results are the same either way."""
        keys = jax.vmap(jax.random.split)(state.info["reset_key"])
        key, k_reset = keys[:, 0], keys[:, 1]
        next_state = jax.vmap(self._inner_step)(state, action, key)

        def reset(next_state):
            fresh = jax.vmap(self.env.reset)(k_reset)
            return jax.vmap(self._reset_done)(next_state, fresh)

        return jax.lax.cond(jnp.any(next_state.done > 0), reset, lambda s: s, next_state)

    def _inner_step(self, state: State, action: jax.Array, key: jax.Array) -> State:
        # The returned state carries the finished step's ``done``; tasks that only ever set
        # ``done`` on failure would pass it on, so clear it first (as Brax's wrapper does).
        next_state = self.env.step(state.replace(done=jnp.zeros_like(state.done)), action)
        next_state.info["reset_key"] = key
        next_state.info["final_obs"] = next_state.obs
        return next_state

    def _reset_done(self, next_state: State, fresh: State) -> State:
        """``next_state``, or where its episode ended the ``fresh`` episode's first state with
        the finished transition's reward, done, metrics and ``TRANSITION_INFO``."""
        fresh.info["reset_key"] = next_state.info["reset_key"]
        fresh.info["final_obs"] = next_state.obs
        for name in self.TRANSITION_INFO:
            if name in next_state.info:
                fresh.info[name] = next_state.info[name]
        fresh = fresh.replace(
            reward=next_state.reward, done=next_state.done, metrics=next_state.metrics
        )
        done = next_state.done > 0
        return jax.tree.map(lambda f, s: jnp.where(done, f, s), fresh, next_state)


def wrap_for_training(env: Env, episode_length: int, action_repeat: int = 1) -> Env:
    """Brax's ``EpisodeWrapper`` (time limit, truncation flag, episode metrics) + auto-reset."""
    return AutoResetWrapper(EpisodeWrapper(env, episode_length, action_repeat))


# --- latent samplers ------------------------------------------------------------------------


def no_latent() -> ZSampler:
    """``z: f32[0]``: the unconditioned (BTL) policy."""
    return lambda key: jnp.zeros((0,), jnp.float32)


def constant_sampler(z: jax.Array) -> ZSampler:
    """Always the same ``z: f32[Z]`` (one user)."""
    z = jnp.asarray(z, jnp.float32)
    chex.assert_rank(z, 1)
    return lambda key: z


def prior_sampler(latent_size: int) -> ZSampler:
    """``z ~ N(0, I_Z)``: the VAE prior."""
    return lambda key: jax.random.normal(key, (latent_size,), jnp.float32)


#: How training episodes pick a user (:func:`user_log_weights`).
USER_SAMPLING = ("uniform", "balanced")


def balanced_log_weights(points: jax.Array) -> jax.Array:
    """f32[N]: log-weights (up to a constant) of ``points: f32[N, D]`` — users' latents or true
    ``theta`` — inversely proportional to their Gaussian kernel density, so that every region of
    the latent space gets about the same share of training episodes, whatever its share of
    users.

    A latent-conditioned policy learns a user's behaviour mostly from that user's region of z,
    so with users drawn uniformly a type of 10 % of the users gets 10 % of the episodes and is
    learned last. Balanced weights need no type labels (VPL's posterior means carry none): each
    user's density is ``sum_j exp(-|p_i - p_j|² / (2 h²))`` with Silverman's bandwidth
    ``h = (4 / (D + 2))^(1 / (D + 4)) N^(-1 / (D + 4)) sigma`` (``sigma²`` the points' variance,
    averaged over the D axes). Between distinct types that is far smaller than their distance,
    so each type's users share one type's weight; for a continuous population it flattens the
    density, and a user with no neighbour within ``h`` weighs as much as a whole type.
    """
    points = jnp.asarray(points, jnp.float32)
    chex.assert_rank(points, 2)
    n, d = points.shape
    sigma2 = jnp.maximum(jnp.mean(jnp.var(points, axis=0)), 1e-12)
    h2 = sigma2 * ((4.0 / (d + 2)) ** (1.0 / (d + 4)) * n ** (-1.0 / (d + 4))) ** 2
    d2 = jnp.sum(jnp.square(points[:, None, :] - points[None, :, :]), axis=-1)
    return -jnp.log(jnp.sum(jnp.exp(-d2 / (2.0 * h2)), axis=1))


def check_user_sampling(sampling: str) -> str:
    """Raises ``ValueError`` naming ``user_sampling`` unless it is one of :data:`USER_SAMPLING`."""
    if sampling not in USER_SAMPLING:
        raise ValueError(f"user_sampling={sampling!r}: must be one of {list(USER_SAMPLING)}")
    return sampling


def user_log_weights(points: jax.Array, sampling: str) -> jax.Array | None:
    """The log-weights a sampler draws training users by: ``None`` (uniform) for ``"uniform"``,
    :func:`balanced_log_weights` for ``"balanced"``; raises naming ``user_sampling`` otherwise."""
    check_user_sampling(sampling)
    return None if sampling == "uniform" else balanced_log_weights(points)


def _pick(key: jax.Array, num: int, log_weights: jax.Array | None) -> jax.Array:
    """An index in ``[0, num)``: uniform, or drawn by ``log_weights: f32[num]``."""
    if log_weights is None:
        return jax.random.randint(key, (), 0, num)
    chex.assert_shape(log_weights, (num,))
    return jax.random.categorical(key, log_weights)


def table_sampler(table: jax.Array, log_weights: jax.Array | None = None) -> ZSampler:
    """A row of ``table: f32[N, Z]`` (training users' posterior means, or their true ``theta``
    for the oracle), chosen uniformly or by ``log_weights: f32[N]`` (:func:`user_log_weights`)."""
    table = jnp.asarray(table, jnp.float32)
    chex.assert_rank(table, 2)
    return lambda key: table[_pick(key, table.shape[0], log_weights)]


def posterior_sampler(
    mean: jax.Array, std: jax.Array, log_weights: jax.Array | None = None
) -> ZSampler:
    """A training user ``i`` (chosen uniformly, or by ``log_weights: f32[N]``), then
    ``z ~ N(mean[i], diag(std[i]²))``.

    ``mean, std: f32[N, Z]``: each training user's Gaussian posterior.
    """
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    chex.assert_equal_shape([mean, std])
    chex.assert_rank(mean, 2)

    def sample(key):
        k_user, k_z = jax.random.split(key)
        i = _pick(k_user, mean.shape[0], log_weights)
        return mean[i] + std[i] * jax.random.normal(k_z, mean.shape[1:])

    return sample


# --- rewards -------------------------------------------------------------------------------


def oracle_reward(next_state: State, z: jax.Array) -> jax.Array:
    """``z · phi``: the true reward of a user whose ``theta`` is ``z`` (f32[F])."""
    return jnp.dot(z, next_state.info["features"])


def learned_reward(r: Callable[[jax.Array, jax.Array], jax.Array], inputs: str = "obs") -> RewardFn:
    """Adapts a learned reward ``r(x: f32[D], z: f32[Z]) -> f32[]`` to a ``RewardFn`` of
    :class:`LatentReward`, where ``x`` is the step's reward-model input of kind ``inputs``
    (:func:`~vpl_jax.rewards.step_inputs`; observations without ``z``). ``"obs"`` gives ``r``
    the observation the step led to."""
    return lambda next_state, z: r(reward_inputs(next_state, inputs), z)


def scaled_latent_reward(
    env: Env,
    z_sampler: ZSampler,
    r: Callable[[jax.Array, jax.Array], jax.Array],
    inputs: str,
    scaling: ScaleMethod = "none",
    reference_rewards: Callable[[jax.Array], jax.Array] | None = None,
) -> LatentReward:
    """A :class:`LatentReward` whose reward ``r(x, z)`` is rescaled per user (per ``z``).

    ``r(x: f32[D], z: f32[Z]) -> f32[]`` reads the step's input of kind ``inputs``
    (:func:`learned_reward`); ``scaling`` is one of :data:`~vpl_jax.rewards.ScaleMethod`
    (:func:`~vpl_jax.rewards.scale_rewards`), and for anything but ``"none"``
    ``reference_rewards(z) -> f32[N]`` gives the rewards of N fixed reference steps under z.

    Why per user: preferences fix each user's reward only up to an offset (and, for a
    Boltzmann user, a scale), so every user's ``r(., z)`` — a learned one, and equally the
    true ``theta · phi`` — carries its own. Trained over many users, PPO normalises rewards by
    one running statistic and advantages per minibatch, so a user whose rewards vary little is
    served last and a user-dependent offset is one more thing the critic must learn.
    ``"standardize"`` gives every user's reward mean 0 and std 1 on the reference steps.
    Safe for a shift only where episodes have a fixed horizon (every task here: ``done`` is
    never set).

    The reference rewards depend only on z, so they are computed once per episode (at reset,
    ``info["reward_context"]``) and a step costs one reward evaluation.
    """
    if scaling not in get_args(ScaleMethod):
        raise ValueError(f"scaling={scaling!r}: must be one of {list(get_args(ScaleMethod))}")
    if scaling == "none":
        return LatentReward(env, z_sampler, learned_reward(r, inputs))
    if reference_rewards is None:
        raise ValueError(f"scaling={scaling!r} needs reference_rewards (the reference steps')")
    return LatentReward(
        env,
        z_sampler,
        lambda state, z: scale_rewards(
            r(reward_inputs(state, inputs), z), state.info["reward_context"], scaling
        ),
        episode_context=reference_rewards,
    )


def reward_inputs(next_state: State, inputs: str) -> jax.Array:
    """f32[D]: the reward-model input of kind ``inputs`` of the step a ``reward_fn`` of
    :class:`LatentReward` is called on (observations without ``z``)."""
    info = next_state.info
    return step_inputs(inputs, next_state.obs, info["action"], info["features"], info["prev_obs"])
