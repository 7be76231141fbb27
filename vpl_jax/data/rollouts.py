"""Rollouts: ``jit(vmap(scan))`` over episodes × steps with any pure policy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv


@struct.dataclass
class Trajectories:
    """A batch of N episodes of T steps.

    ``obs[:, t]`` is the observation *after* step t (the state the action led to), so that a
    per-state reward ``r(obs[:, t])`` scores the consequence of ``actions[:, t]``, as the per-step
    features ``features[:, t] = phi(s_t, a_t, s_{t+1})`` do. Steps after a termination are dead:
    ``alive`` is False there and their features are zero.
    """

    obs: jax.Array  # f32[N, T, O]
    actions: jax.Array  # f32[N, T, A]
    features: jax.Array  # f32[N, T, F]
    positions: jax.Array  # f32[N, T, 2] agent position after each step (for plots)
    alive: jax.Array  # bool[N, T]
    initial_obs: jax.Array  # f32[N, O] observation after reset, before the first step

    @property
    def num_episodes(self) -> int:
        return self.obs.shape[0]

    @property
    def episode_length(self) -> int:
        return self.obs.shape[1]


def rollout_episode(env: FeatureEnv, policy: BehaviourPolicy, key: jax.Array, episode_length: int):
    """One episode (unbatched): returns ``(final_state, Trajectories without the N axis)``."""
    k_reset, k_policy, k_steps = jax.random.split(key, 3)
    state = env.reset(k_reset)
    params = policy.init(k_policy)

    def step(carry, k):
        state, alive = carry
        action = policy.act(params, state, k)
        next_state = env.step(state, action)
        out = Trajectories(
            obs=next_state.obs,
            actions=action,
            features=next_state.info["features"] * alive,
            positions=env.position(next_state),
            alive=alive,
            initial_obs=state.obs,  # replaced by the reset observation below
        )
        # Keep the last live state as the episode's end so success is judged where it stopped.
        kept = jax.tree.map(lambda new, old: jnp.where(alive, new, old), next_state, state)
        return (kept, alive & (next_state.done == 0)), out

    (final_state, _), traj = jax.lax.scan(
        step, (state, jnp.array(True)), jax.random.split(k_steps, episode_length)
    )
    return final_state, traj.replace(initial_obs=state.obs)


@functools.partial(jax.jit, static_argnames=("env", "policy", "num_episodes", "episode_length"))
def collect(
    env: FeatureEnv,
    key: jax.Array,
    num_episodes: int,
    episode_length: int | None = None,
    policy: BehaviourPolicy | None = None,
) -> Trajectories:
    """Rolls out ``num_episodes`` episodes of ``policy`` (default: the task's behaviour policy).

    ``episode_length`` defaults to the task's. The result is a :class:`Trajectories` with
    leading axes ``[N, T]``; pure in ``key``.
    """
    policy = policy if policy is not None else env.behaviour_policy
    length = episode_length if episode_length is not None else env.episode_length
    keys = jax.random.split(key, num_episodes)
    _, traj = jax.vmap(lambda k: rollout_episode(env, policy, k, length))(keys)
    return traj
