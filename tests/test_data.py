"""Preference data: rollouts, segments, pairs, per-user datasets, save/load."""

import re

import chex
import jax
import numpy as np
import pytest

from vpl_jax.data import (
    DatasetConfig,
    DatasetFileError,
    build_dataset,
    collect,
    cut_segments,
    first_occurrences,
    gather_features,
    load_dataset,
    sample_pairs,
    save_dataset,
)
from vpl_jax.users import Population, segment_return


@pytest.mark.slow
def test_collect_shapes_and_determinism(navigation):
    a = collect(navigation, jax.random.PRNGKey(0), 8)
    b = collect(navigation, jax.random.PRNGKey(0), 8)
    t, o, f = navigation.episode_length, navigation.observation_size, len(navigation.feature_names)
    chex.assert_shape(a.obs, (8, t, o))
    chex.assert_shape(a.features, (8, t, f))
    chex.assert_shape(a.positions, (8, t, 2))
    chex.assert_trees_all_equal(a, b)
    assert bool(a.alive.all())  # navigation episodes never terminate early


@pytest.mark.parametrize("horizon", [1, 7, 40])
@pytest.mark.slow
def test_cut_segments_keeps_consecutive_steps(navigation, horizon):
    traj = collect(navigation, jax.random.PRNGKey(0), 3)
    seg = cut_segments(traj, horizon)
    per_episode = navigation.episode_length // horizon
    chex.assert_shape(seg.features, (3 * per_episode, horizon, len(navigation.feature_names)))
    j = min(1, per_episode - 1)  # second segment of episode 1 (the first if there is one)
    np.testing.assert_array_equal(
        seg.obs[per_episode + j], traj.obs[1, j * horizon : (j + 1) * horizon]
    )


@pytest.mark.slow
def test_cut_segments_rejects_horizon_longer_than_episode(navigation):
    traj = collect(navigation, jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match=r"segment horizon must be in 1..40"):
        cut_segments(traj, 41)


def test_sample_pairs_are_distinct_and_in_range():
    pairs = np.asarray(sample_pairs(jax.random.PRNGKey(0), 5, 1000))
    assert pairs.min() >= 0 and pairs.max() < 5
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert len(np.unique(pairs[:, 1] - pairs[:, 0])) > 1


def test_first_occurrences_marks_repeats_in_either_order():
    pairs = np.array([[2, 0], [1, 3], [0, 2], [3, 1], [0, 1], [2, 0]], np.int32)
    expected = [True, True, False, False, True, False]
    np.testing.assert_array_equal(first_occurrences(pairs), expected)
    np.testing.assert_array_equal(jax.jit(first_occurrences)(pairs), expected)


def test_dataset_shapes_split_and_unique_queries(nav_dataset):
    ds = nav_dataset
    chex.assert_shape(ds.context.pairs, (16, 8, 2))
    chex.assert_shape(ds.heldout.labels, (16, 16))
    type_id = np.asarray(ds.users.type_id)
    is_test = np.asarray(ds.is_test)
    for t in (0, 1):
        assert 0 < is_test[type_id == t].sum() < (type_id == t).sum()
    all_pairs = np.concatenate([ds.context.pairs, ds.heldout.pairs], axis=1)
    for u in range(ds.num_users):
        assert len({tuple(p) for p in all_pairs[u]}) == all_pairs.shape[1]
    train, test = ds.split()
    assert train.num_users + test.num_users == ds.num_users
    assert not np.any(np.asarray(train.is_test)) and np.all(np.asarray(test.is_test))


@pytest.mark.slow
def test_context_and_heldout_never_share_a_pair_in_either_order(navigation):
    """A pool over few segments repeats pairs, as (a, b) and as (b, a); no user is asked the same
    comparison twice, so none is both in their context and held out."""
    # 4 episodes of 2 segments: 8 segments, 28 distinct pairs, so a pool of 64 repeats many.
    config = DatasetConfig(num_users=4, context_size=4, heldout_size=8, pool_size=64,
                           num_episodes=4, segment_horizon=20)  # fmt: skip
    population = Population.mixture("navigation", navigation.feature_names, ["goal_a", "goal_b"])
    ds = build_dataset(jax.random.PRNGKey(0), navigation, population, config)
    assert len({tuple(sorted(p)) for p in np.asarray(ds.pool).tolist()}) < config.pool_size
    queries = np.sort(np.concatenate([ds.context.pairs, ds.heldout.pairs], axis=1), axis=-1)
    for u in range(ds.num_users):
        assert len({tuple(p) for p in queries[u].tolist()}) == queries.shape[1]


