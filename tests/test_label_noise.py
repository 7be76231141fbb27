"""Label noise: relabelling one dataset with noisy users, fitting S seeds of every labelling in
one call, and the label_noise experiment end to end."""

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from vpl_jax import rewards as R
from vpl_jax.data import relabel
from vpl_jax.harness import SweepPoint
from vpl_jax.pipeline import fit_labellings, score_labellings

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = R.TrainConfig(num_epochs=3, users_per_batch=4)


@pytest.fixture(scope="module")
def experiment(load_experiment):
    return load_experiment("label_noise")


def wrong(dataset, rational) -> np.ndarray:
    """bool[U, K + M]: which of the dataset's answers differ from the rational ones."""
    parts = [np.asarray(getattr(dataset, p).labels != getattr(rational, p).labels)
             for p in ("context", "heldout")]  # fmt: skip
    return np.concatenate(parts, axis=1)


# --- relabelling --------------------------------------------------------------------------------
def test_no_noise_gives_the_rational_answers_and_epsilon_flips_its_share(nav_dataset):
    users = nav_dataset.users.rational()
    key = jax.random.PRNGKey(7)
    rational = relabel(key, nav_dataset, users)  # the conftest dataset's users are rational
    chex.assert_trees_all_equal(rational.context, nav_dataset.context)
    chex.assert_trees_all_equal(rational.heldout, nav_dataset.heldout)
    for quiet in (users.with_human(epsilon=0.0), users.with_human(beta=math.inf)):
        assert not wrong(relabel(key, nav_dataset, quiet), rational).any()
    for epsilon in (0.2, 0.5):  # 16 users x 24 answers: a binomial share, sd <= 0.026
        share = wrong(relabel(key, nav_dataset, users.with_human(epsilon=epsilon)), rational)
        assert abs(share.mean() - epsilon) < 0.08, (epsilon, share.mean())


def test_with_the_same_key_more_noise_only_adds_wrong_answers(nav_dataset):
    """Common random numbers: an answer wrong at a small noise is wrong at a larger one too,
    so a curve over noise sizes compares labellings that differ only where the noise does."""
    users = nav_dataset.users.rational()
    key = jax.random.PRNGKey(3)
    rational = relabel(key, nav_dataset, users)
    for field, values in (("epsilon", (0.1, 0.3, 0.5)), ("beta", (4.0, 1.0, 0.25))):
        shares = []
        for smaller, larger in itertools.pairwise(values):
            a = wrong(relabel(key, nav_dataset, users.with_human(**{field: smaller})), rational)
            b = wrong(relabel(key, nav_dataset, users.with_human(**{field: larger})), rational)
            assert not (a & ~b).any(), (field, smaller, larger)
            shares += [a.mean(), b.mean()]
        assert shares[0] < shares[-1], (field, shares)


def test_with_human_refuses_unknown_fields_and_bad_values(nav_dataset):
    users = nav_dataset.users
    with pytest.raises(ValueError, match="unknown human model field"):
        users.with_human(temperature=2.0)
    with pytest.raises(ValueError, match="epsilon"):
        users.with_human(epsilon=0.7)
    noisy = users.with_human(epsilon=0.25, beta=2.0)
    np.testing.assert_array_equal(noisy.human.epsilon, np.full(users.type_id.shape, 0.25))
    np.testing.assert_array_equal(noisy.human.gamma, users.human.gamma)  # the rest untouched


# --- seeds ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["btl", "linear_bayes"])
@pytest.mark.slow  # 45 s in the fast tier on 2 cores (2026-12-07)
def test_fitting_seeds_in_one_call_equals_fitting_each_seed_alone(nav_dataset, method):
    model = R.make_model(method, R.ModelSizes(hidden=(16,), context_size=8))
    users = nav_dataset.users.rational()
    key = jax.random.PRNGKey(1)
    datasets = [relabel(key, nav_dataset, users.with_human(epsilon=e)) for e in (0.0, 0.3)]
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    both = fit_labellings(model, TINY_TRAIN, keys, datasets)
    assert jax.tree.leaves(both)[0].shape[:2] == (2, 2)  # [S, P, ...]
    rational = datasets[0].split()[1]
    accuracy, _ = score_labellings(model, both, datasets, rational, context_size=4, seeds=True)
    assert accuracy.shape == (2, 2, rational.num_users)
    for s in range(2):
        one = fit_labellings(model, TINY_TRAIN, keys[s], datasets)
        chex.assert_trees_all_close(jax.tree.map(lambda x, s=s: x[s], both), one, atol=1e-5)
        alone, _ = score_labellings(model, one, datasets, rational, context_size=4)
        np.testing.assert_allclose(accuracy[s], alone, atol=1e-6)


