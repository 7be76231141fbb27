"""many_types: populations of N random user types and of spreading Gaussians, and VPL on them."""

import json

import jax
import numpy as np
import pytest

from vpl_jax import harness
from vpl_jax.data import DatasetConfig, repopulate
from vpl_jax.data.dataset import split_counts
from vpl_jax.users import Population

FEATURES = ("a", "b", "c", "d", "e")


@pytest.fixture(scope="module")
def experiment(load_experiment):
    return load_experiment("many_types")


@pytest.mark.parametrize("num_types", [2, 5, 16])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_types_are_distinct_unit_directions_reproducible_from_the_seed(num_types, seed):
    key = jax.random.PRNGKey(seed)
    population = Population.random_types("highway", FEATURES, num_types, key)
    theta = population.theta_mean
    assert theta.shape == (num_types, len(FEATURES))
    np.testing.assert_allclose(np.linalg.norm(theta, axis=1), 1.0, rtol=1e-5)
    cosine = theta @ theta.T
    assert np.all(cosine[~np.eye(num_types, dtype=bool)] < 1 - 1e-4)  # no two types alike
    np.testing.assert_array_equal(population.shares, np.full(num_types, 1 / num_types, np.float32))
    again = Population.random_types("highway", FEATURES, num_types, key)
    np.testing.assert_array_equal(again.theta_mean, theta)
    other = Population.random_types("highway", FEATURES, num_types, jax.random.PRNGKey(seed + 100))
    assert not np.allclose(other.theta_mean, theta)


def test_random_types_disagree_as_often_as_they_agree():
    """The directions' law is symmetric: over many types the mean cosine of two is ~0."""
    theta = Population.random_types("highway", FEATURES, 400, jax.random.PRNGKey(3)).theta_mean
    cosine = (theta @ theta.T)[np.triu_indices(len(theta), 1)]
    assert abs(cosine.mean()) < 0.02
    assert 0.4 < (cosine < 0).mean() < 0.6


def test_every_type_count_of_the_cpu_preset_splits_into_the_same_user_counts(experiment):
    """num_users 240, test 0.2, validation 0.25: every type has training and test users, and
    every population has as many fitting, validation and test users (one compilation)."""
    config = experiment.PRESETS["cpu"]
    sizes = set()
    for n in (1, *config.type_counts):
        population = Population.random_types("highway", FEATURES, n, jax.random.PRNGKey(0))
        train, test = split_counts(population, config.data)
        assert train.min() >= 2 and test.min() >= 1
        valid = np.array([max(round(config.validation_fraction * t), 1) for t in train])
        sizes.add((int((train - valid).sum()), int(valid.sum()), int(test.sum())))
    assert len(sizes) == 1


def test_a_repopulated_dataset_has_every_type_among_training_and_test_users(
    nav_dataset, navigation
):
    base = nav_dataset.select_users(np.arange(16))
    population = Population.random_types(
        "navigation", navigation.feature_names, 4, jax.random.PRNGKey(1)
    )
    dataset = repopulate(jax.random.PRNGKey(2), base, population, test_fraction=0.25)
    assert dataset.meta.type_names == population.type_names
    type_id, is_test = np.asarray(dataset.users.type_id), np.asarray(dataset.is_test)
    for t in range(4):
        assert (type_id[~is_test] == t).sum() == 3 and (type_id[is_test] == t).sum() == 1
    # The same segments and pairs, answered by the new users' theta.
    np.testing.assert_array_equal(dataset.context.pairs, base.context.pairs)
    theta = np.asarray(dataset.users.theta)
    np.testing.assert_allclose(theta, population.theta_mean[type_id], rtol=1e-6)
    feats = np.asarray(base.segments.features).sum(axis=1)  # [S, F]
    pairs = np.asarray(dataset.context.pairs)
    margin = np.einsum("uf,ukf->uk", theta, feats[pairs[..., 0]] - feats[pairs[..., 1]])
    labels = np.asarray(dataset.context.labels)
    strict = np.abs(margin) > 1e-4
    np.testing.assert_array_equal(labels[strict], (margin[strict] > 0).astype(np.float32))


def test_too_few_users_for_the_largest_type_count_is_refused_naming_the_field(experiment):
    config = experiment.Config(
        tasks=("navigation",),
        type_counts=(2, 16),
        data=DatasetConfig(num_users=32, pool_size=256, num_episodes=32, heldout_size=8),
    )
    with pytest.raises(harness.ConfigError, match=r"data\.num_users=32.*type_counts=16"):
        config.validate()


TINY = [
    "--seed", "1", "--tasks", "navigation", "--num-seeds", "2",
    "--type-counts", "2", "4", "--spreads", "0.5",
    "--data.num-users", "80", "--data.num-episodes", "32", "--data.pool-size", "256",
    "--data.context-size", "4", "--data.heldout-size", "12",
    "--train.num-epochs", "30", "--train.users-per-batch", "8",
    "--sizes.hidden", "16", "--sizes.inputs", "features", "--sizes.latent-dim", "4",
]  # fmt: skip


@pytest.mark.slow  # about 95 s on 2 shared cores: three models, 30 epochs, 3 populations
def test_a_tiny_run_writes_every_method_population_and_seed_and_vpl_beats_btl(experiment, tmp_path):
    harness.run_experiment(
        "many_types", experiment.Config, experiment.PRESETS, experiment.main,
        [*TINY, "--results-dir", str(tmp_path), "--run-name", "tiny"],
    )  # fmt: skip
    rows = json.loads((tmp_path / "many_types" / "tiny" / "metrics.json").read_text())["rows"]
    accuracy = [r for r in rows if r["metric"] == "heldout_accuracy"]
    cells = {(r["method"], r.get("num_types"), r.get("spread"), r["seed"]) for r in accuracy}
    want = {
        (m, n, s, seed)
        for m in ("btl", "vpl", "linear_bayes")
        for n, s in ((2, None), (4, None), (None, 0.5))
        for seed in (0, 1)
    }
    assert cells == want and len(accuracy) == len(want)
    worst = {(r["method"], r["num_types"]) for r in rows if r["metric"] == "worst_type_accuracy"}
    assert worst == {(m, n) for m in ("btl", "vpl", "linear_bayes") for n in (2, 4)}
    assert {r["method"] for r in rows if r["metric"] == "theta_alignment"} == {"linear_bayes"}

    def mean(method):
        return np.mean(
            [r["value"] for r in accuracy if r["method"] == method and r.get("num_types") == 2]
        )

    assert mean("vpl") > mean("btl") + 0.1
    assert (tmp_path / "many_types" / "tiny" / "accuracy_vs_types_and_spread.png").exists()
