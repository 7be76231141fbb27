"""Nash-MD in control: a policy-gradient step on the regularised preference game, run by our PPO.

Nash-MD (Munos et al., 2023, the policy-gradient form of their Section 7) improves a policy π
against the *geometric mixture* of itself and a reference μ,

    opponent  π_mix(a | s) ∝ π(a | s)^(1 - β) μ(a | s)^β,
    objective E_{τ ~ π, τ′ ~ π_mix}[ P(τ ≻ τ′) ] - kl_coef * KL(π || μ),

whose last iterate converges to the Nash equilibrium of the KL-regularised preference game (the
tabular version is :func:`vpl_jax.nash.matrix_game.nash_md`). ``β = 0`` plays against the current
policy itself: the *self-play* variant (:data:`SELF_PLAY`).

How it runs on PPO (:func:`make_nash_md`): every update, through PPO's rollout-reward hook,

1. N opponent episodes are rolled out from the mixture. For Gaussian policies the mixture is again
   Gaussian at every state, in closed form (:func:`vpl_jax.nash.gaussian.geometric_mixture` of
   the two pre-squash Gaussians; for the tanh-squashed policies the Jacobians enter with total
   power one, so squashing the mixture is the mixture of the squashed policies): opponents sample
   from it directly, with no importance weights or rejection.
2. Each of the B episodes of the rollout is scored by its estimated win probability against them,
   ``mean_j P(τ_b ≻ τ′_j)`` under the learned :class:`~vpl_jax.nash.preference.PreferenceModel`,
   paid at its last step, less ``kl_coef`` times a one-sample estimate of the KL to μ (its
   policy gradient is the gradient of the KL; tanh's Jacobians cancel in the ratio). By default
   (``NashConfig.kl = "marginal"``) that is ``log π̄(τ) - log μ̄(τ)`` between the *mixed*
   policies, the noise input integrated out by quadrature: it lets the policy move probability
   between outcomes by re-assigning noise values, while trajectories μ̄ does not produce (e.g.
   going to no goal) stay expensive. ``kl = "per_noise"`` pays
   ``-kl_coef * (log π(a|s, ε) - log μ(a|s, ε))`` at every step instead, which pins each noise
   value to the reference's behaviour for it.
3. PPO's clipped update does the rest. The clipping plays the part of the mirror-descent step
   size.

Policies see a per-episode noise input (:mod:`vpl_jax.nash.policy`) so that they can be mixed; the
geometric mixture is taken per state *and* noise value. The reference is usually the policy PPO
starts from (a behaviour-cloned "SFT" policy), as in RLHF.

Requirements (checked): the rollout covers exactly one episode per environment
(``num_steps == episode_length``, tasks without early termination, no action repeat), so every
update scores B whole, synchronous episodes; observations are not normalised (the reference's
network reads raw observations); the preference model reads observations (``inputs="obs"``).
Truncation is not bootstrapped: the win probability is the whole episode's return.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from brax.envs.base import Env

from vpl_jax.nash.gaussian import geometric_mixture
from vpl_jax.nash.policy import (
    NOISE_SIZE,
    gaussian,
    gaussian_log_prob,
    noise_nodes,
    noise_sampler,
    policy_network,
    trajectory_log_prob,
)
from vpl_jax.nash.preference import PreferenceModel
from vpl_jax.policies.ppo import PPO, PolicyParams, PPOConfig, Transition, make_train
from vpl_jax.policies.wrappers import LatentReward, observation_size

#: The KL regularisers of :class:`NashConfig` (``kl``).
KL_KINDS = ("marginal", "per_noise")


@dataclasses.dataclass(frozen=True)
class NashConfig:
    """Nash-MD's own hyperparameters (PPO's are a :class:`~vpl_jax.policies.PPOConfig`).

    Attributes:
      mixture: β, the reference's weight in the opponent ``π^(1-β) μ^β`` (0: self-play).
      kl_coef: weight of ``KL(π || μ)`` per episode, in units of win probability.
      num_opponents: N, opponent episodes rolled out per update.
      kl: which KL to the reference regularises. ``"marginal"``: between the *mixed* policies,
        ``KL(π̄ || μ̄)`` with ``π̄(τ) = ∫ π(τ | ε) dε`` (the noise integrated out by a
        ``kl_nodes``-point quadrature, :func:`~vpl_jax.nash.policy.trajectory_log_prob`).
        ``"per_noise"``: ``E_ε KL(π(· | ε) || μ(· | ε))``, the per-step estimate; it upper-bounds
        the marginal KL and pins every noise value to the reference's behaviour for that value,
        so a policy cannot move probability from one outcome to another by re-assigning noise
        values (with a decisive reference, switching an episode's goal costs hundreds of nats).
      kl_nodes: Q, quadrature nodes over the noise for ``kl="marginal"``.
    """

    mixture: float = 0.125
    kl_coef: float = 0.01
    num_opponents: int = 32
    kl: str = "marginal"
    kl_nodes: int = 24

    def validate(self) -> NashConfig:
        if not 0.0 <= self.mixture <= 1.0:
            raise ValueError(f"NashConfig.mixture={self.mixture}: must be in [0, 1]")
        if not self.kl_coef >= 0.0:
            raise ValueError(f"NashConfig.kl_coef={self.kl_coef}: must be >= 0")
        if self.num_opponents < 1:
            raise ValueError(f"NashConfig.num_opponents={self.num_opponents}: must be >= 1")
        if self.kl not in KL_KINDS:
            raise ValueError(f"NashConfig.kl={self.kl!r}: allowed values are {list(KL_KINDS)}")
        if self.kl_nodes < 1:
            raise ValueError(f"NashConfig.kl_nodes={self.kl_nodes}: must be >= 1")
        return self


def self_play(config: NashConfig) -> NashConfig:
    """The self-play variant of ``config``: the opponent is the current policy (β = 0)."""
    return dataclasses.replace(config, mixture=0.0)


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
    key: jax.Array,
    num_episodes: int,
    episode_length: int,
) -> jax.Array:
    """f32[N, T, O]: observations (noise input dropped) after each step of N episodes of the
    geometric mixture ``π^(1-mixture) μ^mixture``.

    ``env`` is the task with the noise input appended (a fresh ε per episode);
    ``reference(obs) -> (mean, std)`` is μ's pre-squash Gaussian.
    """
    k_reset, k_steps = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))
    inner = state.obs.shape[-1] - env.latent_size

    def step(state, k):
        pi = distribution(policy, state.obs).distribution
        mean, std = geometric_mixture(pi.loc, pi.scale_diag, *reference(state.obs), mixture)
        u = mean + std * jax.random.normal(k, mean.shape)
        state = jax.vmap(env.step)(state, jnp.tanh(u))
        return state, state.obs[..., :inner]

    _, obs = jax.lax.scan(step, state, jax.random.split(k_steps, episode_length))
    return jnp.swapaxes(obs, 0, 1)


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
      env: the raw task (unwrapped); the noise input is added here.
      model, model_params: the population preference model (``latent_dim = 0``, obs inputs).
      reference_params: μ, params of :func:`~vpl_jax.nash.policy.policy_network` for
        ``ppo_config`` (raw observations with the noise input appended); PPO starts from them.
      ppo_config: PPO's hyperparameters (see :func:`nash_ppo_config` for what must hold).
      config: Nash-MD's hyperparameters.

    Returns:
      A :class:`~vpl_jax.policies.PPO` whose ``init``/``train`` start at the reference and whose
      update metrics add ``win_probability`` (mean over the rollout's episodes) and ``kl``
      (mean per-episode estimate of ``KL(π || μ)``). Pure; vmappable over seeds.
    """
    config.validate()
    if model.latent_dim or model.inputs != "obs":
        raise ValueError(
            "make_nash_md needs a population PreferenceModel on observations "
            f"(latent_dim=0, inputs='obs'); got latent_dim={model.latent_dim}, "
            f"inputs={model.inputs!r}"
        )
    episode_length = ppo_config.episode_length or env.episode_length
    check_ppo_config(ppo_config, episode_length)
    noisy_env = LatentReward(env, noise_sampler(), lambda state, z: jnp.zeros(()))
    inner = observation_size(env)
    network = policy_network(ppo_config, env.action_size)
    nodes = noise_nodes(config.kl_nodes)
    assert noisy_env.latent_size == NOISE_SIZE

    def reference(obs):
        return gaussian(network, reference_params, obs)

    def rollout_reward(distribution, policy: PolicyParams, traj: Transition, key: jax.Array):
        # One rollout = one whole episode per environment, so column b of final_obs (the
        # observations after each step, before any reset) is episode b.
        episodes = jnp.swapaxes(traj.final_obs[..., :inner], 0, 1)  # [B, T, O]
        opponents = opponent_rollouts(
            noisy_env,
            distribution,
            policy,
            reference,
            config.mixture,
            key,
            config.num_opponents,
            episode_length,
        )
        alive = jnp.ones(episodes.shape[:2], bool)
        alive_opp = jnp.ones(opponents.shape[:2], bool)
        win = model.win_probability(model_params, episodes, alive, opponents, alive_opp)  # [B]
        pi = distribution(policy, traj.obs).distribution
        log_ratio = pi.log_prob(traj.pre_squash) - gaussian_log_prob(
            *reference(traj.obs), traj.pre_squash
        )  # [T, B]
        per_noise_kl = log_ratio.sum(0)  # [B]
        if config.kl == "per_noise":
            reward = traj.done * win[None, :] - config.kl_coef * log_ratio
            return reward, {"win_probability": win.mean(), "kl": per_noise_kl.mean()}
        # The marginal KL: log π̄(τ) - log μ̄(τ), paid with the win at the episode's end. Its
        # score-function gradient is the gradient of KL(π̄ || μ̄) (E ∇ log π̄ = 0).
        obs = jnp.swapaxes(traj.obs[..., :inner], 0, 1)  # [B, T, O] before each step
        u = jnp.swapaxes(traj.pre_squash, 0, 1)
        alive = jnp.ones(obs.shape[:2], bool)
        log_pi = trajectory_log_prob(network, policy.params, obs, u, alive, nodes)
        log_mu = trajectory_log_prob(network, reference_params, obs, u, alive, nodes)
        marginal_kl = log_pi - log_mu  # [B]
        reward = traj.done * (win - config.kl_coef * marginal_kl)[None, :]
        metrics = {"win_probability": win.mean(), "kl": marginal_kl.mean()}
        return reward, metrics | {"per_noise_kl": per_noise_kl.mean()}

    ppo = make_train(noisy_env, ppo_config, rollout_reward=rollout_reward)

    def init(key: jax.Array):
        # Adam's initial state does not depend on the params' values, only on their structure.
        return ppo.init(key)._replace(params=reference_params)

    def train(key: jax.Array):
        return ppo.train_chunk(init(key), ppo_config.num_updates)

    return ppo._replace(init=init, train=train)
