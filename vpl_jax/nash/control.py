"""Nash-MD in control: mirror descent on the regularised preference game, run by our PPO.

Nash-MD (Munos et al., 2023) improves a policy π against the *geometric mixture* of itself and a
reference μ,

    opponent  π_mix ∝ π^(1 - β) μ^β,
    step      π_t+1 = argmax_π  η E_{τ ~ π, τ′ ~ π_mix}[ P(τ ≻ τ′) ] - KL(π || π_mix),

(β = η τ for the KL-regularised game ``E P(π ≻ π′) - τ KL(π || μ)``), whose *last* iterate
converges to the Nash equilibrium of that game (the tabular version is
:func:`vpl_jax.nash.matrix_game.nash_md`). ``β = 0`` plays against the current policy itself,
unregularised: the *self-play* variant (:func:`self_play`), which cycles in a cyclic game.

The policy is a lottery over K modes (:mod:`vpl_jax.nash.policy`): ``π(k, τ) = w_k π(τ | ε_k)``
with a noise-conditioned tanh-Gaussian network. Over this joint (mode, trajectory) the KL splits
exactly, ``KL(π || μ) = KL(w || w_μ) + sum_k w_k KL(π_k || μ_k)``, and so does one Nash-MD step
(:func:`make_nash_md`), every PPO update, through PPO's rollout-reward hook:

1. **Opponents.** N opponent episodes of ``π_mix``: for the modes, the mixture of the weights
   ``w_mix ∝ w^(1-β) w_μ^β``, taken exactly by stratifying the opponents over the modes (N/K
   each) and weighting each by ``w_mix`` of its mode; within a mode, per state, the geometric
   mixture of the two pre-squash Gaussians, again Gaussian in closed form
   (:func:`vpl_jax.nash.gaussian.geometric_mixture`; for tanh-squashed policies the Jacobians
   enter with total power one, so squashing the mixture is the mixture of the squashed
   policies). Per-mode normalisers of the trajectory-level mixture are taken as 1.
2. **Trajectories** (PPO). Each of the B episodes of the rollout (modes drawn uniformly, so every
   mode keeps learning) is scored by its win probability against the opponents,
   ``sum_j ω_j P(τ_b ≻ τ′_j)`` under the learned :class:`~vpl_jax.nash.preference.PreferenceModel`,
   paid at its last step, less ``τ (log π(a_t | s_t, ε_k) - log μ(a_t | s_t, ε_k))`` at every
   step (a one-sample estimate of ``KL(π_k || μ_k)``, whose policy gradient is the KL's; tanh's
   Jacobians cancel). PPO's clipped update improves each mode against the opponent; the clipping
   plays the part of the proximal term.
3. **Modes** (mirror descent). Each mode's payoff is its episodes' mean soft return (win
   probability less τ times the log-ratio sum): the exact Nash-MD step on the weights is
   ``log w ← log w_mix + η payoff`` (normalised; :func:`~vpl_jax.nash.matrix_game.mirror_step`).
   A mode with no episode in a rollout keeps its last payoff.

Policies see the mode's noise input appended to the observation; the reference is usually the
policy PPO starts from (a behaviour-cloned "SFT" policy, uniform over its modes), as in RLHF.

Requirements (checked): the rollout covers exactly one episode per environment
(``num_steps == episode_length``, tasks without early termination, no action repeat), so every
update scores B whole, synchronous episodes; observations are not normalised (the reference's
network reads raw observations); the preference model reads observations (``inputs="obs"``).
Truncation is not bootstrapped: the win probability is the whole episode's return.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from vpl_jax.checks import ConfigError, Float, Int, check_config, checked
from vpl_jax.nash.gaussian import geometric_mixture
from vpl_jax.nash.matrix_game import geometric_mix, mirror_step
from vpl_jax.nash.policy import (
    NOISE_SIZE,
    gaussian,
    gaussian_log_prob,
    mode_of,
    network_act,
    noise_nodes,
    uniform_log_weights,
    user_lottery_latents,
)
from vpl_jax.nash.preference import PreferenceModel
from vpl_jax.policies.evaluation import latent_episode
from vpl_jax.policies.ppo import (
    PPO,
    PolicyParams,
    PPOConfig,
    RunnerState,
    Transition,
    make_train,
    policy_network,
    train_ppo,
)
from vpl_jax.policies.wrappers import LatentReward, observation_size


@dataclasses.dataclass(frozen=True)
class NashConfig:
    """Nash-MD's own hyperparameters (PPO's are a :class:`~vpl_jax.policies.PPOConfig`).

    Attributes:
      mixture: β, the reference's weight in the opponent ``π^(1-β) μ^β`` (0: self-play).
      kl_coef: τ, the weight of ``KL(π || μ)`` per episode, in units of win probability.
      step_size: η, the mirror-descent step on the mode weights; ``None``: ``mixture / kl_coef``
        (Munos et al.'s β = η τ).
      num_modes: K, the modes of the lottery (the reference is uniform over them).
      num_opponents: N, opponent episodes rolled out per update (at least K; stratified over the
        modes).
    """

    mixture: float = checked(0.1, Float(ge=0, le=1))
    kl_coef: float = checked(0.02, Float(ge=0))
    step_size: float | None = checked(None, Float(gt=0, optional=True))
    num_modes: int = checked(6, Int(ge=1))
    num_opponents: int = checked(48, Int(ge=1))

    @property
    def eta(self) -> float:
        """η, the step on the mode weights."""
        return self.mixture / self.kl_coef if self.step_size is None else self.step_size

    def validate(self, name: str = "NashConfig") -> NashConfig:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the first bad field (as
        ``name.field``) and the allowed values; returns ``self``."""
        check_config(self, name)
        if self.step_size is None and self.kl_coef == 0.0:
            raise ConfigError(
                f"{name}.step_size: give it when kl_coef = 0 (η = β / τ is undefined)"
            )
        if self.num_opponents < self.num_modes:
            raise ConfigError(
                f"{name}.num_opponents={self.num_opponents}: must be >= num_modes="
                f"{self.num_modes} (opponents are stratified over the modes)"
            )
        return self


def self_play(config: NashConfig) -> NashConfig:
    """The self-play variant of ``config``: the opponent is the current policy (β = 0), with
    the same step η on the mode weights."""
    return dataclasses.replace(config, mixture=0.0, step_size=config.eta)


def nash_ppo_config(config: PPOConfig, episode_length: int) -> PPOConfig:
    """``config`` with what Nash-MD requires: one whole episode per rollout, raw observations,
    no bootstrapping of the (final) time limit."""
    return dataclasses.replace(
        config,
        num_steps=episode_length,
        episode_length=episode_length,
        action_repeat=1,
        normalize_observations=False,
        bootstrap_truncation=False,
    )


def check_ppo_config(config: PPOConfig, episode_length: int) -> None:
    """Raises ``ValueError`` unless ``config`` scores whole, synchronous episodes."""
    length = config.episode_length or episode_length
    problems = {
        "num_steps": (config.num_steps == length, f"must equal the episode length {length}"),
        "action_repeat": (config.action_repeat == 1, "must be 1"),
        "normalize_observations": (not config.normalize_observations, "must be False"),
        "bootstrap_truncation": (not config.bootstrap_truncation, "must be False"),
    }
    for name, (ok, allowed) in problems.items():
        if not ok:
            raise ValueError(
                f"PPOConfig.{name}={getattr(config, name)!r} {allowed} for Nash-MD "
                "(see nash_ppo_config)"
            )


def opponent_rollouts(
    env: Env,
    distribution,
    policy: PolicyParams,
    reference,
    mixture: float,
    noise: jax.Array,
    key: jax.Array,
    episode_length: int,
) -> jax.Array:
    """f32[N, T, O]: observations after each step of N episodes of the geometric mixture
    ``π^(1-mixture) μ^mixture`` of two noise-conditioned policies, episode n with noise input
    ``noise[n]: f32[2]``.

    ``env`` is the raw task; ``distribution(policy, obs)`` is π's and ``reference(obs) ->
    (mean, std)`` μ's pre-squash Gaussian, both on observations with the noise appended.
    """
    k_reset, k_steps = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, noise.shape[0]))

    def step(state, k):
        obs = jnp.concatenate([state.obs, noise], axis=-1)
        pi = distribution(policy, obs).distribution
        mean, std = geometric_mixture(pi.loc, pi.scale_diag, *reference(obs), mixture)
        u = mean + std * jax.random.normal(k, mean.shape)
        state = jax.vmap(env.step)(state, jnp.tanh(u))
        return state, state.obs

    _, obs = jax.lax.scan(step, state, jax.random.split(k_steps, episode_length))
    return jnp.swapaxes(obs, 0, 1)


