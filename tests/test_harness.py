"""The harness contract: presets and overrides, clear config errors, tidy atomic results."""

import csv
import dataclasses
import json
import math
import os
import re
import time
import types
from pathlib import Path

import numpy as np
import pytest

from vpl_jax import harness
from vpl_jax.checks import Choice, Float, Int, checked


@dataclasses.dataclass(frozen=True)
class ToyConfig(harness.ExperimentConfig):
    num_users: int = checked(8, Int(ge=1))
    """Users."""
    task: str = checked("navigation", Choice(("navigation", "highway")))
    """Task name."""
    learning_rate: float = checked(1e-3, Float(ge=0))
    """Step size."""


PRESETS = {"cpu": ToyConfig(), "paper": ToyConfig(num_users=512)}


def test_preset_then_overrides():
    config = harness.parse(ToyConfig, PRESETS, ["--preset", "paper", "--seed", "3"])
    assert (config.preset, config.num_users, config.seed) == ("paper", 512, 3)
    config = harness.parse(ToyConfig, PRESETS, ["--num-users", "5", "--run-name", "r1"])
    assert (config.preset, config.num_users, config.run_name) == ("cpu", 5, "r1")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "preset='huge': allowed presets are ['cpu', 'paper']"),
        (["--num-users", "-2"], "num_users=-2: must be an integer >= 1"),
        (["--task", "kitchen"], "task='kitchen': allowed values are ['navigation', 'highway']"),
        (["--run-name", "a/b"], "run_name='a/b'"),
        (["--run-name", "a\n"], "run_name='a\\n'"),
        (["--seed", str(2**32)], "seed=4294967296: must be an integer in [0, 4294967295]"),
        (["--seed", str(2**63)], "seed=9223372036854775808: must be an integer in [0, 4294967295]"),
        (["--learning-rate", "inf"], "learning_rate=inf: must be a finite number >= 0"),
        (["--learning-rate", "nan"], "learning_rate=nan: must be a finite number >= 0"),
        (["--results-dir", ""], "results_dir='': give a folder"),
        (["--results-dir", "pyproject.toml/sub"], "'pyproject.toml' is a file"),
    ],
)
def test_bad_values_exit_with_a_message_naming_the_field(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness.parse(ToyConfig, PRESETS, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_same_seed_runs_write_byte_identical_metrics(tmp_path):
    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path))

    def main(cfg, results):
        time.sleep(0.05)  # the runs take different times; that must not reach metrics.json
        values = np.random.default_rng(cfg.seed).uniform(size=(2, 4))
        for method, per_seed in zip(("m", "n"), values, strict=True):
            for s, value in enumerate(per_seed):
                results.add(method=method, task=cfg.task, metric="x", value=value, seed=s)
        return ""

    written = []
    for name in ("a", "b"):
        harness.run_experiment("toy", ToyConfig, {"cpu": config}, main, argv=["--run-name", name])
        folder = tmp_path / "toy" / name
        written.append([(folder / f).read_bytes() for f in ("metrics.json", "intervals.json")])
        assert harness.load_timing(folder)["wall_time_s"] >= 0.05
    assert written[0] == written[1]


def _toy_run(tmp_path, name, argv=(), figure=None):
    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path))

    def main(cfg, results):
        results.add(method="m", task=cfg.task, metric="x", value=1.0)
        if figure:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots()
            ax.plot([0, 1])
            results.figure(fig, figure)
        return ""

    argv = ["--run-name", name, *argv]
    return harness.run_experiment("toy", ToyConfig, {"cpu": config}, main, argv=argv)