@pytest.mark.slow
def test_pool_with_too_few_distinct_pairs_is_rejected(navigation):
    # 8 segments have 28 distinct pairs; 24 random ones repeat some, leaving fewer than K + M.
    config = DatasetConfig(num_users=4, context_size=8, heldout_size=16, pool_size=24,
                           num_episodes=4, segment_horizon=20)  # fmt: skip
    population = Population.mixture("navigation", navigation.feature_names, ["goal_a", "goal_b"])
    with pytest.raises(ValueError, match=r"pool_size=24: .* distinct pairs \(either order\)"):
        build_dataset(jax.random.PRNGKey(0), navigation, population, config)


def test_dataset_labels_follow_each_users_true_reward(nav_dataset):
    ds = nav_dataset
    fa, fb = gather_features(ds.segments, ds.context.pairs)
    ret = jax.vmap(jax.vmap(segment_return, (None, 0)))
    r_a, r_b = ret(ds.users.theta, fa), ret(ds.users.theta, fb)
    expected = np.where(r_a > r_b, 1.0, np.where(r_a < r_b, 0.0, 0.5))
    np.testing.assert_array_equal(np.asarray(ds.context.labels), expected)


def test_opposite_goal_users_disagree(nav_dataset):
    """Two users wanting opposite goals label many shared pairs differently."""
    ds = nav_dataset
    fa, fb = gather_features(ds.segments, ds.pool)
    thetas = {t: ds.users.theta[np.asarray(ds.users.type_id) == t][0] for t in (0, 1)}
    ret = jax.vmap(segment_return, (None, 0))
    prefs = {t: np.asarray(ret(th, fa) > ret(th, fb)) for t, th in thetas.items()}
    assert (prefs[0] != prefs[1]).mean() > 0.3


def test_save_load_round_trips_exactly(nav_dataset, tmp_path):
    path = save_dataset(nav_dataset, tmp_path / "ds.npz")
    loaded = load_dataset(path)
    chex.assert_trees_all_equal(nav_dataset, loaded)
    assert loaded.meta == nav_dataset.meta
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_load_rejects_corrupt_and_mismatched_files(nav_dataset, tmp_path):
    path = save_dataset(nav_dataset, tmp_path / "ds.npz")
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFileError, match="corrupt"):
        load_dataset(tmp_path / "truncated.npz")
    with pytest.raises(DatasetFileError, match="does not exist"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DatasetFileError, match="no header"):
        load_dataset(tmp_path / "other.npz")


def test_load_rejects_malformed_headers_and_bad_values(nav_dataset, tmp_path):
    path = save_dataset(nav_dataset, tmp_path / "ds.npz")
    with np.load(path, allow_pickle=False) as npz:
        keys = npz.files
    theta = next(k for k in keys if k.endswith("theta"))
    labels = next(k for k in keys if "context" in k and k.endswith("labels"))
    features = next(k for k in keys if k.endswith("features"))
    cases = [
        ("__header__", lambda h: np.asarray("{not json"), "malformed header"),
        ("__header__", lambda h: np.asarray("[1, 2]"), "malformed header"),
        (theta, lambda x: np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x),
         "users.theta contains NaN or inf"),
        (features, lambda x: x + np.inf, "segments.features contains NaN or inf"),
        (labels, lambda x: np.full_like(x, 7.0), "context.labels must be in [0, 1]"),
    ]  # fmt: skip
    for i, (key, change, message) in enumerate(cases):
        with np.load(path, allow_pickle=False) as npz:
            flat = {k: npz[k] for k in npz.files}
        flat[key] = change(flat[key])
        np.savez(tmp_path / f"bad{i}.npz", **flat)
        with pytest.raises(DatasetFileError, match=re.escape(message)):
            load_dataset(tmp_path / f"bad{i}.npz")


def test_load_rejects_other_format_versions(nav_dataset, tmp_path, monkeypatch):
    from vpl_jax.data import dataset as dataset_module

    path = save_dataset(nav_dataset, tmp_path / "ds.npz")
    monkeypatch.setattr(dataset_module, "FORMAT_VERSION", 99)
    with pytest.raises(DatasetFileError, match="format version 1; this code reads 99"):
        load_dataset(path)


def test_population_for_another_task_is_rejected(navigation):
    from vpl_jax import envs

    three = envs.make("navigation", num_goals=3)
    population = Population.mixture("navigation", three.feature_names, ["goal_c"])
    with pytest.raises(ValueError, match="do not match"):
        build_dataset(jax.random.PRNGKey(0), navigation, population, DatasetConfig())