@functools.partial(jax.jit, static_argnames=("env", "network", "num_modes", "per_mode"))
def mode_rollouts(
    env: Env, network, params, num_modes: int, per_mode: int, key: jax.Array
) -> jax.Array:
    """f32[K, M, T, O]: observations after each step of M episodes of each of the K modes
    (:func:`~vpl_jax.nash.policy.noise_nodes`) of the noise-conditioned policy ``(network,
    params)`` on the raw task ``env`` (stochastic actions, :func:`~vpl_jax.nash.policy.
    network_act`; the observations without the noise input)."""
    latents = jnp.repeat(noise_nodes(num_modes), per_mode, axis=0)
    keys = jax.random.split(key, num_modes * per_mode)
    obs = jax.vmap(lambda z, k: latent_episode(env, network_act(network), params, z, k)[1].obs)(
        latents, keys
    )
    return obs.reshape(num_modes, per_mode, *obs.shape[1:])


def return_scale(rewards: jax.Array, return_std: float) -> jax.Array:
    """f32[...]: the factor that gives ``rewards: f32[..., N, T]`` (per step, of N episodes)
    returns with standard deviation ``return_std`` over the episodes (per leading index) — how
    a learned reward is put on the footing of a KL weight before a KL-regularised step."""
    return return_std / (jnp.std(rewards.sum(-1), axis=-1) + 1e-8)


