"""The reward-training benchmark runs end to end at a tiny size and reports what it promises."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reward_training_benchmark_prints_throughput_and_step_cost():
    args = "--users 8 --pairs-per-user 4 --segments 32 --horizon 3 --obs-dim 2 --hidden 8"
    args += " --latent-dim 2 --max-context 2 --epochs 1 --users-per-batch 4 --seeds 3 --repeats 1"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reward_training.py"), *args.split()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out[out.index("{") :])
    one, three = report["results"]
    assert (one["seeds"], three["seeds"]) == (1, 3)
    assert one["optimizer_steps_per_seed"] == three["optimizer_steps_per_seed"] == 2
    # pairs counted: seeds x steps x users per batch x pairs per user
    assert three["pairs_per_s"] * three["run_s"] == pytest.approx(3 * 2 * 4 * 4, 1e-2)
    # The vmapped step does the work of three steps: XLA counts about three times the flops.
    assert 2.5 < three["xla_flops_per_step"] / one["xla_flops_per_step"] < 3.5
    # The ratio is of the two rows' median times, each the median of its repeats.
    ratio = three["run_s"] / one["run_s"]
    assert report["wall_ratio_3_seeds_to_1"] == pytest.approx(ratio, rel=0.02)
    for row in (one, three):
        assert row["run_s"] == pytest.approx(float(np.median(row["run_s_all"])), abs=1e-4)
    assert one["roofline"] is None  # a CPU's peaks are unknown unless given


@pytest.mark.slow
def test_sharded_training_benchmark_splits_seeds_and_memory_across_devices():
    """On two simulated CPU devices: one row per device count for reward training and PPO, the
    work counted as documented, and each device's part of the program about half as large."""
    args = "--cpu-devices 2 --devices 1 2 --seeds 2 --users 16 --heldout-size 8 --epochs 1"
    args += " --hidden 8 --num-envs 4 --num-steps 8 --updates 1 --repeats 1"
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sharded_training.py"), *args.split()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    assert report["devices_available"] == 2
    assert report["ppo"]["work_per_call"] == 2 * 1 * 4 * 8  # seeds x updates x envs x steps
    for part in ("reward", "ppo"):
        one, two = report[part]["rows"]
        assert (one["devices"], two["devices"]) == (1, 2)
        assert one["scaling_efficiency"] == 1.0
        assert two["per_s"] == pytest.approx(report[part]["work_per_call"] / two["run_s"], 0.01)
        assert two["per_s_per_device"] == pytest.approx(two["per_s"] / 2, 0.01)
        # One seed per device: each device's outputs (the seeds' params) are half of one's.
        assert two["xla_output_bytes"] < 0.6 * one["xla_output_bytes"]


def test_roofline_fraction_is_the_time_at_the_peaks_over_the_measured_time():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rt", ROOT / "benchmarks" / "reward_training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = {"xla_bytes_accessed_per_step": 2e9, "xla_flops_per_step": 1e12, "run_s": 1.0}
    # 10 steps: 20 GB at 100 GB/s is 0.2 s; 10 TFLOP at 100 TFLOP/s is 0.1 s: memory-bound.
    line = bench.roofline(row, 10, (100.0, 100.0))
    assert line["bound"] == "memory" and line["fraction"] == pytest.approx(0.2)
    assert bench.roofline(row, 10, (100.0, 20.0))["bound"] == "compute"  # 0.5 s of flops
    assert bench.roofline(row, 10, (None, 100.0)) is None

    class H100:
        device_kind = "NVIDIA H100 80GB HBM3"

    assert bench.device_peaks(H100(), None, None) == bench.PEAKS["NVIDIA H100"]
    assert bench.device_peaks(H100(), 3000.0, None)[0] == 3000.0