def test_a_completed_run_is_refused_unless_overwritten_and_overwrite_leaves_nothing_old(
    tmp_path, capsys
):
    folder = tmp_path / "toy" / "r"
    _toy_run(tmp_path, "r", figure="old_figure")
    before = (folder / "metrics.json").read_bytes()
    config_before = (folder / "config.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        _toy_run(tmp_path, "r", ["--num-users", "9"])
    assert exit_info.value.code == 2
    assert "holds a completed run; pass --overwrite" in capsys.readouterr().err
    # The refused run touched nothing: the old config still sits beside the old metrics.
    assert (folder / "metrics.json").read_bytes() == before
    assert (folder / "config.json").read_bytes() == config_before
    _toy_run(tmp_path, "r", ["--num-users", "9", "--overwrite"])
    assert json.loads((folder / "config.json").read_text())["num_users"] == 9
    assert not list(folder.glob("old_figure.*"))  # no figure of the replaced run stays behind
    assert not (folder / ".lock").exists()


def test_an_interrupted_run_resumes_in_its_folder_and_a_live_one_is_locked(tmp_path, capsys):
    folder = tmp_path / "toy" / "r"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")  # an interrupted run: no metrics.json
    (folder / ".lock").write_text("999999999")  # left by a killed process (no such pid)
    _toy_run(tmp_path, "r")
    assert (folder / "metrics.json").exists() and not (folder / ".lock").exists()
    other = tmp_path / "toy" / "live"
    other.mkdir(parents=True)
    (other / ".lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(SystemExit):
        _toy_run(tmp_path, "live")
    assert "is in use by process" in capsys.readouterr().err


def test_checkpoint_fingerprints_ignore_where_and_how_a_run_is_recorded():
    base = ToyConfig()
    moved = dataclasses.replace(
        base, results_dir="./elsewhere", run_name="other", tensorboard=True, overwrite=True
    )
    assert base.results_json() == moved.results_json()
    assert base.results_json() != dataclasses.replace(base, seed=1).results_json()


def test_results_are_tidy_and_complete(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path), run_name="r")

    def main(cfg, results):
        for user_type, value in [("goal_a", 0.9), ("goal_b", 0.5)]:
            results.add(
                method="btl",
                task=cfg.task,
                user_type=user_type,
                metric="heldout_accuracy",
                value=value,
            )
        results.add(method="vpl", task=cfg.task, metric="heldout_accuracy", value=0.95, n_queries=4)
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        results.figure(fig, "curve")
        return "The notes."

    run = harness.run_experiment("toy", ToyConfig, {"cpu": config}, main, argv=["--run-name", "r"])
    folder = tmp_path / "toy" / "r"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["experiment"] == "toy" and metrics["preset"] == "cpu" and metrics["seed"] == 0
    assert metrics["rows"] == run.rows and len(metrics["rows"]) == 3
    assert metrics["rows"][2]["n_queries"] == 4
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["user_type"] for r in rows] == ["goal_a", "goal_b", "all"]
    assert json.loads((folder / "config.json").read_text())["run_name"] == "r"
    summary = (folder / "summary.md").read_text()
    assert "| btl | 0.900 | 0.500 |" in summary and "The notes." in summary
    assert "| vpl, n_queries=4 |  |  | 0.950 |" in summary  # varying fields qualify the method
    # One seed: tables as they always were, no probability of improvement, and intervals.json
    # labels each cell's zero-width interval with num_seeds 1.
    assert "Cells:" not in summary and "Probability of improvement" not in summary
    intervals = json.loads((folder / "intervals.json").read_text())["intervals"]
    assert intervals[0] == {
        "method": "btl",
        "task": "navigation",
        "user_type": "goal_a",
        "metric": "heldout_accuracy",
        "mean": 0.9,
        "low": 0.9,
        "high": 0.9,
        "num_seeds": 1,
    }
    assert (folder / "curve.png").stat().st_size > 0 and (folder / "curve.pdf").exists()
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


def test_type_means_average_each_types_users_ignoring_nan():
    # Two seeds, two columns, four users: types a (users 0 and 1), b (user 2; NaN in column 1),
    # c (user 3); type d has no user and is left out.
    values = np.array(
        [[[1.0, 3.0, 5.0, 7.0], [2.0, 4.0, np.nan, 8.0]],
         [[0.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]]], np.float32
    )  # fmt: skip  # [S, C, U]
    type_id = np.array([0, 0, 1, 2])
    with pytest.warns(RuntimeWarning, match="Mean of empty slice"):  # b, column 1: all NaN
        means = harness.type_means(values, type_id, ("a", "b", "c", "d"))
        # Users along another axis give the same means; without overall, no "all".
        moved = harness.type_means(np.moveaxis(values, 2, 1), type_id, "abc", 1, overall=False)
    assert list(means) == ["a", "b", "c", "all"]
    np.testing.assert_array_equal(means["a"], [[2.0, 3.0], [0.0, 1.0]])
    np.testing.assert_array_equal(means["b"], [[5.0, np.nan], [1.0, 1.0]])
    np.testing.assert_array_equal(means["c"], [[7.0, 8.0], [2.0, 1.0]])
    np.testing.assert_allclose(means["all"], [[4.0, 14 / 3], [0.75, 1.0]])
    assert list(moved) == ["a", "b", "c"]
    for name in moved:
        np.testing.assert_array_equal(moved[name], means[name])