def latent_lotteries(
    model, params, z: jax.Array, obs: jax.Array, kl_coef: float, return_std: float
) -> jax.Array:
    """f32[U, K]: each user's KL-regularised optimum over a reference's K modes under their
    latent-conditioned reward, ``log w_k(z) = log w_μ,k + R_k(z) / kl_coef`` (normalised),
    with ``w_μ`` uniform and ``R_k(z)`` the mean return of mode k's reference rollouts ``obs:
    f32[K, M, T, O]`` (:func:`mode_rollouts`) under ``model.reward(params, ·, z)``, scaled per
    user to returns of spread ``return_std`` (:func:`return_scale`). ``z: f32[U, Z]`` (e.g.
    posterior means). VPL's population policy as a lottery: every user plays their own."""

    def returns(zu):  # f32[K, M, T] per-step rewards of every rollout for one user
        return model.reward(params, obs, jnp.broadcast_to(zu, (*obs.shape[:-1], zu.shape[-1])))

    rewards = jax.lax.map(returns, z)  # [U, K, M, T]
    flat = rewards.reshape(z.shape[0], -1, rewards.shape[-1])
    scaled = rewards.sum(-1).mean(-1) * return_scale(flat, return_std)[:, None]  # [U, K]
    return jax.nn.log_softmax(uniform_log_weights(obs.shape[0]) + scaled / kl_coef)


def vpl_lotteries(
    env: Env,
    network,
    reference_params,
    model,
    params,
    z: jax.Array,
    num_modes: int,
    per_mode: int,
    kl_coef: float,
    return_std: float,
    key: jax.Array,
):
    """VPL's population policy as a lottery over a reference's modes: for each user (``z:
    f32[U, Z]``, e.g. test users' posterior means), :func:`latent_lotteries` of ``per_mode``
    rollouts of each of the reference's ``num_modes`` modes (:func:`mode_rollouts` of ``(network,
    reference_params)``) under the latent reward ``model.reward(params, ·, z)``. Returns
    ``(log_weights f32[U, K], latents)``, ``latents(n) -> f32[n, 2]`` the noise inputs of n
    episodes, episode n user ``n mod U``'s (:func:`~vpl_jax.nash.policy.user_lottery_latents`);
    the policy acts with the reference's params."""
    k_roll, k_modes = jax.random.split(key)
    obs = mode_rollouts(env, network, reference_params, num_modes, per_mode, k_roll)
    log_weights = latent_lotteries(model, params, z, obs, kl_coef, return_std)
    return log_weights, user_lottery_latents(log_weights, k_modes)


