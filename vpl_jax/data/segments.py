"""Segments of H steps cut from trajectories, and query pairs over them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from vpl_jax.data.rollouts import Trajectories


@struct.dataclass
class Segments:
    """A bank of S segments of H steps (same field meanings as :class:`Trajectories`)."""

    obs: jax.Array  # f32[S, H, O]
    actions: jax.Array  # f32[S, H, A]
    features: jax.Array  # f32[S, H, F]
    positions: jax.Array  # f32[S, H, 2]
    alive: jax.Array  # bool[S, H]
    obs_before: jax.Array  # f32[S, O] observation before the segment's first step

    @property
    def previous_obs(self) -> jax.Array:
        """f32[S, H, O]: the observation before each step (``obs`` shifted by one)."""
        return jnp.concatenate([self.obs_before[:, None], self.obs[:, :-1]], axis=1)

    @property
    def num_segments(self) -> int:
        return self.obs.shape[0]

    @property
    def horizon(self) -> int:
        return self.obs.shape[1]


def cut_segments(traj: Trajectories, horizon: int) -> Segments:
    """Cuts every episode into ``T // horizon`` consecutive, non-overlapping segments.

    ``horizon = T`` keeps whole episodes; ``horizon = 1`` gives single transitions. A leftover
    tail shorter than ``horizon`` is dropped. Segments that start after a termination (all steps
    dead) are kept with ``alive`` all False and zero features; reward models mask them.
    """
    length = traj.episode_length
    if not 1 <= horizon <= length:
        raise ValueError(f"segment horizon must be in 1..{length} (episode length), got {horizon}")
    per_episode = length // horizon

    def cut(x):
        x = x[:, : per_episode * horizon]
        return x.reshape(x.shape[0] * per_episode, horizon, *x.shape[2:])

    # The observation before segment j of an episode: reset's for j = 0, else the last one of
    # segment j - 1.
    last_of_previous = traj.obs[:, horizon - 1 : (per_episode - 1) * horizon : horizon]
    before = jnp.concatenate([traj.initial_obs[:, None], last_of_previous], axis=1)
    return Segments(
        obs=cut(traj.obs),
        actions=cut(traj.actions),
        features=cut(traj.features),
        positions=cut(traj.positions),
        alive=cut(traj.alive),
        obs_before=before.reshape(-1, before.shape[-1]),
    )


def sample_pairs(key: jax.Array, num_segments: int, num_pairs: int) -> jax.Array:
    """i32[P, 2]: random pairs of distinct segment indices (a query pool)."""
    if num_segments < 2:
        raise ValueError(f"need at least 2 segments to form pairs, got {num_segments}")
    k_a, k_b = jax.random.split(key)
    a = jax.random.randint(k_a, (num_pairs,), 0, num_segments)
    # b = a + offset (mod S) with offset in 1..S-1 guarantees b != a without rejection.
    b = (a + jax.random.randint(k_b, (num_pairs,), 1, num_segments)) % num_segments
    return jnp.stack([a, b], axis=-1).astype(jnp.int32)


def first_occurrences(pairs: jax.Array) -> jax.Array:
    """bool[P]: whether each of ``pairs: i32[P, 2]`` is the first in ``pairs`` of its unordered
    pair ``{a, b}`` — False for a later repeat, as ``(a, b)`` or as ``(b, a)``. Jittable."""
    lo, hi = jnp.min(pairs, axis=-1), jnp.max(pairs, axis=-1)
    # Sorted by (lo, hi, position), each group of equal pairs starts with its first occurrence.
    order = jnp.lexsort((jnp.arange(pairs.shape[0]), hi, lo))
    lo, hi = lo[order], hi[order]
    repeat = jnp.concatenate([jnp.zeros(1, bool), (lo[1:] == lo[:-1]) & (hi[1:] == hi[:-1])])
    return jnp.zeros(pairs.shape[0], bool).at[order].set(~repeat)
