"""Labelling query pairs by users: ``jit``-ed and ``vmap``-ed over users × queries."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpl_jax.users.human import label_distribution, sample_label, segment_score
from vpl_jax.users.population import User


def pair_label_distribution(
    user: User,
    features_a: jax.Array,
    features_b: jax.Array,
    values_a: jax.Array | None = None,
    values_b: jax.Array | None = None,
):
    """:class:`LabelDistribution` of one unbatched user for one pair of segments.

    Args:
      user: unbatched user.
      features_a, features_b: f32[H, F] per-step features of the two segments (for a user with
        false beliefs: the features computed in the world they believe in).
      values_a, values_b: f32[2] the user's ``(V*(start), V*(end))`` of each segment, for
        regret-based users; None for partial-return users.
    """
    r_a = segment_score(user.human, user.theta, features_a, values_a)
    r_b = segment_score(user.human, user.theta, features_b, values_b)
    return label_distribution(user.human, r_a, r_b)


@jax.jit
def label_pairs(
    key: jax.Array,
    users: User,
    features_a: jax.Array,
    features_b: jax.Array,
    values_a: jax.Array | None = None,
    values_b: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Samples labels for every user × query.

    Args:
      key: PRNG key.
      users: batched users, leading axis U.
      features_a, features_b: f32[U, Q, H, F] the segments each user is asked about.
      values_a, values_b: optional f32[U, Q, 2] each user's optimal values at the start and end
        of each segment (regret-based users; see :func:`~vpl_jax.users.human.segment_score`).

    Returns:
      ``(y, mask)``: f32[U, Q] labels (1 = a preferred, 0 = b, 0.5 = equal) and bool[U, Q]
      (False where the user skipped).
    """
    if users.theta.shape[-1] != features_a.shape[-1]:
        raise ValueError(
            f"users' theta has {users.theta.shape[-1]} weights but the segments have "
            f"{features_a.shape[-1]} features"
        )
    if features_a.shape != features_b.shape:
        raise ValueError(
            f"segment features differ in shape: {features_a.shape} vs {features_b.shape}"
        )
    num_users, num_queries = features_a.shape[:2]
    keys = jax.random.split(key, (num_users, num_queries))

    if (values_a is None) != (values_b is None):
        raise ValueError("give both values_a and values_b, or neither")

    def one(k, user, fa, fb, va, vb):
        return sample_label(k, pair_label_distribution(user, fa, fb, va, vb))

    v_axis = None if values_a is None else 0
    per_query = jax.vmap(one, in_axes=(0, None, 0, 0, v_axis, v_axis))
    return jax.vmap(per_query, in_axes=(0, 0, 0, 0, v_axis, v_axis))(
        keys, users, features_a, features_b, values_a, values_b
    )


def true_returns(users: User, features: jax.Array) -> jax.Array:
    """f32[U, N]: each user's undiscounted true return ``theta · sum_t phi_t`` of N segments or
    trajectories with ``features: f32[N, T, F]`` (shared) or f32[U, N, T, F] (per user)."""
    summed = features.sum(axis=-2)
    if summed.ndim == 2:
        return users.theta.astype(summed.dtype) @ summed.T
    return jnp.einsum("unf,uf->un", summed, users.theta)


def type_disagreement(theta: jax.Array, features: jax.Array, pairs: jax.Array) -> jax.Array:
    """f32[T, T]: the share of ``pairs`` on which two weight vectors' rational labels differ.

    ``theta: f32[T, F]`` (e.g. a population's type means, ``Population.theta_mean``),
    ``features: f32[N, H, F]`` per-step features of N segments and ``pairs: i32[P, 2]`` indices
    into them. A pair counts for types s and t when neither ties on it (undiscounted returns).
    How often two types disagree bounds what K of one user's labels can tell them apart by: at
    a rate d, a context of K random pairs holds about d·K pairs that separate them.
    """
    returns = theta.astype(jnp.float32) @ features.sum(axis=-2).T  # [T, N]
    sign = jnp.sign(returns[:, pairs[:, 0]] - returns[:, pairs[:, 1]])  # [T, P]
    counted = (sign[:, None] != 0) & (sign[None] != 0)
    differ = counted & (sign[:, None] != sign[None])
    return jnp.sum(differ, axis=-1) / jnp.maximum(jnp.sum(counted, axis=-1), 1)