class ModeState(NamedTuple):
    """Nash-MD's state beside PPO's (``RunnerState.hook_state``).

    The reference's params and the score's (the preference model's, the reward's) ride along
    unchanged, so they are arguments of the compiled update rather than constants baked into
    it: a PPO of the same shapes with other params (another population's model, another
    reference) reuses the compiled program."""

    log_weights: jax.Array  # f32[K] the lottery's log-weights over the modes
    payoff: jax.Array  # f32[K] each mode's last estimated soft payoff
    reference: Any = None  # μ's network params (constant through training)
    scored: Any = None  # the params the episode score reads (constant through training)


def lottery(state: RunnerState) -> tuple[object, jax.Array]:
    """``(network params, log-weights f32[K])`` of the mixed policy in a Nash-MD ``state``."""
    return state.params, state.hook_state.log_weights


def train_lottery(
    ppo: PPO,
    key: jax.Array,
    total: int,
    chunk_size: int,
    checkpointer=None,
    desc: str = "PPO",
) -> tuple[tuple[object, jax.Array], dict]:
    """``((network params, log-weights f32[K]), history)``: :func:`~vpl_jax.policies.train_ppo`
    of a lottery PPO (:func:`make_nash_md`, :func:`make_rlhf`: ``total`` updates from
    ``ppo.init(key)`` in jitted chunks of ``chunk_size``, checkpointed by ``checkpointer``) and
    the lottery it learned (:func:`lottery`); ``history``'s leaves lead with ``total``."""
    state, history = train_ppo(ppo, key, total, chunk_size, checkpointer, desc)
    return lottery(state), history


def make_nash_md(
    env: Env,
    model: PreferenceModel,
    model_params,
    reference_params,
    ppo_config: PPOConfig,
    config: NashConfig = NashConfig(),
) -> PPO:
    """PPO that runs Nash-MD (or self-play, ``config.mixture = 0``) from the reference.

    Args:
      env: the raw task (unwrapped); the mode's noise input is added here.
      model, model_params: the population preference model (``latent_dim = 0``, obs inputs).
      reference_params: μ, params of :func:`~vpl_jax.policies.ppo.policy_network` for
        ``ppo_config`` (raw observations with the noise input appended), uniform over the
        ``config.num_modes`` modes :func:`~vpl_jax.nash.policy.noise_nodes`; PPO starts from it.
      ppo_config: PPO's hyperparameters (see :func:`nash_ppo_config` for what must hold).
      config: Nash-MD's hyperparameters.

    Returns:
      A :class:`~vpl_jax.policies.PPO` whose ``init``/``train`` start at the reference; the
      learned lottery of a state is :func:`lottery`. Update metrics add ``win_probability``
      (the lottery's expected win probability against the opponents), ``kl`` (the estimate of
      ``KL(π || μ)`` per episode, modes and behaviour), ``mode_kl`` (``KL(w || w_μ)``) and
      ``max_mode_weight``. Pure; vmappable over seeds. The params travel in the runner state
      (:class:`ModeState`), so calls with the same ``env``, ``model`` and configs share one
      ``train_chunk`` and compile it once.
    """
    config.validate()
    if model.latent_dim or model.inputs != "obs":
        raise ValueError(
            "make_nash_md needs a population PreferenceModel on observations "
            f"(latent_dim=0, inputs='obs'); got latent_dim={model.latent_dim}, "
            f"inputs={model.inputs!r}"
        )
    return _start_at(_nash_md(env, model, ppo_config, config), reference_params, model_params)


