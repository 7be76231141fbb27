"""Per-user preference datasets: build, split, save and load.

A :class:`PreferenceDataset` holds one bank of segments and, for each of U users, K labelled
*context* pairs (what the user tells the model about themselves) and M labelled *held-out* pairs
(for evaluation). Pairs are indices into the segment bank, drawn per user from one shared *query
pool* of P random candidate pairs (which active query selection also draws from) so that no
comparison is asked twice, in either order: none is both in a user's context and held out.
Users are split into train and test users (``is_test``), stratified by user type.

Shapes (S segments, H steps, O obs, A actions, F features, U users, K context, M held-out, P pool):

==================  ==============  ===========================================
field               shape           meaning
==================  ==============  ===========================================
segments.obs        f32[S, H, O]    observation after each step
segments.features   f32[S, H, F]    per-step features
users.theta         f32[U, F]       true reward weights
context.pairs       i32[U, K, 2]    segment indices (a, b)
context.labels      f32[U, K]       1 = a preferred, 0 = b, 0.5 = equal
context.mask        bool[U, K]      False where the user skipped
heldout.*           [U, M, ...]     same, for evaluation
pool                i32[P, 2]       the candidate pairs
is_test             bool[U]         test users (never trained on)
==================  ==============  ===========================================
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, struct

from vpl_jax.atomic import atomic_write
from vpl_jax.checks import ConfigError, Float, Int, check_config, checked
from vpl_jax.data.rollouts import collect
from vpl_jax.data.segments import Segments, cut_segments, first_occurrences, sample_pairs
from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv
from vpl_jax.users import HumanModel, Population, User, check_partial_return, label_pairs

FORMAT_VERSION = 1


class DatasetFileError(ValueError):
    """A dataset file is corrupt, from another format version, or inconsistent."""


@struct.dataclass
class Queries:
    """Labelled pairs per user.

    ``pairs: i32[U, Q, 2]`` segment indices, ``labels: f32[U, Q]``, ``mask: bool[U, Q]``.
    """

    pairs: jax.Array
    labels: jax.Array
    mask: jax.Array


@dataclasses.dataclass(frozen=True)
class DatasetMeta:
    """Static description of a dataset (kept out of the pytree)."""

    task: str
    feature_names: tuple[str, ...]
    type_names: tuple[str, ...]


@struct.dataclass
class PreferenceDataset:
    """Segments, users and their labelled pairs (shapes in the module docstring)."""

    segments: Segments
    users: User
    context: Queries
    heldout: Queries
    pool: jax.Array
    is_test: jax.Array
    meta: DatasetMeta = struct.field(pytree_node=False)

    @property
    def num_users(self) -> int:
        return self.users.theta.shape[0]

    @property
    def context_size(self) -> int:
        return self.context.pairs.shape[1]

    def select_users(self, index) -> PreferenceDataset:
        """The dataset restricted to some users (any numpy index), sharing the segment bank."""
        index = np.asarray(index)
        take = lambda x: x[index]  # noqa: E731
        return self.replace(
            users=jax.tree.map(take, self.users),
            context=jax.tree.map(take, self.context),
            heldout=jax.tree.map(take, self.heldout),
            is_test=self.is_test[index],
        )

    def split(self) -> tuple[PreferenceDataset, PreferenceDataset]:
        """``(train_users, test_users)`` datasets."""
        is_test = np.asarray(self.is_test)
        return self.select_users(~is_test), self.select_users(is_test)

    def validate(self) -> PreferenceDataset:
        """Checks shapes and index ranges agree; raises :class:`DatasetFileError` otherwise."""
        seg = self.segments
        num_seg, horizon = seg.features.shape[:2]
        u = self.num_users
        expect = {
            "segments.obs": (seg.obs.shape[:2], (num_seg, horizon)),
            "segments.alive": (seg.alive.shape, (num_seg, horizon)),
            "users.theta": (self.users.theta.shape, (u, len(self.meta.feature_names))),
            "segments.features": (seg.features.shape[2:], (len(self.meta.feature_names),)),
            "users.type_id": (self.users.type_id.shape, (u,)),
            "is_test": (self.is_test.shape, (u,)),
            "pool": (self.pool.shape[1:], (2,)),
        }
        for name, q in (("context", self.context), ("heldout", self.heldout)):
            expect[f"{name}.pairs"] = (q.pairs.shape[0::2], (u, 2))
            expect[f"{name}.labels"] = (q.labels.shape, q.pairs.shape[:2])
            expect[f"{name}.mask"] = (q.mask.shape, q.pairs.shape[:2])
        for name, (got, want) in expect.items():
            if tuple(got) != tuple(want):
                raise DatasetFileError(f"dataset field {name} has shape {got}, expected {want}")
        for name, pairs in (
            ("context", self.context.pairs),
            ("heldout", self.heldout.pairs),
            ("pool", self.pool),
        ):
            p = np.asarray(pairs)
            if p.size and (p.min() < 0 or p.max() >= num_seg):
                raise DatasetFileError(f"dataset {name} indexes segments outside 0..{num_seg - 1}")
        if np.asarray(self.users.type_id).max(initial=0) >= len(self.meta.type_names):
            raise DatasetFileError("dataset users.type_id exceeds the number of type names")
        for name, values in (
            ("users.theta", self.users.theta),
            ("segments.features", self.segments.features),
            ("segments.obs", self.segments.obs),
        ):
            if not np.all(np.isfinite(np.asarray(values))):
                raise DatasetFileError(f"dataset field {name} contains NaN or inf")
        for name, q in (("context", self.context), ("heldout", self.heldout)):
            labels = np.asarray(q.labels)[np.asarray(q.mask)]
            if not np.all(np.isfinite(labels) & (labels >= 0) & (labels <= 1)):
                raise DatasetFileError(
                    f"dataset field {name}.labels must be in [0, 1] where labelled "
                    "(1 = a preferred, 0 = b, 0.5 = equal)"
                )
        return self


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """Sizes of a preference dataset.

    Attributes:
      num_users: U, users drawn from the population (train + test).
      test_fraction: share of each user type held out as test users.
      context_size: K, labelled context pairs per user.
      heldout_size: M, labelled held-out pairs per user.
      pool_size: P, random candidate pairs shared by all users; they must hold K + M distinct
        pairs (in either order), so P >= K + M.
      num_episodes: behaviour-policy episodes rolled out for the segment bank.
      episode_length: steps per episode (None: the task's default).
      segment_horizon: H, steps per segment (1 .. episode length).
    """

    num_users: int = checked(64, Int(ge=2))
    test_fraction: float = checked(0.25, Float(gt=0, lt=1))
    context_size: int = checked(8, Int(ge=1))
    heldout_size: int = checked(32, Int(ge=1))
    pool_size: int = checked(2048, Int(ge=1))
    num_episodes: int = checked(256, Int(ge=1))
    episode_length: int | None = checked(None, Int(ge=1, optional=True))
    segment_horizon: int = checked(10, Int(ge=1))

    def validate(self, env: FeatureEnv | None = None, name: str = "DatasetConfig") -> DatasetConfig:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the first bad field (as
        ``name.field``: an experiment passes its field's name, ``data``) and the allowed values;
        with ``env``, also what its episodes allow."""
        check_config(self, name)
        total = self.context_size + self.heldout_size
        if total > self.pool_size:
            raise ConfigError(
                f"{name}.pool_size={self.pool_size}: must be >= context_size + "
                f"heldout_size (K + M = {self.context_size} + {self.heldout_size} = {total}), "
                f"the distinct pairs each user labels; raise pool_size to {total} or more, or "
                "lower context_size or heldout_size"
            )
        length = self.episode_length
        if env is not None and length is None:
            length = env.episode_length
        if length is not None:
            if self.segment_horizon > length:
                raise ConfigError(
                    f"{name}.segment_horizon={self.segment_horizon}: must be in 1..{length} (the "
                    "episode length)"
                )
            num_segments = self.num_episodes * (length // self.segment_horizon)
            if num_segments < 2:
                raise ConfigError(
                    f"{name}.num_episodes={self.num_episodes}: with segment_horizon="
                    f"{self.segment_horizon} that is {num_segments} segment(s); need >= 2"
                )
            if num_segments * (num_segments - 1) // 2 < total:
                raise ConfigError(
                    f"{name}.pool_size={self.pool_size}: the {num_segments} segments have "
                    f"only {num_segments * (num_segments - 1) // 2} distinct pairs, fewer than "
                    f"the K + M = {total} distinct pairs each user labels; raise num_episodes, "
                    "or lower segment_horizon, context_size or heldout_size"
                )
        return self


def stratified_holdout(type_id: np.ndarray, fraction: float, hold_singletons: bool) -> np.ndarray:
    """bool[U]: the last ``round(fraction * n_t)`` users of each type ``t`` (host-side).

    A type with two or more users keeps at least one on each side; a type with a single user
    holds it out iff ``hold_singletons``. Deterministic, so splits survive saving and loading.
    """
    held = np.zeros(type_id.shape, bool)
    for t in np.unique(type_id):
        idx = np.flatnonzero(type_id == t)
        if len(idx) >= 2:
            n = min(max(round(fraction * len(idx)), 1), len(idx) - 1)
        else:
            n = int(hold_singletons)
        held[idx[len(idx) - n :]] = True
    return held


def split_counts(population, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test): i64[T]`` users per type that :func:`build_dataset` will draw and split
    for ``population`` (type counts are deterministic, so this needs no data)."""
    counts = population.counts(config.num_users)
    type_id = np.repeat(np.arange(len(counts)), counts)
    is_test = stratified_holdout(type_id, config.test_fraction, True)
    test = np.bincount(type_id[is_test], minlength=len(counts))
    return counts - test, test


def check_users_per_type(population, config: DatasetConfig, field: str = "num_users") -> None:
    """Raises ``ValueError`` naming ``field`` (the dataset's num_users) unless every type of
    ``population`` gets a test user and some type two training users (one to fit on, one to
    validate): otherwise per-type scores are undefined, or training fails late."""
    train, test = split_counts(population, config)
    names = population.type_names
    empty = [n for n, k in zip(names, test, strict=True) if k == 0]
    if empty:
        raise ValueError(
            f"{field}={config.num_users}: user type(s) {empty} get no test user at shares "
            f"{np.round(population.shares, 3).tolist()}; give more users"
        )
    if train.max(initial=0) < 2:
        raise ValueError(
            f"{field}={config.num_users}: no user type gets two training users (one to fit, one "
            f"to validate; train users per type {train.tolist()}); give more users"
        )


def gather_features(segments: Segments, pairs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Features of both segments of each pair: ``pairs: i32[..., 2]`` -> two f32[..., H, F]."""
    return segments.features[pairs[..., 0]], segments.features[pairs[..., 1]]


def label_queries(
    key: jax.Array,
    users: User,
    segments: Segments,
    pairs: jax.Array,
    values: jax.Array | None = None,
) -> Queries:
    """Asks each user about their pairs (``pairs: i32[U, Q, 2]``) with their human model.

    Users judge ``segments.features``: for users with a false belief, pass segments whose
    features were computed in the believed world (:mod:`vpl_jax.data.beliefs`).
    ``values: f32[U, S, 2]`` are each user's optimal values ``(V*(start), V*(end))`` of every
    segment (:func:`vpl_jax.users.segment_values`), for regret-based users.
    """
    feats_a, feats_b = gather_features(segments, pairs)
    if values is None:
        labels, mask = label_pairs(key, users, feats_a, feats_b)
    else:
        per_pair = jax.vmap(lambda v, p: v[p])  # [S, 2] and [Q] -> [Q, 2], per user
        labels, mask = label_pairs(
            key,
            users,
            feats_a,
            feats_b,
            per_pair(values, pairs[..., 0]),
            per_pair(values, pairs[..., 1]),
        )
    return Queries(pairs=pairs, labels=labels, mask=mask)


def relabel(
    key: jax.Array,
    dataset: PreferenceDataset,
    users: User,
    segments: Segments | None = None,
    values: jax.Array | None = None,
) -> PreferenceDataset:
    """``dataset`` with every user's context and held-out pairs answered again by ``users``
    (the dataset's users with another human model, e.g. ``dataset.users.with_human(epsilon=0.2)``).

    Relabelling one dataset with the same ``key`` for every human model gives common random
    numbers: the answers differ only where the human model changes them. ``segments`` are what
    the users judge (default the dataset's own; for a false belief, the believed world's) and
    ``values`` their optimal values, as in :func:`label_queries`. The result keeps the
    dataset's segments and users.
    """
    segments = dataset.segments if segments is None else segments
    pairs = jnp.concatenate([dataset.context.pairs, dataset.heldout.pairs], axis=1)
    answers = label_queries(key, users, segments, pairs, values)
    k = dataset.context_size

    def part(lo, hi):
        return jax.tree.map(lambda x: x[:, lo:hi], answers)

    return dataset.replace(context=part(0, k), heldout=part(k, None))


def repopulate(
    key: jax.Array, dataset: PreferenceDataset, population: Population, test_fraction: float
) -> PreferenceDataset:
    """``dataset``'s segments and pairs answered by as many new users drawn from ``population``.

    Every population asked about one dataset's pairs shares its segments and queries (common
    random numbers: results differ only through the users), and the rollouts are collected and
    compiled once. Each user slot keeps its K context and M held-out pairs; the users' answers
    are :func:`relabel`'s. Test users are split afresh, ``test_fraction`` of each new type
    (:func:`build_dataset`'s split). Pure in ``key``.
    """
    if tuple(population.feature_names) != tuple(dataset.meta.feature_names):
        raise ValueError(
            f"population features {population.feature_names} do not match the dataset's "
            f"{dataset.meta.feature_names}"
        )
    check_partial_return(population.human, "repopulate")
    k_users, k_label = jax.random.split(key)
    users = population.sample(k_users, dataset.num_users)
    is_test = stratified_holdout(np.asarray(users.type_id), test_fraction, True)
    meta = dataclasses.replace(dataset.meta, type_names=tuple(population.type_names))
    answered = relabel(k_label, dataset, users)
    return answered.replace(users=users, is_test=jnp.asarray(is_test), meta=meta)


def build_dataset(
    key: jax.Array,
    env: FeatureEnv,
    population: Population,
    config: DatasetConfig = DatasetConfig(),
    task: str | None = None,
    policy: BehaviourPolicy | None = None,
) -> PreferenceDataset:
    """Rolls out the task's behaviour policies, cuts segments, draws users and labels queries.

    ``policy`` replaces the task's default behaviour policy (e.g. narrow data from
    ``Navigation.behaviour(avoid_hazard=1.0)``). All validation happens before anything is
    compiled; the generation itself is one jitted call (:func:`generate`). Pure in ``key``.
    """
    config.validate(env)
    if tuple(population.feature_names) != tuple(env.feature_names):
        raise ValueError(
            f"population features {population.feature_names} do not match the task's "
            f"{env.feature_names}"
        )
    check_partial_return(population.human, "build_dataset")
    segments, users, context, heldout, pool = generate(key, env, population, config, policy)
    distinct = int(jnp.sum(first_occurrences(pool)))
    total = config.context_size + config.heldout_size
    if distinct < total:
        raise ValueError(
            f"DatasetConfig.pool_size={config.pool_size}: the pool's random pairs of "
            f"{segments.num_segments} segments hold only {distinct} distinct pairs (either "
            f"order), fewer than the K + M = {total} each user labels; raise pool_size or "
            "num_episodes, or lower context_size or heldout_size"
        )
    is_test = stratified_holdout(np.asarray(users.type_id), config.test_fraction, True)
    meta = DatasetMeta(
        task=task if task is not None else population.task,
        feature_names=tuple(env.feature_names),
        type_names=tuple(population.type_names),
    )
    return PreferenceDataset(
        segments=segments,
        users=users,
        context=context,
        heldout=heldout,
        pool=pool,
        is_test=jnp.asarray(is_test),
        meta=meta,
    )


@functools.partial(jax.jit, static_argnames=("env", "population", "config", "policy"))
def generate(
    key: jax.Array,
    env: FeatureEnv,
    population: Population,
    config: DatasetConfig,
    policy: BehaviourPolicy | None = None,
) -> tuple[Segments, User, Queries, Queries, jax.Array]:
    """The jitted core of :func:`build_dataset` (no validation, no host work).

    Returns ``(segments, users, context, heldout, pool)``.
    """
    k_roll, k_pool, k_users, k_pick, k_label = jax.random.split(key, 5)
    traj = collect(env, k_roll, config.num_episodes, config.episode_length, policy)
    segments = cut_segments(traj, config.segment_horizon)
    pool = sample_pairs(k_pool, segments.num_segments, config.pool_size)
    users = population.sample(k_users, config.num_users)
    k, m = config.context_size, config.heldout_size
    # Each user's K + M queries are distinct pairs in either order, so none is both context and
    # held out: the top K + M of i.i.d. uniform scores over the first occurrence of each pair in
    # the pool (repeats score -1, below all of them) is a uniformly random subset of its
    # distinct pairs, in O(P) per user. build_dataset checks that there are K + M of them.
    scores = jax.random.uniform(k_pick, (config.num_users, config.pool_size))
    scores = jnp.where(first_occurrences(pool), scores, -1.0)
    picks = jax.lax.top_k(scores, k + m)[1]
    queries = label_queries(k_label, users, segments, pool[picks])
    context = jax.tree.map(lambda x: x[:, :k], queries)
    heldout = jax.tree.map(lambda x: x[:, k:], queries)
    return segments, users, context, heldout, pool


# --- save / load -------------------------------------------------------------------------------
def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = np.asarray(value)
    return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _skeleton(meta: DatasetMeta) -> PreferenceDataset:
    z = np.zeros(())
    queries = Queries(pairs=z, labels=z, mask=z)
    return PreferenceDataset(
        segments=Segments(**{f.name: z for f in dataclasses.fields(Segments)}),
        users=User(
            theta=z,
            human=HumanModel(**{f.name: z for f in dataclasses.fields(HumanModel)}),
            type_id=z,
        ),
        context=queries,
        heldout=queries,
        pool=z,
        is_test=z,
        meta=meta,
    )


def save_dataset(dataset: PreferenceDataset, path: str | os.PathLike) -> Path:
    """Writes ``dataset`` to ``path`` (``.npz``) atomically; returns the path."""
    path = Path(path)
    header = {"format_version": FORMAT_VERSION, **dataclasses.asdict(dataset.meta)}
    arrays = _flatten(serialization.to_state_dict(dataset))
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, __header__=np.asarray(json.dumps(header)), **arrays)
    return path


def load_dataset(path: str | os.PathLike) -> PreferenceDataset:
    """Reads a dataset written by :func:`save_dataset`.

    Raises :class:`DatasetFileError` for a missing, corrupt, other-version or inconsistent file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            flat = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DatasetFileError(f"dataset file {path} is corrupt or not a dataset: {e}") from e
    if "__header__" not in flat:
        raise DatasetFileError(f"dataset file {path} has no header; not written by save_dataset")
    try:
        header = json.loads(str(flat.pop("__header__")))
        if not isinstance(header, dict):
            raise ValueError(f"the header is a {type(header).__name__}, not an object")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise DatasetFileError(f"dataset file {path} has a malformed header: {e}") from e
    version = header.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise DatasetFileError(
            f"dataset file {path} has format version {version}; this code reads {FORMAT_VERSION}"
        )
    try:
        meta = DatasetMeta(**{k: tuple(v) if isinstance(v, list) else v for k, v in header.items()})
    except TypeError as e:  # unknown or missing header fields
        raise DatasetFileError(f"dataset file {path} has a malformed header: {e}") from e
    skeleton = _skeleton(meta)
    expected = set(_flatten(serialization.to_state_dict(skeleton)))
    if set(flat) != expected:
        missing, extra = sorted(expected - set(flat)), sorted(set(flat) - expected)
        raise DatasetFileError(f"dataset file {path}: missing fields {missing}, unexpected {extra}")
    dataset = serialization.from_state_dict(skeleton, _unflatten(flat))
    dataset = jax.tree.map(jnp.asarray, dataset)
    return dataset.validate()
