"""experiments/reproduce.py: the figure index over existing runs, and its config checks."""

import dataclasses
import json
from pathlib import Path

import pytest

from vpl_jax import harness


@dataclasses.dataclass(frozen=True)
class Toy(harness.ExperimentConfig):
    pass


def fake_run(results_dir: Path, experiment: str, run_name: str) -> None:
    """A finished run of ``experiment`` with one figure, as the harness writes it."""
    import matplotlib.pyplot as plt

    config = Toy(results_dir=str(results_dir), run_name=run_name)
    results = harness.RunResults(experiment, config)
    results.add(method="vpl", task="navigation", metric="success", value=1.0)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    results.figure(fig, "curve")
    (results.path / "navigation_rollouts.html").write_text("<!doctype html>")
    results.write()


def test_index_only_collects_the_existing_runs(tmp_path, load_experiment):
    reproduce = load_experiment("reproduce")
    fake_run(tmp_path, "reward_accuracy", "r")
    fake_run(tmp_path, "underspecification", "r")
    argv = ["--run-name", "r", "--results-dir", str(tmp_path), "--index-only"]
    config = harness.parse(reproduce.Config, reproduce.PRESETS, argv)
    results = harness.RunResults("reproduce", config)
    reproduce.main(config, results)
    page = (tmp_path / "reproduce" / "r" / "index.html").read_text()
    for name in ("reward_accuracy", "underspecification"):
        assert f"<h2 id='{name}'>" in page and f"../../{name}/r/curve.png" in page
        assert f"<a href='../../{name}/r/navigation_rollouts.html'>" in page
    assert "active_queries" not in page  # no run of it: left out, not an error
    assert {r["method"] for r in results.rows} == {"reward_accuracy", "underspecification"}
    assert all(r["metric"] == "wall_time_s" and r["value"] >= 0 for r in results.rows)
    json.dumps(results.rows)


def test_unknown_experiment_is_rejected_naming_the_known_ones(capsys, load_experiment):
    reproduce = load_experiment("reproduce")
    with pytest.raises(SystemExit):
        harness.parse(reproduce.Config, reproduce.PRESETS, ["--only", "figure_9"])
    err = capsys.readouterr().err
    assert "only: unknown value(s) ['figure_9']" in err and "underspecification" in err