@functools.cache
def _nash_md(env: Env, model: PreferenceModel, ppo_config: PPOConfig, config: NashConfig) -> PPO:
    """:func:`make_nash_md`'s PPO before its params are set (one per arguments)."""
    episode_length = ppo_config.episode_length or env.episode_length
    nodes = noise_nodes(config.num_modes)
    opponent_modes = jnp.arange(config.num_opponents) % config.num_modes
    per_mode = jnp.bincount(opponent_modes, length=config.num_modes)[opponent_modes]

    def win(model_params, distribution, policy, reference, episodes, log_mix, key):
        opponents = opponent_rollouts(
            env, distribution, policy, reference, config.mixture, nodes[opponent_modes], key,
            episode_length,
        )  # fmt: skip
        omega = jnp.exp(log_mix)[opponent_modes] / per_mode
        alive = jnp.ones(episodes.shape[:2], bool)
        alive_opp = jnp.ones(opponents.shape[:2], bool)
        return model.win_probability(
            model_params, episodes, alive, opponents, alive_opp, weights=omega
        )

    return _lottery_ppo(env, win, ppo_config, config, "win_probability")


def make_rlhf(
    env: Env,
    model,
    model_params,
    reference_params,
    ppo_config: PPOConfig,
    config: NashConfig = NashConfig(),
    scale: float | jax.Array = 1.0,
) -> PPO:
    """KL-regularised RL from the reference on a learned reward, the RLHF step, with the
    machinery of :func:`make_nash_md`: an episode's score is its return
    ``scale * sum_t model.reward(model_params, s_t)`` (a reward model without a user latent
    that reads observations, on the raw observations after each step) instead of a win
    probability, the modes take the mirror-descent step on the regularised objective
    ``E return - τ KL(π || μ)`` (proximal centre ``w^(1-β) w_μ^β``, β = ``config.mixture``),
    and PPO improves each mode less τ times its log-ratio to the reference. Opponents are not
    needed (``num_opponents`` is unused). Update metrics add ``episode_score`` (the lottery's
    expected return). Like :func:`make_nash_md`, the params and ``scale`` travel in the runner
    state: one compiled update per ``env``, ``model`` and configs.
    """
    config.validate()
    inputs, latent_dim = getattr(model, "inputs", "obs"), getattr(model, "latent_dim", 0)
    if inputs != "obs" or latent_dim:
        raise ValueError(
            "make_rlhf needs a reward model on observations without a user latent "
            f"(inputs='obs', no latent_dim); got inputs={inputs!r}, latent_dim={latent_dim}"
        )
    scored = (jnp.asarray(scale, jnp.float32), model_params)
    return _start_at(_rlhf(env, model, ppo_config, config), reference_params, scored)


@functools.cache
def _rlhf(env: Env, model, ppo_config: PPOConfig, config: NashConfig) -> PPO:
    """:func:`make_rlhf`'s PPO before its params are set (one per arguments)."""

    def score(scored, distribution, policy, reference, episodes, log_mix, key):
        del distribution, policy, reference, log_mix, key  # a reward needs no opponents
        scale, params = scored
        return scale * model.reward(params, episodes).sum(-1)

    return _lottery_ppo(env, score, ppo_config, config, "episode_score")


def make_lottery_ppo(
    env: Env,
    score,
    reference_params,
    ppo_config: PPOConfig,
    config: NashConfig,
    score_name: str = "score",
    score_params=None,
) -> PPO:
    """PPO over a lottery of ``config.num_modes`` modes from the reference (see the module
    docstring), scoring each whole episode with ``score(score_params, distribution, policy,
    reference, episodes f32[B, T, O], log_mix f32[K], key) -> f32[B]``: PPO pays the score at
    the episode's end less ``kl_coef`` times the per-step log-ratio to the reference, and the
    mode weights take the step ``log w ← log w_mix + η payoff`` from ``w_mix ∝ w^(1-β) w_μ^β``.
    The update metric ``score_name`` is the lottery's expected score (the modes' mean scores
    weighted by w; the rollout draws modes uniformly). ``reference_params`` and
    ``score_params`` travel in the runner state (:class:`ModeState`), arguments of the compiled
    update. :func:`make_nash_md` and :func:`make_rlhf` are its two scores."""
    config.validate()
    return _start_at(
        _lottery_ppo(env, score, ppo_config, config, score_name), reference_params, score_params
    )


