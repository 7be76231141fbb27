"""Per-user evaluation of a (latent-conditioned) policy with each user's *true* reward.

For every user ``u`` the policy acts deterministically (``tanh`` of the Gaussian mean) on the raw
task's observation with that user's ``z[u]`` appended, for ``E`` episodes; the episodes are scored
with the user's true reward ``theta[u] · sum_t phi_t`` and the task's success measure
``env.success(final_state, theta[u])``. All users see the same ``E`` episode starts (common random
numbers), so differences between users and between methods are not start-state noise.

Acting on a latent — ``z`` appended to the raw task's observation — is :func:`latent_policy`
(a :class:`~vpl_jax.envs.base.BehaviourPolicy`) and one episode of it :func:`latent_episode`;
evaluation here, on-policy segments (:func:`vpl_jax.pipeline.policy_segments`) and the lottery
policies of :mod:`vpl_jax.nash` (the per-episode noise is their ``z``) all act that way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from vpl_jax.data.rollouts import rollout_episode
from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv


def latent_policy(
    act: Callable[[Any, jax.Array, jax.Array], jax.Array],
    policy_params: Any,
    sample_z: Callable[[jax.Array], jax.Array],
) -> BehaviourPolicy:
    """The policy ``act(policy_params, obs: f32[O + Z], key) -> f32[A]`` acting on the raw
    task's observation with a per-episode latent appended: ``sample_z(key) -> f32[Z]`` draws
    the episode's ``z`` (``lambda _: z`` for a fixed one)."""
    return BehaviourPolicy(
        init=sample_z,
        act=lambda z, state, key: act(policy_params, jnp.concatenate([state.obs, z]), key),
    )


def latent_episode(
    env: FeatureEnv,
    act: Callable[[Any, jax.Array, jax.Array], jax.Array],
    policy_params: Any,
    z: jax.Array,
    key: jax.Array,
    episode_length: int | None = None,
):
    """``(final state, Trajectories without the N axis)`` of one episode of
    :func:`latent_policy` with the fixed latent ``z: f32[Z]`` (``episode_length`` defaults to
    the task's). Unbatched and unjitted: ``vmap`` it over latents and keys."""
    length = episode_length if episode_length is not None else env.episode_length
    return rollout_episode(env, latent_policy(act, policy_params, lambda _: z), key, length)


@struct.dataclass
class Evaluation:
    """Per-user results of :func:`evaluate` (U users, E episodes, T steps)."""

    true_return: jax.Array  # f32[U] mean over episodes of theta · sum_t phi_t
    success: jax.Array  # f32[U] fraction of episodes that succeeded for the user
    episode_true_return: jax.Array  # f32[U, E]
    episode_success: jax.Array  # bool[U, E]
    final_position: jax.Array  # f32[U, E, 2] where each episode ended (last live state)
    positions: jax.Array  # f32[U, E, T, 2] agent position after each step


@functools.partial(jax.jit, static_argnames=("env", "act", "num_episodes", "episode_length"))
def evaluate(
    env: FeatureEnv,
    act: Callable[[Any, jax.Array], jax.Array],
    policy_params: Any,
    z: jax.Array,
    theta: jax.Array,
    key: jax.Array,
    num_episodes: int,
    episode_length: int | None = None,
) -> Evaluation:
    """Rolls out the policy for each user and scores it with the user's true reward.

    Args:
      env: the raw task (no latent wrapper; the user's ``z`` is appended here).
      act: ``act(policy_params, obs: f32[O + Z]) -> f32[A]``, deterministic (e.g. ``PPO.act``).
      policy_params: the policy's parameters (e.g. ``PPO.policy_params(runner_state)``).
      z: f32[U, Z] each user's latent (posterior mean; true ``theta`` for the oracle; ``Z = 0``
        for an unconditioned policy).
      theta: f32[U, F] each user's true reward weights.
      key: episode starts (shared by all users).
      num_episodes: E.
      episode_length: T; defaults to the task's.

    Returns:
      :class:`Evaluation`. Jitted; ``vmap`` it over seeds' ``policy_params`` as needed.
    """
    chex.assert_rank([z, theta], 2)
    chex.assert_equal_shape_prefix([z, theta], 1)
    chex.assert_axis_dimension(theta, 1, env.num_features)
    length = episode_length if episode_length is not None else env.episode_length
    episode_keys = jax.random.split(key, num_episodes)

    def episode(z_u, theta_u, k):
        deterministic = lambda params, obs, _: act(params, obs)  # noqa: E731
        final_state, traj = latent_episode(env, deterministic, policy_params, z_u, k, length)
        true_return = jnp.dot(traj.features.sum(0), theta_u)
        success = env.success(final_state, theta_u)
        return true_return, success, env.position(final_state), traj.positions

    per_user = jax.vmap(episode, in_axes=(None, None, 0))
    returns, success, final_position, positions = jax.vmap(per_user, in_axes=(0, 0, None))(
        z, theta, episode_keys
    )
    return Evaluation(
        true_return=returns.mean(1),
        success=success.astype(jnp.float32).mean(1),
        episode_true_return=returns,
        episode_success=success,
        final_position=final_position,
        positions=positions,
    )
