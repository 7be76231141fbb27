"""The sharded path: seeds split across 4 (simulated) devices give the single-device numbers."""

import os
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
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "VPL_JAX_PROGRESS": "0",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=timeout
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
    assert place.split(tree) is tree and place.replicate(tree) is tree and place.gather(tree) is tree


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
    """rewards.fit, fit_chunked (checkpointed on 4 devices, resumed on 1) and PolicyTrainer,
    inside use_devices on 4 devices, give the single-device numbers; 3 seeds use 3 devices."""
    out = run_on_fake_devices(
        f"""
        import shutil
        import jax, numpy as np
        from vpl_jax import envs, pipeline, rewards as R
        from vpl_jax import policies as P
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

        theta = np.stack([np.asarray(env.weights({{"progress_a": 1.0}})),
                          np.asarray(env.weights({{"progress_b": 1.0}}))])
        ppo = pipeline.PolicyTrainer(
            env, "oracle", None, P.PPOConfig(total_timesteps=2 * 32 * 40, num_envs=32),
            chunk_updates=1,
        )
        inputs = {{"theta": np.broadcast_to(theta, (4, *theta.shape))}}
        single = ppo.train(keys, inputs)
        with sharding.use_devices(pool):
            sharded = ppo.train(keys, inputs)
        close(single, sharded)
        print("PPO_OK")
        """,
        tmp_path,
    )
    assert "REWARDS_OK" in out and "PPO_OK" in out