def _start_at(ppo: PPO, reference_params, score_params) -> PPO:
    """``ppo`` (of :func:`_lottery_ppo`) starting at the reference, with both params in its
    state; ``train_chunk`` stays ``ppo``'s (so its compiled program is shared)."""

    def init(key: jax.Array) -> RunnerState:
        # Adam's initial state does not depend on the params' values, only on their structure.
        state = ppo.init(key)
        hook = state.hook_state._replace(reference=reference_params, scored=score_params)
        return state._replace(params=reference_params, hook_state=hook)

    def train(key: jax.Array):
        return ppo.train_chunk(init(key), ppo.config.num_updates)

    return ppo._replace(init=init, train=train)


def _lottery_ppo(env: Env, score, ppo_config: PPOConfig, config: NashConfig, score_name: str):
    """The lottery PPO of :func:`make_lottery_ppo` with its params left to :func:`_start_at`
    (``init`` starts at a freshly initialised network until then)."""
    episode_length = ppo_config.episode_length or env.episode_length
    check_ppo_config(ppo_config, episode_length)
    num_modes = config.num_modes
    nodes = noise_nodes(num_modes)
    # Learners draw modes uniformly (every mode keeps learning).
    noisy_env = LatentReward(
        env,
        lambda key: nodes[jax.random.randint(key, (), 0, num_modes)],
        lambda state, z: jnp.zeros(()),
    )
    assert noisy_env.latent_size == NOISE_SIZE
    inner = observation_size(env)
    network = policy_network(ppo_config, env.action_size)
    log_mu = uniform_log_weights(num_modes)

    def rollout_reward(distribution, policy, traj: Transition, key, state: ModeState):
        def reference(obs):
            return gaussian(network, state.reference, obs)

        # One rollout = one whole episode per environment, so column b of final_obs (the
        # observations after each step, before any reset) is episode b.
        episodes = jnp.swapaxes(traj.final_obs[..., :inner], 0, 1)  # [B, T, O]
        modes = mode_of(traj.obs[0, :, inner:], nodes)  # [B]
        log_mix = geometric_mix(state.log_weights, log_mu, config.mixture)
        value = score(state.scored, distribution, policy, reference, episodes, log_mix, key)
        pi = distribution(policy, traj.obs).distribution
        log_ratio = pi.log_prob(traj.pre_squash) - gaussian_log_prob(
            *reference(traj.obs), traj.pre_squash
        )  # [T, B]
        reward = traj.done * value[None, :] - config.kl_coef * log_ratio
        # The modes: each one's mean soft return, then the mirror-descent step from w_mix.
        one_hot = jax.nn.one_hot(modes, num_modes)  # [B, K]
        count = one_hot.sum(0)
        mode_score = value @ one_hot / jnp.maximum(count, 1)  # [K] per-mode means
        behaviour_kl = log_ratio.sum(0) @ one_hot / jnp.maximum(count, 1)
        soft = mode_score - config.kl_coef * behaviour_kl
        payoff = jnp.where(count > 0, soft, state.payoff)
        log_weights = mirror_step(log_mix, payoff, config.eta)
        w = jnp.exp(state.log_weights)
        mode_kl = jnp.sum(w * (state.log_weights - log_mu))
        metrics = {
            score_name: jnp.sum(w * mode_score) / jnp.sum(jnp.where(count > 0, w, 0.0)),
            "kl": mode_kl + jnp.sum(w * behaviour_kl),
            "mode_kl": mode_kl,
            "max_mode_weight": w.max(),
        }
        return reward, metrics, state._replace(log_weights=log_weights, payoff=payoff)

    return make_train(
        noisy_env,
        ppo_config,
        rollout_reward=rollout_reward,
        hook_state=ModeState(log_mu, jnp.zeros((num_modes,))),
    )
