"""The sharded path: seeds split across 4 (simulated) devices give the single-device numbers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    from vpl_jax import envs, rewards as R
    from vpl_jax import policies as P
    from vpl_jax.data import DatasetConfig, build_dataset
    from vpl_jax.runtime import sharding
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
    tconfig = R.TrainConfig(num_epochs=3, users_per_batch=4)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)

    # Reward models: 4 seeds, one per device, vs all on one device. XLA partitions and fuses the
    # sharded program differently, so floats agree to rounding, not bit for bit.
    one = jax.jit(jax.vmap(lambda k: R.train_run(model, tconfig, k, train, valid)))
    single = one(keys)
    sharded = sharding.shard_map_over(lambda k: R.train_run(model, tconfig, k, train, valid))(keys)
    assert len(jax.tree.leaves(sharded)[0].sharding.device_set) == 4
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)

    # PPO: 4 seeds of the oracle policy, sharded vs one device.
    thetas = np.stack([np.asarray(env.weights({"progress_a": 1.0})),
                       np.asarray(env.weights({"progress_b": 1.0}))])
    ppo = P.make_train(P.LatentReward(env, P.table_sampler(thetas), P.oracle_reward),
                       P.PPOConfig(total_timesteps=2 * 32 * 40, num_envs=32))
    single = jax.jit(jax.vmap(ppo.train))(keys)
    sharded = sharding.shard_map_over(ppo.train)(keys)
    for a, b in zip(jax.tree.leaves(single[1]), jax.tree.leaves(sharded[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    print("SHARDED_OK")
    """
)


@pytest.mark.slow
def test_sharded_seeds_equal_the_single_device_run(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(_SCRIPT)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900
    )
    assert "SHARDED_OK" in out.stdout, out.stdout[-2000:] + out.stderr[-4000:]


def test_uneven_batches_are_refused():
    import jax
    import jax.numpy as jnp
    import pytest

    from vpl_jax.runtime import sharding

    mesh = sharding.batch_mesh(jax.devices()[:1] * 1)
    sharding.shard_batch(jnp.zeros((3, 2)), mesh)  # one device: anything divides
    fake = type("Mesh", (), {"devices": np.zeros(4)})()
    with pytest.raises(ValueError, match="multiple of 4"):
        sharding.shard_batch(jnp.zeros((6, 2)), fake)
