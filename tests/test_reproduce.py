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


def test_claims_are_judged_on_the_runs_there_and_written_beside_the_index(
    tmp_path, load_experiment
):
    reproduce = load_experiment("reproduce")
    config = Toy(results_dir=str(tmp_path), run_name="r")
    results = harness.RunResults("underspecification", config)
    for seed, (vpl, btl, oracle) in enumerate([(1.0, 0.0, 1.0), (0.9, 0.1, 1.0), (1.0, 0.2, 1.0)]):
        for method, value in (("vpl", vpl), ("btl", btl), ("oracle", oracle)):
            for user_type in ("goal_a", "goal_b"):
                results.add(method=method, task="navigation", user_type=user_type,
                            metric="success", value=value, seed=seed)  # fmt: skip
    results.write()
    argv = ["--run-name", "r", "--results-dir", str(tmp_path), "--index-only"]
    config = harness.parse(reproduce.Config, reproduce.PRESETS, argv)
    reproduce.main(config, harness.RunResults("reproduce", config))
    judged = {c["claim"]: c for c in json.loads((tmp_path / "reproduce/r/claims.json").read_text())}
    assert list(judged) == [c.name for c in reproduce.CLAIMS]
    assert judged["btl_averages"]["verdict"] == "holds"
    assert judged["btl_averages"]["mean"] == pytest.approx((1.0 + 0.8 + 0.8) / 3)
    assert judged["vpl_near_oracle"]["case"].endswith("user_type=goal_a")
    assert judged["spo_when_scales_differ"]["verdict"] == "not run"  # no r-scaled run
    assert judged["nash_md_lottery"]["verdict"] == "not run"
    table = (tmp_path / "reproduce/r/claims.md").read_text()
    assert "| One reward for everyone (BTL) serves no user type well" in table
    assert "**holds**" in table and "**not run**" in table
    assert "claims.md" in (tmp_path / "reproduce/r/index.html").read_text()


def test_a_second_run_is_its_experiment_with_its_options_in_a_run_folder_of_its_own(
    tmp_path, load_experiment, monkeypatch
):
    reproduce = load_experiment("reproduce")
    commands = []
    monkeypatch.setattr(reproduce.subprocess, "run", lambda cmd, check: commands.append(cmd))
    argv = ["--run-name", "r", "--results-dir", str(tmp_path), "--only", "scaled_rewards"]
    config = harness.parse(reproduce.Config, reproduce.PRESETS, argv)
    reproduce.main(config, harness.RunResults("reproduce", config))
    (cmd,) = commands
    assert cmd[1].endswith("underspecification.py")
    assert cmd[cmd.index("--run-name") + 1] == "r-scaled"
    assert "navigation:goal_a=0.5,goal_b_noisy=0.5" in cmd and "--register" in cmd
    # The options parse: the second run's command line is a valid underspecification config.
    underspecification = load_experiment("underspecification")
    options = cmd[2 : cmd.index("--run-name")]
    parsed = harness.parse(underspecification.Config, underspecification.PRESETS, options)
    assert parsed.reward_scaling == "none" and parsed.num_seeds == 3
