"""Optimal values at the ends of segments, for regret-based users.

A regret-based user (:func:`~vpl_jax.users.segment_score`) needs their optimal values
``(V*(s_start), V*(s_end))`` of every segment they judge: ``s_start`` is the state before the
segment's first step (``Segments.obs_before``) and ``s_end`` the state its last live step led to.
``V*`` comes from any value function of the observation with the user's latent appended — in
practice the critic of an oracle policy trained with ``z = theta`` on ``theta · phi``
(:func:`vpl_jax.policies.critic_values`), so that one critic serves every user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import chex
import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # vpl_jax.data imports the users package
    from vpl_jax.data.segments import Segments

#: ``value_fn(x: f32[..., O + Z]) -> f32[...]``: a value of observations with a latent appended.
ValueFn = Callable[[jax.Array], jax.Array]


def segment_endpoints(segments: Segments) -> tuple[jax.Array, jax.Array]:
    """``(start, end)``, each f32[S, O]: the observation before each segment's first step and
    the one after its last live step (a segment with no live step ends where it starts)."""
    start = segments.obs_before
    alive = segments.alive
    last = jnp.maximum(jnp.sum(alive, axis=-1) - 1, 0)
    end = jnp.take_along_axis(segments.obs, last[:, None, None], axis=1)[:, 0]
    return start, jnp.where(jnp.any(alive, axis=-1)[:, None], end, start)


def segment_values(value_fn: ValueFn, segments: Segments, z: jax.Array) -> jax.Array:
    """f32[U, S, 2]: each user's ``(V*(s_start), V*(s_end))`` of every segment.

    Args:
      value_fn: value of observations with a latent appended (e.g. an oracle critic).
      segments: the segment bank (S segments).
      z: f32[U, Z] each user's latent (``theta`` for an oracle critic).

    Users are mapped one at a time (``lax.map``), so memory grows with S, not U × S.
    """
    chex.assert_rank(z, 2)
    ends = jnp.stack(segment_endpoints(segments), axis=1)  # [S, 2, O]

    def one_user(z_u):
        x = jnp.concatenate([ends, jnp.broadcast_to(z_u, (*ends.shape[:2], z_u.shape[0]))], -1)
        return value_fn(x)

    return jax.lax.map(one_user, z)
