"""The sharded path: seeds split across 4 (simulated) devices give the single-device numbers."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax.runtime import sharding

ROOT = Path(__file__).resolve().parents[1]


def run_on_fake_devices(script: str, tmp_path: Path, devices: int = 4, timeout: int = 1200) -> str:
    """Runs ``script`` in a fresh Python whose CPU shows ``devices`` devices (the flag must be
    set before JAX starts); returns its stdout, failing with its output if it fails."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    out = subprocess.run(
        [sys.executable, str(path)],
        env=experiment_env(devices, {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout


@pytest.mark.parametrize(
    ("runs", "pool", "processes", "used"),
    [
        (4, 4, 1, 4),
        (8, 4, 1, 4),
        (3, 4, 1, 3),  # three seeds fill three of four devices
        (6, 4, 1, 3),
        (1, 8, 1, 1),
        (5, 4, 1, 1),
        (4, 4, 2, 4),
        (6, 4, 2, 2),  # one device of each process
        (3, 4, 2, 0),  # does not split across two processes: each runs all three
    ],
)
def test_runs_use_the_most_devices_they_fill_evenly(runs, pool, processes, used):
    assert sharding.split_size(runs, pool, processes) == used


def test_without_a_pool_runs_stay_where_they_are():
    place = sharding.placement(4)
    assert place.mesh is None and place.num_devices == 1
    tree = {"keys": jax.random.split(jax.random.PRNGKey(0), 4), "data": jnp.ones(3)}
    assert place.split(tree) is tree and place.replicate(tree) is tree
    assert place.gather(tree) is tree


def test_one_device_is_the_unsharded_path():
    with sharding.use_devices(sharding.device_pool(1)) as pool:
        assert sharding.active_pool() == pool == tuple(jax.devices()[:1])
        assert sharding.placement(4).mesh is None
    assert sharding.active_pool() is None


def test_device_counts_outside_the_machine_are_refused():
    with pytest.raises(ValueError, match="devices=0: must be between 1 and"):
        sharding.device_pool(0)
    with pytest.raises(ValueError, match=f"must be between 1 and {jax.device_count()}"):
        sharding.device_pool(jax.device_count() + 1)


def test_uneven_runs_are_refused():
    fake = sharding.Placement(type("Mesh", (), {"devices": np.zeros(4)})())
    with pytest.raises(ValueError, match="multiple of 4"):
        fake.split(jnp.zeros((6, 2)))


@pytest.mark.slow
def test_trainers_split_their_seeds_across_devices_and_agree(tmp_path):
    """rewards.fit and fit_chunked (checkpointed on 4 devices, resumed on 1) inside use_devices
    on 4 devices give the single-device numbers; 3 seeds use 3 devices. (PolicyTrainer: the
    experiment tests below.)"""
    out = run_on_fake_devices(
        f"""
        import shutil
        import jax, numpy as np
        from vpl_jax import envs, rewards as R
        from vpl_jax.data import DatasetConfig, build_dataset
        from vpl_jax.rewards import trainer
        from vpl_jax.runtime import sharding
        from vpl_jax.runtime.checkpoint import Checkpointer
        from vpl_jax.users import Population

        assert len(jax.devices()) == 4, jax.devices()
        env = envs.make("navigation")
        population = Population.mixture("navigation", env.feature_names, ["goal_a", "goal_b"])
        config = DatasetConfig(num_users=16, context_size=4, heldout_size=8, pool_size=256,
                               num_episodes=32)
        dataset = build_dataset(jax.random.PRNGKey(0), env, population, config)
        fit_users, valid_users = R.validation_split(dataset)
        train, valid = R.user_pairs(fit_users), R.user_pairs(valid_users)
        model = R.VPL(latent_dim=2, embed_dim=16, encoder_hidden=(16,), decoder_hidden=(16,))
        tconfig = R.TrainConfig(num_epochs=4, users_per_batch=4)
        keys = jax.random.split(jax.random.PRNGKey(1), 4)

        def close(a, b):
            # XLA partitions and fuses the sharded program differently: floats agree to
            # rounding, not bit for bit.
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)

        single = R.fit(model, tconfig, keys, train, valid)
        pool = sharding.device_pool()
        with sharding.use_devices(pool):
            assert sharding.placement(4).num_devices == 4
            assert sharding.placement(3).num_devices == 3
            # The sharded program itself: the seed axis split, no communication inside.
            place = sharding.placement(4)
            args = place.split(keys), *place.replicate((train, valid))
            compiled = trainer._fit.lower(model, tconfig, *args, seeds=True).compile()
            params = trainer._fit(model, tconfig, *args, seeds=True)[0]
            assert {{str(x.sharding.spec) for x in jax.tree.leaves(params)}} == {{"P('batch',)"}}
            assert "all-gather" not in compiled.as_text()
            sharded = R.fit(model, tconfig, keys, train, valid)
            # Results come back whole on the first device: what follows runs as before.
            assert jax.tree.leaves(sharded)[0].sharding.device_set == {{jax.devices()[0]}}
            close(single, sharded)
            three = R.fit(model, tconfig, keys[:3], train, valid)
            close(jax.tree.map(lambda x: x[:3], single), three)
            # A checkpointed run on 4 devices (epochs 2 and 4 saved); drop the last...
            R.fit_chunked(model, tconfig, keys, train, valid, chunk_epochs=2,
                          checkpointer=Checkpointer("{tmp_path}/reward", {{"run": 1}}, every=2))
        shutil.rmtree("{tmp_path}/reward/4")
        # ... and resume it on one device from epoch 2, written on four.
        resumed = R.fit_chunked(model, tconfig, keys, train, valid, chunk_epochs=2,
                                checkpointer=Checkpointer("{tmp_path}/reward", {{"run": 1}},
                                                          every=2))
        close(single, resumed)
        print("REWARDS_OK")
        """,
        tmp_path,
    )
    assert "REWARDS_OK" in out


# --- every experiment: --devices and the processes (bad values: tests/test_bad_inputs.py) ------
def test_where_a_run_is_placed_is_bookkeeping(load_experiment):
    """--devices and the process options change no numbers (beyond rounding): a checkpoint
    written under one layout resumes under another, and config.json still records them."""
    experiment = load_experiment("reward_accuracy")
    base = experiment.PRESETS["cpu"]
    moved = dataclasses.replace(base, devices=1, num_processes=2, process_id=1,
                                coordinator_address="h:1")  # fmt: skip
    assert base.results_json() == moved.results_json()
    assert json.loads(moved.to_json())["devices"] == 1


def test_reproduce_runs_each_experiment_in_its_own_processes(load_experiment, capsys):
    from vpl_jax import harness

    reproduce = load_experiment("reproduce")
    with pytest.raises(SystemExit):
        harness.parse(reproduce.Config, reproduce.PRESETS, ["--distributed"])
    assert "reproduce starts each experiment in a process of its own" in capsys.readouterr().err


def test_seeds_that_do_not_split_across_the_devices_say_what_to_change(tmp_path):
    out = run_on_fake_devices(
        f"""
        import contextlib, importlib.util, io, sys
        spec = importlib.util.spec_from_file_location("reward_accuracy",
                                                      "{ROOT}/experiments/reward_accuracy.py")
        experiment = importlib.util.module_from_spec(spec)
        sys.modules["reward_accuracy"] = experiment
        spec.loader.exec_module(experiment)
        from vpl_jax import harness

        def error(*argv):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    return harness.parse(experiment.Config, experiment.PRESETS, list(argv))
                except SystemExit:
                    return err.getvalue().strip()

        print(error("--devices", "5"))
        print(error("--devices", "4", "--num-seeds", "3"))
        print(error("--devices", "4", "--num-seeds", "6"))
        assert error("--num-seeds", "3").devices is None  # by default: 3 of the 4 devices
        assert error("--devices", "2", "--num-seeds", "6").devices == 2
        """,
        tmp_path,
    )
    assert "error: devices=5: this run has 4 (jax.devices()); use 1 to 4" in out
    assert (
        "error: num_seeds=3 does not split evenly across devices=4: use --num-seeds 4 (a multiple "
        "of 4), or --devices 1 or 3 (or leave --devices out: 3 seeds then use 3 of the 4 devices)"
    ) in out
    assert "use --num-seeds 8 (a multiple of 4), or --devices 1, 2 or 3 (or leave" in out


#: underspecification (reward model, then PPO on it, then per-user evaluation) at a tiny size.
TINY = [
    "--tasks", "navigation", "--methods", "vpl", "--num-seeds", "4", "--data.num-users", "16",
    "--data.context-size", "4", "--data.heldout-size", "4", "--data.pool-size", "256",
    "--data.num-episodes", "32", "--reward-train.num-epochs", "2",
    "--reward-train.users-per-batch", "4", "--reward-chunk-epochs", "1",
    "--ppo.total-timesteps", "2560", "--ppo.num-envs", "16", "--ppo.num-steps", "40",
    "--chunk-updates", "2", "--num-eval-episodes", "2", "--render-episodes", "0",
    "--num-reference-states", "16",
]  # fmt: skip


def experiment_env(devices: int, cache: dict[str, str]) -> dict[str, str]:
    """The environment of an experiment process whose CPU shows ``devices`` devices, with the
    compilation cache entries ``cache`` (conftest's ``subprocess_cache``)."""
    return {
        **os.environ,
        **cache,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "VPL_JAX_PROGRESS": "0",
        "PYTHONPATH": str(ROOT),
    }


def run_experiment(argv: list[str], devices: int, cache: dict[str, str]) -> str:
    """``experiments/underspecification.py TINY argv`` in one process; its output."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "underspecification.py"), *TINY, *argv],
        env=experiment_env(devices, cache),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout


def metric_rows(path: Path) -> dict[tuple, float]:
    """metrics.json's rows as ``{(method, user_type, metric, seed): value}``."""
    rows = json.loads(path.read_text())["rows"]
    return {(r["method"], r["user_type"], r["metric"], r["seed"]): r["value"] for r in rows}


def assert_same_metrics(path: Path, expected: dict[tuple, float]):
    """The rows agree to float rounding: XLA partitions and fuses a sharded program
    differently, so the numbers agree to about 1e-6, not bit for bit."""
    rows = metric_rows(path)
    # 4 seeds × 2 types × (success, true_return, heldout_accuracy and three latent_* metrics)
    assert rows.keys() == expected.keys() and len(rows) == 4 * 2 * 6
    for cell, value in expected.items():
        assert rows[cell] == pytest.approx(value, rel=1e-4, abs=1e-4), cell


@pytest.fixture(scope="module")
def one_device_metrics(tmp_path_factory, subprocess_cache) -> dict[tuple, float]:
    """The tiny run's metrics on one device (--devices 1: the unsharded path)."""
    root = tmp_path_factory.mktemp("one_device")
    argv = ["--results-dir", str(root), "--run-name", "one", "--devices", "1"]
    out = run_experiment(argv, 4, subprocess_cache("sharding_one_device"))
    assert "devices: 1 cpu device; num_seeds=4 split across 1" in out
    return metric_rows(root / "underspecification" / "one" / "metrics.json")


@pytest.mark.slow
def test_an_experiment_on_four_devices_gives_the_one_device_metrics(
    tmp_path, one_device_metrics, subprocess_cache
):
    """By default an experiment splits its seeds across every device: 4 seeds, one per device
    (reward model, PPO on it, per-user evaluation)."""
    argv = ["--results-dir", str(tmp_path), "--run-name", "four"]
    out = run_experiment(argv, 4, subprocess_cache("sharding_four_devices"))
    assert "devices: 4 cpu devices; num_seeds=4 split across 4" in out
    assert_same_metrics(
        tmp_path / "underspecification" / "four" / "metrics.json", one_device_metrics
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(argv: list[str], results: list[Path], cache) -> list[str]:
    """The tiny experiment as two processes of two CPU devices each, joined by
    jax.distributed on 127.0.0.1, process i writing to ``results[i]`` and compiling into the
    cache ``cache(f"sharding_process_{i}")`` (a repeated run reads its programs back); their
    outputs."""
    port = free_port()
    command = [sys.executable, str(ROOT / "experiments" / "underspecification.py"), *TINY, *argv,
               "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*command, "--process-id", str(i), "--results-dir", str(results[i])],
            env=experiment_env(2, cache(f"sharding_process_{i}")),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=1200)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()  # only if one hangs, waiting for the other
    for p, out in zip(processes, outs, strict=True):
        assert p.returncode == 0, out[-6000:]
    return outs


@pytest.mark.slow
def test_two_processes_split_the_seeds_agree_and_only_process_zero_writes(
    tmp_path, one_device_metrics, subprocess_cache
):
    """Two processes (jax.distributed, gloo on CPU) split the 4 seeds 2 + 2 through the reward
    model and PPO; they give the one-device metrics, process 1 writes nothing (not even its own
    results folder), and a run stopped after its first checkpoints resumes from them on both."""
    results = [tmp_path / "process_0", tmp_path / "process_1"]
    argv = ["--run-name", "two", "--checkpoint-every", "2", "--reward-checkpoint-every", "1"]
    outs = run_two_processes(argv, results, subprocess_cache)
    assert "devices: 4 cpu devices, 2 processes; num_seeds=4 split across 4" in outs[0]
    assert "devices:" not in outs[1] and "results written" not in outs[1]
    run = results[0] / "underspecification" / "two"
    assert_same_metrics(run / "metrics.json", one_device_metrics)
    assert not results[1].exists()
    # Stopped after the reward model's first epoch and PPO's first chunk: the later steps and
    # the results go; process 0 reads the checkpoints, both resume.
    for late in ("checkpoints/navigation_reward_vpl/2", "checkpoints/navigation_vpl/4"):
        shutil.rmtree(run / late)
    (run / "metrics.json").unlink()
    run_two_processes(argv, results, subprocess_cache)
    assert_same_metrics(run / "metrics.json", one_device_metrics)
    assert not results[1].exists()