def test_type_rows_are_per_type_seed_and_column_with_the_columns_fields_last(tmp_path):
    results = harness.RunResults("toy", dataclasses.replace(ToyConfig(), results_dir=str(tmp_path)))
    values = np.array([[[1.0, 0.0], [3.0, 1.0]], [[0.5, 0.5], [0.5, 1.0]]])  # [S, U, C]
    columns = [(0, {"n_queries": 0, "model": "vpl"}), (1, {"n_queries": 2, "model": "vpl"})]
    results.add_type_rows(values, np.array([0, 1]), ("a", "b"), columns, axis=1, method="random",
                          task="navigation", metric="heldout_accuracy")  # fmt: skip
    rows = [(r["user_type"], r["seed"], r["n_queries"], r["value"]) for r in results.rows]
    assert rows == [
        ("a", 0, 0, 1.0), ("a", 0, 2, 0.0), ("a", 1, 0, 0.5), ("a", 1, 2, 0.5),
        ("b", 0, 0, 3.0), ("b", 0, 2, 1.0), ("b", 1, 0, 0.5), ("b", 1, 2, 1.0),
        ("all", 0, 0, 2.0), ("all", 0, 2, 0.5), ("all", 1, 0, 0.5), ("all", 1, 2, 0.75),
    ]  # fmt: skip
    assert list(results.rows[0]) == [
        "method", "task", "user_type", "metric", "value", "seed", "n_queries", "model"
    ]  # fmt: skip
    # A column may give several rows (label_noise: the noise-free point under each kind).
    results.rows.clear()
    twice = [(0, {"noise": "epsilon"}), (0, {"noise": "temperature"})]
    results.add_type_rows(values[:, :1], np.array([0]), ("a",), twice, axis=1, overall=False,
                          method="btl", task="highway", metric="m")  # fmt: skip
    assert [(r["seed"], r["noise"], r["value"]) for r in results.rows] == [
        (0, "epsilon", 1.0), (0, "temperature", 1.0), (1, "epsilon", 0.5), (1, "temperature", 0.5)
    ]  # fmt: skip
    # Seeds numbered from the run's seed (underspecification: seed config.seed + s).
    results.rows.clear()
    results.add_type_rows(values[:, :1], np.array([0]), ("a",), [(1, {})], axis=1, overall=False,
                          first_seed=7, method="btl", task="highway", metric="m")  # fmt: skip
    assert [(r["seed"], r["value"]) for r in results.rows] == [(7, 0.0), (8, 0.5)]


