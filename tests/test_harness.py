"""The harness contract: presets and overrides, clear config errors, tidy atomic results."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from vpl_jax import harness


@dataclasses.dataclass(frozen=True)
class ToyConfig(harness.ExperimentConfig):
    num_users: int = 8
    """Users."""
    task: str = "navigation"
    """Task name."""
    learning_rate: float = 1e-3
    """Step size."""

    def validate(self):
        super().validate()
        harness.check_int(self, "num_users", minimum=1)
        harness.check_choice("task", self.task, ["navigation", "highway"])
        harness.check_float(self, "learning_rate", minimum=0.0)
        return self


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
        (["--num-users", "-2"], "num_users=-2: must be >= 1"),
        (["--task", "kitchen"], "task='kitchen': allowed values are ['navigation', 'highway']"),
        (["--run-name", "a/b"], "run_name='a/b'"),
    ],
)
def test_bad_values_exit_with_a_message_naming_the_field(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        harness.parse(ToyConfig, PRESETS, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


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
    assert (folder / "curve.png").stat().st_size > 0 and (folder / "curve.pdf").exists()
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*"))


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
