"""S seeds split across 1, 2, 4, ... devices: throughput and memory per device, as JSON.

The experiments' path (:mod:`vpl_jax.runtime.sharding`): S seeds' keys placed along a 1-D mesh
of d devices, the data replicated, one ``jit(vmap(...))`` of the whole run. Measured for
reward-model training (VPL on a navigation dataset) and PPO (the oracle on navigation, every
seed a run). For each device count: compile time (ahead of time) apart from run time (the best
of ``--repeats``), throughput (labelled pairs or environment steps per second, all seeds) and
per device, the scaling efficiency (throughput over d times the one-device throughput), and
memory per device — XLA's count for the compiled program (arguments, outputs, temporaries of
one device's part) and, where the backend keeps them (GPU, TPU; not CPU),
``device.memory_stats()``'s peak bytes in use of each device (the process's peak so far, so it
only grows from one row to the next).

On one CPU, simulate devices (before JAX starts)::

    python benchmarks/sharded_training.py --cpu-devices 4 --devices 1 2 4
    python benchmarks/sharded_training.py --devices 1 2 4 8 --seeds 16   # GPUs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import jax
import numpy as np

# MJX prints its optional-import notices on stdout; keep stdout for the JSON.
with contextlib.redirect_stdout(sys.stderr):
    from ppo_throughput import best_time  # this folder's scripts share their timing

    from vpl_jax import envs
    from vpl_jax import policies as P
    from vpl_jax import rewards as R
    from vpl_jax.data import DatasetConfig, build_dataset
    from vpl_jax.rewards.trainer import check_training_inputs
    from vpl_jax.runtime import sharding
    from vpl_jax.users import Population


def memory(compiled, devices) -> dict:
    """Bytes per device: XLA's count for one device's part of the program, and the devices'
    peak bytes in use where the backend reports it (None on CPU)."""
    analysis = compiled.memory_analysis()
    parts = ("argument", "output", "temp")
    xla = {f"xla_{p}_bytes": int(getattr(analysis, f"{p}_size_in_bytes")) for p in parts}
    stats = [d.memory_stats() for d in devices]
    peaks = None if None in stats else [int(s.get("peak_bytes_in_use", -1)) for s in stats]
    return {**xla, "peak_bytes_in_use": peaks}


def measure(run, args_of, work: float, devices: tuple, seeds: int, repeats: int) -> dict:
    """One row: ``run`` (a jitted function of the seeds' keys and the shared inputs) compiled
    and timed on ``devices`` with the seeds split across them; ``work`` units per call."""
    place = sharding.placement(seeds, devices)
    if place.num_devices != len(devices):
        raise SystemExit(f"{seeds} seeds do not split across {len(devices)} devices")
    keys, shared = args_of()
    keys, shared = place.split(keys), place.replicate(shared)
    start = time.perf_counter()
    compiled = run.lower(keys, shared).compile()
    compile_s = time.perf_counter() - start
    run_s = best_time(lambda: compiled(keys, shared), repeats)
    per_s = work / run_s
    return {
        "devices": len(devices),
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 4),
        "per_s": round(per_s, 1),
        "per_s_per_device": round(per_s / len(devices), 1),
        **memory(compiled, devices),
    }


def with_efficiency(rows: list[dict]) -> list[dict]:
    """Adds each row's scaling efficiency against the first (one-device) row."""
    base = rows[0]["per_s"] / rows[0]["devices"]
    return [{**r, "scaling_efficiency": round(r["per_s"] / (r["devices"] * base), 3)} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-devices", type=int, default=0, help="simulate N CPU devices")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, default=4, help="S, a multiple of every count")
    parser.add_argument("--users", type=int, default=64, help="dataset users")
    parser.add_argument("--context-size", type=int, default=8)
    parser.add_argument("--heldout-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="reward-model epochs")
    parser.add_argument("--users-per-batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-envs", type=int, default=64, help="PPO environments per seed")
    parser.add_argument("--num-steps", type=int, default=40, help="PPO rollout length")
    parser.add_argument("--updates", type=int, default=4, help="PPO updates per seed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.cpu_devices:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
        jax.config.update("jax_platforms", "cpu")
    pool = sharding.device_pool()
    counts = [d for d in args.devices if d <= len(pool)]

    env = envs.make("navigation")
    population = Population.mixture("navigation", env.feature_names, ["goal_a", "goal_b"])
    data_config = DatasetConfig(
        num_users=args.users,
        context_size=args.context_size,
        heldout_size=args.heldout_size,
        pool_size=4096,
        num_episodes=256,
    )
    dataset = build_dataset(jax.random.PRNGKey(0), env, population, data_config)
    train, _ = dataset.split()
    pairs = R.user_pairs(train)
    h = (args.hidden, args.hidden)
    model = R.VPL(latent_dim=4, embed_dim=args.hidden, encoder_hidden=h, decoder_hidden=h)
    config = R.TrainConfig(num_epochs=args.epochs, users_per_batch=args.users_per_batch)
    check_training_inputs(model, config, pairs)
    fit = jax.jit(jax.vmap(lambda k, d: R.train_run(model, config, k, d), in_axes=(0, None)))
    keys = jax.random.split(jax.random.PRNGKey(1), args.seeds)
    batch = min(config.users_per_batch, pairs.num_users)
    steps = config.num_epochs * (pairs.num_users // batch)
    reward_pairs = args.seeds * steps * batch * pairs.num_pairs
    reward = [
        measure(fit, lambda: (keys, pairs), reward_pairs, pool[:d], args.seeds, args.repeats)
        for d in counts
    ]

    theta = np.stack([env.weights({"progress_a": 1.0}), env.weights({"progress_b": 1.0})])
    ppo_config = P.PPOConfig(
        total_timesteps=args.updates * args.num_envs * args.num_steps,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
    )
    ppo = jax.jit(
        jax.vmap(
            lambda k, theta: P.make_train(
                P.LatentReward(env, P.table_sampler(theta), P.oracle_reward), ppo_config
            ).train(k),
            in_axes=(0, None),
        )
    )
    env_steps = args.seeds * ppo_config.num_updates * ppo_config.batch_size
    policy = [
        measure(ppo, lambda: (keys, theta), env_steps, pool[:d], args.seeds, args.repeats)
        for d in counts
    ]

    device = pool[0]
    print(
        json.dumps(
            {
                "benchmark": "sharded_training",
                "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
                "devices_available": len(pool),
                "jax": jax.__version__,
                "sizes": vars(args),
                "reward": {
                    "model": "vpl",
                    "unit": "labelled pairs (all seeds)",
                    "work_per_call": reward_pairs,
                    "rows": with_efficiency(reward),
                },
                "ppo": {
                    "method": "oracle",
                    "unit": "environment steps (all seeds)",
                    "work_per_call": env_steps,
                    "rows": with_efficiency(policy),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