def test_summary_and_intervals_json_carry_intervals_over_seeds(tmp_path):
    """Three seeds per cell: summary.md shows ``mean [low, high]`` and the probability of
    improvement; metrics.json keeps the per-seed rows; intervals.json has the aggregates."""
    from vpl_jax.intervals import improvement_probability, seed_interval

    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path))
    scores = {  # method -> user type -> one value per seed
        "btl": {"goal_a": [0.5, 0.6, 0.7], "goal_b": [0.4, 0.4, 0.5]},
        "vpl": {"goal_a": [0.8, 0.9, 1.0], "goal_b": [0.4, 0.5, 0.6]},
    }

    def main(cfg, results):
        for method, per_type in scores.items():
            for user_type, values in per_type.items():
                for s, value in enumerate(values):
                    results.add(method=method, task=cfg.task, user_type=user_type,
                                metric="heldout_accuracy", value=value, seed=s)  # fmt: skip
        results.add(method="btl", task=cfg.task, metric="heldout_accuracy", value=None, seed=3)
        return ""

    harness.run_experiment("toy", ToyConfig, {"cpu": config}, main, argv=["--run-name", "s"])
    folder = tmp_path / "toy" / "s"
    rows = json.loads((folder / "metrics.json").read_text())["rows"]
    assert len(rows) == 13 and {r["seed"] for r in rows} == {0, 1, 2, 3}
    assert all("mean" not in r and "low" not in r for r in rows)  # per-seed rows unchanged

    a = seed_interval(scores["btl"]["goal_a"])
    assert (a.estimate, a.low, a.high) == pytest.approx((0.6, 0.5, 0.7))  # 1/27 > 2.5 %
    summary = (folder / "summary.md").read_text()
    assert "| btl | 0.600 [0.500, 0.700] | 0.433 [0.400, 0.500] |" in summary
    assert "Cells: the mean over seeds" in summary
    b = improvement_probability(scores["btl"]["goal_b"], scores["vpl"]["goal_b"])
    # btl's two 0.4s tie vpl's 0.4 (0.5 each); its 0.5 beats 0.4 and ties 0.5 (1.5): of 9 pairs.
    assert b.estimate == pytest.approx(2.5 / 9)
    assert f"| btl > vpl | 0.00 [0.00, 0.00] | {b.estimate:.2f} [{b.low:.2f}, {b.high:.2f}] |" in (
        summary
    )

    written = json.loads((folder / "intervals.json").read_text())
    assert written["confidence"] == 0.95 and written["reps"] > 1000
    cells = {(r["method"], r["user_type"]): r for r in written["intervals"]}
    assert len(cells) == 4  # the row without a value is left out
    assert cells["btl", "goal_a"] == {
        "method": "btl",
        "task": "navigation",
        "user_type": "goal_a",
        "metric": "heldout_accuracy",
        "mean": a.estimate,
        "low": a.low,
        "high": a.high,
        "num_seeds": 3,
    }
    (improvement,) = [r for r in written["improvement"] if r["user_type"] == "goal_b"]
    assert improvement["method"] == "btl" and improvement["versus"] == "vpl"
    assert improvement["probability"] == b.estimate and improvement["num_seeds_versus"] == 3


def test_interval_rows_name_every_field_that_tells_cells_apart():
    cases = [("a", 1, 0, 0.1), ("a", 1, 1, 0.3), ("a", 2, 0, 0.5), ("b", 2, 0, 0.4)]
    rows = [
        dict(method=m, task="t", user_type="all", metric="x", value=v, seed=s, n_queries=n)
        for m, n, s, v in cases
    ]
    cells = harness.interval_rows(rows)
    assert [(r["method"], r["n_queries"], r["num_seeds"]) for r in cells] == [
        ("a", 1, 2),
        ("a", 2, 1),
        ("b", 2, 1),
    ]
    assert cells[0]["mean"] == pytest.approx(0.2)
    # Only the methods of the same n_queries are compared.
    (pair,) = harness.improvement_rows(rows)
    assert (pair["method"], pair["versus"], pair["n_queries"], pair["probability"]) == (
        "a",
        "b",
        2,
        1.0,
    )


def test_aggregate_field_names_are_reserved(tmp_path):
    results = harness.RunResults("toy", dataclasses.replace(ToyConfig(), results_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="reserved"):
        results.add(method="m", task="navigation", metric="x", value=1.0, low=0.5)


def test_method_names_must_be_snake_case(tmp_path):
    results = harness.RunResults("toy", dataclasses.replace(ToyConfig(), results_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="snake_case"):
        results.add(method="VPL+SPO", task="navigation", metric="success", value=1.0)


def test_chunks_cover_the_total():
    assert list(harness.chunks(10, 4)) == [4, 4, 2]
    assert list(harness.chunks(0, 4)) == []


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os

    from vpl_jax.atomic import atomic_write

    with atomic_write(tmp_path / "a.txt") as f:
        f.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_tensorboard_curves_are_logged_when_asked(tmp_path):
    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path), tensorboard=True)
    results = harness.RunResults("toy", config)
    results.log_curves("ppo", {"episode_return": np.arange(5.0), "loss": np.ones((5, 2))}, 10)
    assert list((results.path / "tensorboard").glob("events.out.tfevents.*"))
    quiet = harness.RunResults("toy", dataclasses.replace(config, tensorboard=False, run_name="q"))
    quiet.log_curves("ppo", {"x": np.arange(3.0)})
    assert not (quiet.path / "tensorboard").exists()


