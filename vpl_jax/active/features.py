"""A path in from plain features: candidates and simulated users without a task or a dataset.

A researcher with a feature matrix of candidate trajectories (APReL's setting: per-trajectory
feature sums ``f32[N, F]``, or per-step features ``f32[N, H, F]``) and users' true weights
``theta: f32[U, F]`` builds everything :func:`~vpl_jax.active.elicitation.elicit_users` needs
for a LinearBayes belief (which reads inputs of kind ``"features"``)::

    model = LinearBayes.for_beta(2.0)                  # users answer sigmoid(2 theta · dPhi)
    cands = candidates_from_features(features)         # all N (N - 1) / 2 unordered pairs
    users = users_from_theta(theta, HumanModel.create(beta=2.0))
    trace = elicit_users(make_belief(model), "mutual_info_theta",
                         model.prior_params(features.shape[-1]), cands, users, None, key,
                         num_rounds=10)
    trace.alignment                                    # f32[U, 11]: cosine with the true theta

Axes: N trajectories, H steps, F features, Q candidate pairs, U users.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vpl_jax.active.beliefs import Candidates, index_pool
from vpl_jax.rewards import SegmentBank
from vpl_jax.users import HumanModel, User


def _check_finite(name: str, x: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        raise ValueError(
            f"{name} has {len(bad)} non-finite (NaN or inf) entries, the first at index "
            f"{tuple(bad[0].tolist())}"
        )


def _check_pairs(pairs, num_trajectories: int) -> np.ndarray:
    pairs = np.asarray(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1:
        raise ValueError(f"pairs must be i32[Q, 2] with Q >= 1, got shape {pairs.shape}")
    if not np.issubdtype(pairs.dtype, np.integer):
        raise ValueError(f"pairs must hold integer trajectory indices, got dtype {pairs.dtype}")
    if pairs.min() < 0 or pairs.max() >= num_trajectories:
        raise ValueError(
            f"pairs index trajectories {pairs.min()}..{pairs.max()}, outside the "
            f"N = {num_trajectories} rows of features"
        )
    same = np.flatnonzero(pairs[:, 0] == pairs[:, 1])
    if same.size:
        i = same[0]
        raise ValueError(f"pairs[{i}] = {pairs[i].tolist()} compares a trajectory with itself")
    return pairs


def candidates_from_features(features, pairs=None) -> Candidates:
    """The :class:`~vpl_jax.active.beliefs.Candidates` of trajectories known only by their
    features, for a model reading inputs of kind ``"features"`` (LinearBayes). Host-side.

    Args:
      features: f32[N, F] per-trajectory feature sums (each row becomes a one-step segment),
        or f32[N, H, F] per-step features (what a myopic user's discount ``gamma`` acts on);
        N >= 2 trajectories, all entries finite.
      pairs: i32[Q, 2] the comparisons to offer, as row indices into ``features``; None: all
        N (N - 1) / 2 unordered pairs ``(i, j), i < j``. A pair given more than once, in either
        order, is kept once (its first occurrence); only the rows the pairs use are kept.

    Returns:
      Candidates with ``segment_ids`` the row index of each kept trajectory, so that pairs in
      row indices (``exclude=`` of :func:`~vpl_jax.active.elicitation.elicit_users`) match.

    Raises ``ValueError`` naming ``features`` or ``pairs`` when either is malformed.
    """
    x = np.asarray(features, np.float32)
    if x.ndim not in (2, 3) or 0 in x.shape[1:]:
        raise ValueError(
            f"features must be f32[N, F] or f32[N, H, F] with H, F >= 1, got shape {x.shape}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"features has N = {x.shape[0]} trajectories: need >= 2 to compare")
    _check_finite("features", x)
    x = x[:, None, :] if x.ndim == 2 else x
    if pairs is None:
        pairs = np.stack(np.triu_indices(x.shape[0], k=1), axis=-1)
    used, local = index_pool(_check_pairs(pairs, x.shape[0]))
    kept = jnp.asarray(x[used])
    return Candidates(
        bank=SegmentBank(inputs=kept, alive=jnp.ones(kept.shape[:2], bool), kind="features"),
        features=kept,
        pairs=jnp.asarray(local, jnp.int32),
        segment_ids=jnp.asarray(used, jnp.int32),
    )


def users_from_theta(theta, human: HumanModel | None = None) -> User:
    """U simulated users with true weights ``theta: f32[U, F]`` (finite) and one human model:
    ``human``'s fields are scalars shared by every user or f32[U]
    (:meth:`~vpl_jax.users.HumanModel.broadcast`); None: the rational user. Every user gets
    ``type_id`` 0.

    Raises ``ValueError`` naming ``theta`` or the human-model field when either is malformed.
    """
    theta = np.asarray(theta, np.float32)
    if theta.ndim != 2 or 0 in theta.shape:
        raise ValueError(f"theta must be f32[U, F] with U, F >= 1, got shape {theta.shape}")
    _check_finite("theta", theta)
    num_users = theta.shape[0]
    human = HumanModel.create() if human is None else human
    return User(
        theta=jnp.asarray(theta),
        human=human.broadcast(num_users),
        type_id=jnp.zeros(num_users, jnp.int32),
    )
