"""False beliefs: users who judge segments in the world they *believe* in.

A user with a false belief sees the same motion but computes its features in a different world
(for navigation: a hazard somewhere else, a bystander they think is elsewhere). The features they
perceive are the task's ``features_from_obs`` evaluated in their believed world; labelling with
those features gives their answers (:func:`~vpl_jax.users.label_pairs`).

:func:`perceived` gives a whole dataset the features of a believed world (e.g.
:func:`shifted_hazard`), and :func:`relabel_deviating` answers a dataset again by its users with
one deviation from the assumed human model — a human-model field
(:data:`~vpl_jax.users.DEVIATIONS`) or this false belief.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vpl_jax.data.dataset import PreferenceDataset, relabel
from vpl_jax.data.segments import Segments
from vpl_jax.envs.base import FeatureEnv
from vpl_jax.users import deviating


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


def shifted_hazard(env: FeatureEnv, shift: float) -> Any:
    """The world of a user who thinks the hazard is ``shift`` metres to the right (+x) of where
    it is: ``env.true_world`` with its ``hazard_center`` moved (tasks with a hazard, e.g.
    navigation)."""
    world = env.true_world
    return world.replace(hazard_center=world.hazard_center + jnp.array([shift, 0.0]))


def perceived(env: FeatureEnv, dataset: PreferenceDataset, world: Any) -> PreferenceDataset:
    """``dataset`` with every segment's features as perceived in ``world``
    (:func:`believed_features`); its pairs, labels and users unchanged."""
    segments = dataset.segments
    index = jnp.arange(segments.num_segments)
    features = believed_features(env, segments, index, world)
    return dataset.replace(segments=segments.replace(features=features))


def relabel_deviating(
    key: jax.Array,
    env: FeatureEnv,
    dataset: PreferenceDataset,
    kind: str,
    size: float,
    values: jax.Array | None = None,
) -> PreferenceDataset:
    """Every pair of every user of ``dataset`` answered again (:func:`~vpl_jax.data.relabel`)
    by the dataset's users with one deviation of ``size``:

    * ``kind`` a key of :data:`~vpl_jax.users.DEVIATIONS` — that human-model field
      (:func:`~vpl_jax.users.deviating`); ``regret`` users compare the optimal ``values``
      (f32[U, N, 2], :func:`~vpl_jax.users.segment_values`), which only they are given;
    * ``"belief"`` — the users judge the features of a world whose hazard is ``size`` metres
      to the right (:func:`shifted_hazard`, :func:`perceived`);
    * ``"none"`` — the users as they are.

    The same ``key`` for every deviation gives common random numbers: answers differ only where
    the deviation changes them. The result keeps the dataset's (true) segments and users.
    """
    if kind == "belief":
        users, segments = dataset.users, perceived(env, dataset, shifted_hazard(env, size)).segments
    else:
        users, segments = deviating(dataset.users, kind, size), dataset.segments
    return relabel(key, dataset, users, segments, values if kind == "regret" else None)