@dataclasses.dataclass(frozen=True)
class RationalConfig(harness.ExperimentConfig):
    beta: float = math.inf
    """Users' rationality (inf: rational)."""
    sizes: tuple[float, ...] = (1.0, math.inf)
    """Sizes."""


def test_config_json_is_valid_json_with_non_finite_floats_as_null(tmp_path):
    def no_constants(name):
        raise AssertionError(f"config.json holds {name}, which is not JSON")

    config = RationalConfig(results_dir=str(tmp_path), run_name="r")
    path = harness.RunResults("toy", config).write_config()
    written = json.loads(path.read_text(), parse_constant=no_constants)
    assert written["beta"] is None and written["sizes"] == [1.0, None]  # as metrics.json does
    assert written["run_name"] == "r" and written["seed"] == 0


def test_reward_and_ppo_histories_are_logged_when_asked(tmp_path):
    config = dataclasses.replace(ToyConfig(), results_dir=str(tmp_path), tensorboard=True)
    results = harness.RunResults("toy", config)
    history = types.SimpleNamespace(  # a vpl_jax.rewards.History of 2 seeds and 5 epochs
        train={"loss": np.ones((2, 5))}, valid={"nll": np.ones((2, 5))}
    )
    results.log_reward_history("navigation/btl/reward", history)
    results.log_ppo_history("navigation/vpl/ppo", {"episode_return": np.ones((3, 2))}, 100)
    assert list((results.path / "tensorboard").glob("events.out.tfevents.*"))
    quiet = harness.RunResults("toy", dataclasses.replace(config, tensorboard=False, run_name="q"))
    quiet.log_reward_history("btl", history)
    assert not (quiet.path / "tensorboard").exists()


# --- the experiments' command lines (bad inputs: test_bad_inputs.py) ------------------------------
#: The experiments that train policies with PPO (each offers --checkpoint-every).
POLICY_EXPERIMENTS = (
    "underspecification", "active_queries", "misspecification", "misidentification", "nash",
    "policy_conflicts",
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("misidentification", ["--methods", "btl", "--criteria", "random"]),
        ("underspecification", ["--center-reward-tasks"]),
        ("underspecification", ["--center-reward-tasks", "navigation", "highway"]),
        ("reward_accuracy", ["--seed", str(2**32 - 1)]),
        ("reproduce", ["--experiment-preset", "paper"]),
        *[(name, ["--checkpoint-every", "40"]) for name in POLICY_EXPERIMENTS],
    ],
)
def test_experiment_good_inputs_parse(name, argv, load_experiment):
    experiment = load_experiment(name)
    harness.parse(experiment.Config, experiment.PRESETS, argv)


class _Captured(Exception):
    def __init__(self, checkpointer):
        self.checkpointer = checkpointer