@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_a_shorter_context_masks_the_later_answers(nav_dataset):
    """k context answers are the first k: what follows them does not change the score."""
    model = R.make_model("linear_bayes", R.ModelSizes(context_size=8))
    users = nav_dataset.users.rational()
    key = jax.random.PRNGKey(1)
    datasets = [relabel(key, nav_dataset, users)]
    params = fit_labellings(model, TINY_TRAIN, key, datasets)
    rational = datasets[0].split()[1]
    labels = datasets[0].context.labels
    flipped = datasets[0].replace(
        context=datasets[0].context.replace(labels=labels.at[:, 2:].set(1 - labels[:, 2:]))
    )
    first_two, _ = score_labellings(model, params, datasets, rational, context_size=2)
    later_flipped, _ = score_labellings(model, params, [flipped], rational, context_size=2)
    np.testing.assert_array_equal(first_two, later_flipped)
    every, _ = score_labellings(model, params, [flipped], rational)
    assert not np.array_equal(every, first_two)


# --- the experiment -----------------------------------------------------------------------------
def test_presets_are_valid(experiment):
    for preset in experiment.PRESETS.values():
        preset.validate()
    cpu = experiment.PRESETS["cpu"]
    assert cpu.num_seeds >= 3 and max(cpu.context_sizes) <= cpu.data.context_size


def test_noise_points_set_the_human_model_of_rational_users(experiment, nav_dataset):
    users = nav_dataset.users.replace(human=nav_dataset.users.human.replace(
        gamma=np.full(16, 0.5, np.float32)))  # fmt: skip
    none = experiment.noisy(users, SweepPoint("none", 0.0))
    hot = experiment.noisy(users, SweepPoint("temperature", 4.0))
    sloppy = experiment.noisy(users, SweepPoint("epsilon", 0.2))
    assert np.all(np.isinf(none.human.beta)) and np.all(none.human.gamma == 1)
    np.testing.assert_allclose(hot.human.beta, 0.25)
    assert np.all(hot.human.epsilon == 0) and np.all(hot.human.gamma == 1)
    np.testing.assert_allclose(sloppy.human.epsilon, 0.2)
    assert np.all(np.isinf(sloppy.human.beta))


@pytest.mark.slow  # two tasks' datasets and three models' compiles: about 3 min on 2 cores
def test_the_command_line_writes_every_cell_and_pure_noise_costs_vpl(experiment, tmp_path):
    """Through the command line at a tiny size: a rational_accuracy row per method, task, k,
    noise point and seed, and on both tasks VPL trained on and given rational answers beats VPL
    trained on and given answers that are coin flips (epsilon = 0.5)."""
    argv = [
        "--num-seeds", "2", "--epsilon-sizes", "0.5", "--temperature-sizes", "4",
        "--context-sizes", "1", "4", "--data.num-users", "48", "--data.context-size", "4",
        "--data.heldout-size", "8", "--data.pool-size", "256", "--data.num-episodes", "32",
        "--train.num-epochs", "20", "--train.users-per-batch", "8", "--sizes.hidden", "32",
        "--run-name", "t", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "VPL_JAX_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    script = ROOT / "experiments" / "label_noise.py"
    subprocess.run([sys.executable, str(script), *argv], env=env, check=True, timeout=1200)
    folder = tmp_path / "label_noise" / "t"
    rows = [r for r in json.loads((folder / "metrics.json").read_text())["rows"]
            if r["metric"] == "rational_accuracy" and r["user_type"] == "all"]  # fmt: skip
    cells = {(r["method"], r["task"], r["n_queries"], r["noise"], r["size"], r["seed"])
             for r in rows}  # fmt: skip
    points = [("epsilon", 0.0), ("epsilon", 0.5), ("temperature", 0.0), ("temperature", 4.0)]
    expected = {(m, t, k, kind, size, s) for m in ("btl", "vpl", "linear_bayes")
                for t in ("navigation", "highway") for k in (1, 4) for kind, size in points
                for s in (0, 1)}  # fmt: skip
    assert cells == expected and len(rows) == len(expected)
    vpl = {(r["task"], r["size"], r["seed"]): r["value"] for r in rows
           if r["method"] == "vpl" and r["noise"] == "epsilon" and r["n_queries"] == 4}  # fmt: skip
    for task in ("navigation", "highway"):  # measured: 0.82 vs 0.47, 0.79 vs 0.48
        rational = np.mean([vpl[(task, 0.0, s)] for s in (0, 1)])
        coin_flips = np.mean([vpl[(task, 0.5, s)] for s in (0, 1)])
        assert rational > coin_flips + 0.1, (task, rational, coin_flips)
    assert (folder / "label_noise.png").exists()
    assert "Does VPL degrade gracefully?" in (folder / "summary.md").read_text()
