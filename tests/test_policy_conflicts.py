"""One policy per user type, scored under every type's reward: the regret matrix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def experiment(load_experiment):
    return load_experiment("policy_conflicts")


def test_regret_is_what_a_type_loses_under_another_types_policy(experiment):
    # returns[a, s, b]: policy for a, seed s, scored by type b (worked out by hand below)
    returns = np.array(
        [
            [[10.0, 1.0, 4.0], [12.0, 2.0, 4.0]],
            [[6.0, 5.0, 3.0], [8.0, 7.0, 1.0]],
            [[9.0, 3.0, 6.0], [9.0, 3.0, 5.0]],
        ]
    )
    regret = experiment.regrets(returns)
    assert regret.shape == (3, 2, 3)
    np.testing.assert_array_equal(np.einsum("aSa->aS", regret), 0.0)  # own policy: no regret
    np.testing.assert_array_equal(regret[0, :, 1], [5.0 - 1.0, 7.0 - 2.0])  # b's own minus a's
    np.testing.assert_array_equal(regret[1, :, 0], [10.0 - 6.0, 12.0 - 8.0])
    np.testing.assert_array_equal(regret[0, :, 2], [6.0 - 4.0, 5.0 - 4.0])
    table = experiment.regret_table(["x", "y", "z"], regret)
    assert "| x | 0.0 | 4.5 | 1.5 |" in table


@pytest.mark.slow
def test_opposite_goals_cost_each_other_what_the_same_goal_does_not(experiment, tmp_path):
    """Through the command line: goal_a's and goal_b's policies cost each other most of their
    return, while goal_a's and hurried's (the same goal) cost each other little."""
    argv = [
        "--tasks", "navigation", "--navigation-types", "goal_a", "goal_b", "hurried",
        "--num-seeds", "1", "--ppo.total-timesteps", "102400", "--num-eval-episodes", "8",
        "--run-name", "t", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "VPL_JAX_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    script = ROOT / "experiments" / "policy_conflicts.py"
    subprocess.run([sys.executable, str(script), *argv], env=env, check=True, timeout=1200)
    rows = json.loads((tmp_path / "policy_conflicts" / "t" / "metrics.json").read_text())["rows"]
    regret = {(r["method"], r["user_type"]): r["value"] for r in rows if r["metric"] == "regret"}
    assert regret[("policy_goal_a", "goal_b")] > 10, regret
    assert regret[("policy_goal_b", "goal_a")] > 10, regret
    assert regret[("policy_hurried", "goal_a")] < 0.5 * regret[("policy_goal_b", "goal_a")], regret
    assert (tmp_path / "policy_conflicts" / "t" / "navigation_regret.png").exists()