@pytest.mark.slow  # the shared navigation dataset (~20 s) and active_queries' VPL (~18 s)
@pytest.mark.parametrize(
    "name", ["misspecification", "misidentification", "active_queries", "policy_conflicts"]
)
def test_policy_experiments_checkpoint_their_ppo_in_the_run_folder(
    name, load_experiment, nav_dataset, monkeypatch, tmp_path
):
    """--checkpoint-every reaches the experiment's first PPO training (before this option they
    had none): a checkpointer in <run folder>/checkpoints/ saving at that interval. The data
    and the reward fit are stubbed; PPO stops at its first call."""
    import jax

    from vpl_jax import pipeline
    from vpl_jax import rewards as R

    experiment = load_experiment(name)

    def train(self, keys, inputs, desc="PPO", checkpointer=None):
        raise _Captured(checkpointer)

    monkeypatch.setattr(pipeline.PolicyTrainer, "train", train)
    argv = ["--run-name", "ck", "--results-dir", str(tmp_path), "--checkpoint-every", "40"]
    if name == "policy_conflicts":  # no preference data: one policy per user type
        argv += ["--tasks", "navigation", "--num-reference-episodes", "2"]
    else:  # the data are stubbed wherever the experiment builds them
        stub = lambda *args, **kwargs: nav_dataset  # noqa: E731
        monkeypatch.setattr(harness, "task_dataset", stub)
        if hasattr(experiment, "build_dataset"):
            monkeypatch.setattr(experiment, "build_dataset", stub)
    if name == "active_queries":
        argv += ["--tasks", "navigation", "--models", "vpl", "--criteria", "random"]
        model = R.VPL(latent_dim=2, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
        pairs = R.user_pairs(nav_dataset, "all", model.inputs).batch(jax.numpy.arange(4))
        params = jax.vmap(lambda k: model.init(k, pairs))(jax.random.split(jax.random.key(0), 2))
        monkeypatch.setattr(experiment, "train", lambda *args: (model, params, None))
        monkeypatch.setattr(experiment.harness.RunResults, "log_reward_history", lambda *a: None)
    with pytest.raises(_Captured) as captured:
        harness.run_experiment(name, experiment.Config, experiment.PRESETS, experiment.main, argv)
    checkpointer = captured.value.checkpointer
    assert checkpointer is not None and checkpointer.every == 40
    assert checkpointer.directory.parent == (tmp_path / name / "ck" / "checkpoints").absolute()


def test_active_queries_reward_centring_is_the_ppo_option(load_experiment):
    experiment = load_experiment("active_queries")
    for preset in experiment.PRESETS:
        config = harness.parse(experiment.Config, experiment.PRESETS, ["--preset", preset])
        assert config.ppo.center_rewards
    argv = ["--ppo.no-center-rewards"]
    assert not harness.parse(experiment.Config, experiment.PRESETS, argv).ppo.center_rewards


def test_tensorboard_is_offered_by_the_experiments_that_log_curves(load_experiment, capsys):
    reproduce = load_experiment("reproduce")
    for name in reproduce.EXPERIMENTS:
        experiment = load_experiment(name)
        if name in reproduce.NO_TENSORBOARD:
            with pytest.raises(SystemExit):
                harness.parse(experiment.Config, experiment.PRESETS, ["--tensorboard"])
        else:
            config = harness.parse(experiment.Config, experiment.PRESETS, ["--tensorboard"])
            assert config.tensorboard, name
        assert sorted(experiment.PRESETS) == sorted(reproduce.EXPERIMENT_PRESETS), name
    capsys.readouterr()


def test_reproduce_passes_tensorboard_to_the_experiments_that_log_curves(
    tmp_path, load_experiment, monkeypatch
):
    reproduce = load_experiment("reproduce")
    commands = []
    monkeypatch.setattr(reproduce.subprocess, "run", lambda cmd, check: commands.append(cmd))
    argv = ["--run-name", "r", "--results-dir", str(tmp_path), "--tensorboard",
            "--only", "reward_accuracy", "misidentification"]  # fmt: skip
    config = harness.parse(reproduce.Config, reproduce.PRESETS, argv)
    reproduce.main(config, harness.RunResults("reproduce", config))
    flags = {cmd[1].rsplit("/", 1)[-1]: "--tensorboard" in cmd for cmd in commands}
    assert flags == {"reward_accuracy.py": True, "misidentification.py": False}


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "examples").glob("*.py")), ids=lambda p: p.stem
)
def test_every_example_registers_the_population_its_docstring_runs(path):
    """Each file in examples/ imports through --register and the --population its usage line
    gives builds: every type it names is registered, every feature is the task's."""
    from vpl_jax import envs
    from vpl_jax.users.spec import parse_population, population_from_spec

    harness.load_registrations([str(path)])
    doc = path.read_text().split('"""')[1]
    specs = re.findall(r"--population\s+(\S+)", doc)
    assert specs, f"{path.name}: its docstring shows no --population"
    for spec in specs:
        task = parse_population(spec).task
        population = population_from_spec(spec, envs.make(task).feature_names)
        assert population.num_types == len(spec.split(":", 1)[1].split(","))


def test_a_registration_file_given_by_two_spellings_is_imported_once(tmp_path, monkeypatch):
    (tmp_path / "twice.py").write_text(
        "from vpl_jax.users import UserType, register_user_type\n"
        "register_user_type('navigation', UserType('twice_spelled', {'goal_a': 1.0}))\n"
    )
    from vpl_jax.users import population

    # A registry of its own, so the test type is gone afterwards.
    monkeypatch.setattr(
        population, "_USER_TYPES", {k: dict(v) for k, v in population._USER_TYPES.items()}
    )
    monkeypatch.chdir(tmp_path)
    harness.load_registrations(["twice.py"])
    assert "twice_spelled" in population.user_types("navigation")
    harness.load_registrations([str(tmp_path / "twice.py"), "./twice.py"])  # was: registered again


