"""False beliefs: users who judge segments in the world they *believe* in.

A user with a false belief sees the same motion but computes its features in a different world
(for navigation: a hazard somewhere else, a bystander they think is elsewhere). The features they
perceive are the task's ``features_from_obs`` evaluated in their believed world; labelling with
those features gives their answers (:func:`~vpl_jax.users.label_pairs`).
"""

from __future__ import annotations

from typing import Any

import jax

from vpl_jax.data.segments import Segments
from vpl_jax.envs.base import FeatureEnv


def believed_features(env: FeatureEnv, segments: Segments, index: jax.Array, world: Any):
    """f32[..., H, F]: features of the segments ``index`` (any shape) as perceived in ``world``.

    Dead steps (after a termination) stay zero, as in the true features.
    """
    prev_obs = segments.previous_obs[index]
    obs, actions, alive = segments.obs[index], segments.actions[index], segments.alive[index]
    step = lambda p, a, o: env.features_from_obs(p, a, o, world)  # noqa: E731
    flat = jax.vmap(step)(
        prev_obs.reshape(-1, prev_obs.shape[-1]),
        actions.reshape(-1, actions.shape[-1]),
        obs.reshape(-1, obs.shape[-1]),
    )
    features = flat.reshape(*obs.shape[:-1], flat.shape[-1])
    return features * alive[..., None]


def believed_pair_features(
    env: FeatureEnv, segments: Segments, pairs: jax.Array, worlds: Any
) -> tuple[jax.Array, jax.Array]:
    """Each user's perceived features of their pairs.

    Args:
      env: the task.
      segments: the segment bank.
      pairs: i32[U, Q, 2] each user's pairs.
      worlds: the users' believed worlds, a pytree with leading axis U.

    Returns:
      ``(features_a, features_b)``, each f32[U, Q, H, F], ready for ``label_pairs``.
    """

    def one(user_pairs, world):
        return (
            believed_features(env, segments, user_pairs[:, 0], world),
            believed_features(env, segments, user_pairs[:, 1], world),
        )

    return jax.vmap(one)(pairs, worlds)
