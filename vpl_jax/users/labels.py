"""Labelling query pairs by users: ``jit``-ed and ``vmap``-ed over users × queries."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vpl_jax.users.human import label_distribution, sample_label, segment_return
from vpl_jax.users.population import User


def pair_label_distribution(user: User, features_a: jax.Array, features_b: jax.Array):
    """:class:`LabelDistribution` of one unbatched user for one pair of segments.

    Args:
      user: unbatched user.
      features_a, features_b: f32[H, F] per-step features of the two segments.
    """
    r_a = segment_return(user.theta, features_a, user.human.gamma)
    r_b = segment_return(user.theta, features_b, user.human.gamma)
    return label_distribution(user.human, r_a, r_b)


@jax.jit
def label_pairs(
    key: jax.Array, users: User, features_a: jax.Array, features_b: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Samples labels for every user × query.

    Args:
      key: PRNG key.
      users: batched users, leading axis U.
      features_a, features_b: f32[U, Q, H, F] the segments each user is asked about.

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

    def one(k, user, fa, fb):
        return sample_label(k, pair_label_distribution(user, fa, fb))

    per_query = jax.vmap(one, in_axes=(0, None, 0, 0))
    return jax.vmap(per_query)(keys, users, features_a, features_b)


def true_returns(users: User, features: jax.Array) -> jax.Array:
    """f32[U, N]: each user's undiscounted true return ``theta · sum_t phi_t`` of N segments or
    trajectories with ``features: f32[N, T, F]`` (shared) or f32[U, N, T, F] (per user)."""
    summed = features.sum(axis=-2)
    if summed.ndim == 2:
        return summed @ users.theta.T.astype(summed.dtype)
    return jnp.einsum("unf,uf->un", summed, users.theta)