def test_data_warnings_are_shown_and_recorded_in_the_results(tmp_path):
    """A legitimate but suspicious input warns (it does not stop the run) and the run's
    metrics.json and summary.md say so; a run without one has no warnings entry."""
    import warnings

    from vpl_jax.checks import DataWarning
    from vpl_jax.rewards.trainer import check_labelled

    config = ToyConfig(results_dir=str(tmp_path))

    def main(cfg, results):
        # Every labelled pair 'equal': training is legitimate, accuracy undefined.
        check_labelled(
            types.SimpleNamespace(mask=np.ones((2, 3), bool), labels=np.full((2, 3), 0.5)),
            "train",
        )
        warnings.warn("not a data warning", UserWarning, stacklevel=1)
        results.add(method="m", task=cfg.task, metric="x", value=1.0)
        return ""

    with pytest.warns(UserWarning) as shown:
        harness.run_experiment("toy", ToyConfig, {"cpu": config}, main, argv=["--run-name", "w"])
    assert any(issubclass(w.category, DataWarning) for w in shown)
    folder = tmp_path / "toy" / "w"
    recorded = json.loads((folder / "metrics.json").read_text())["warnings"]
    assert len(recorded) == 1 and "'equal' answer" in recorded[0]
    assert "## Warnings" in (folder / "summary.md").read_text()

    def quiet(cfg, results):
        results.add(method="m", task=cfg.task, metric="x", value=1.0)
        return ""

    harness.run_experiment("toy", ToyConfig, {"cpu": config}, quiet, argv=["--run-name", "q"])
    assert "warnings" not in json.loads((tmp_path / "toy" / "q" / "metrics.json").read_text())


def test_every_seeds_model_is_saved_and_an_overwrite_drops_seeds_it_no_longer_has(
    tmp_path, nav_dataset
):
    """Seed 0 in the model's folder, seed s >= 1 in ``seed_<s>``, each that seed's params; a run
    of the same folder with fewer seeds leaves no seed of the old run behind."""
    import chex
    import jax

    from vpl_jax import rewards as R

    model = R.make_model("btl", R.ModelSizes(hidden=(4,)))
    batch = R.user_pairs(nav_dataset, "context", model.inputs).batch(np.arange(2))
    params = jax.vmap(lambda k: model.init(k, batch))(jax.random.split(jax.random.PRNGKey(0), 3))
    results = harness.RunResults("toy", dataclasses.replace(ToyConfig(), results_dir=str(tmp_path)))
    folder = results.save_reward_model("navigation", "btl", model, params)
    for s, path in enumerate([folder, folder / "seed_1", folder / "seed_2"]):
        _, loaded = R.load_model(path, nav_dataset)
        chex.assert_trees_all_close(loaded, jax.tree.map(lambda x, s=s: x[s], params))
    results.save_reward_model("navigation", "btl", model, jax.tree.map(lambda x: x[:2], params))
    assert (folder / "seed_1").is_dir() and not (folder / "seed_2").exists()


def test_every_seeds_policy_is_saved_beside_seed_zeros(tmp_path, navigation, untrained_policy):
    """Each seed's policy params (the observation statistics with them) load back from its
    folder, built again to act in the task."""
    import chex
    import jax

    from vpl_jax.policies.files import load_policy

    @dataclasses.dataclass(frozen=True)
    class WithGoals(ToyConfig):
        num_goals: int = 2

    ppo, _ = untrained_policy(navigation, 2, key=0)
    states = jax.jit(jax.vmap(ppo.init))(jax.random.split(jax.random.PRNGKey(1), 2))
    results = harness.RunResults("toy", WithGoals(results_dir=str(tmp_path)))
    folder = results.save_policy("navigation", "vpl", ppo, states)
    for s, path in enumerate([folder, folder / "seed_1"]):
        expected = jax.tree.map(lambda x, s=s: x[s], ppo.policy_params(states))
        chex.assert_trees_all_close(load_policy(path).params, expected)
    assert not (folder / "seed_2").exists()
