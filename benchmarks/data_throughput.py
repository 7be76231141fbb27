"""Preference-data generation throughput: labelled pairs per second, as JSON.

Times the jitted generation (behaviour rollouts -> segments -> query pool -> users -> labels) of
``vpl_jax.data.generate``; compile time is reported separately. Example::

    python benchmarks/data_throughput.py --task navigation --num-users 1024 --num-episodes 4096
"""

from __future__ import annotations

import argparse
import json
import time

import jax

from vpl_jax import envs
from vpl_jax.data import DatasetConfig, generate
from vpl_jax.users import Population, user_types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="navigation", choices=envs.names())
    parser.add_argument("--num-users", type=int, default=256)
    parser.add_argument("--context-size", type=int, default=16)
    parser.add_argument("--heldout-size", type=int, default=48)
    parser.add_argument("--num-episodes", type=int, default=1024)
    parser.add_argument("--segment-horizon", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    env = envs.make(args.task)
    types = [
        n for n, t in user_types(args.task).items() if set(t.weights) <= set(env.feature_names)
    ]
    population = Population.mixture(args.task, env.feature_names, types)
    config = DatasetConfig(
        num_users=args.num_users,
        context_size=args.context_size,
        heldout_size=args.heldout_size,
        pool_size=args.pool_size,
        num_episodes=args.num_episodes,
        segment_horizon=args.segment_horizon,
    ).validate(env)

    start = time.perf_counter()
    jax.block_until_ready(generate(jax.random.PRNGKey(0), env, population, config))
    compile_s = time.perf_counter() - start
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(generate(jax.random.PRNGKey(i + 1), env, population, config))
        times.append(time.perf_counter() - start)
    best = min(times)
    pairs = args.num_users * (args.context_size + args.heldout_size)
    steps = args.num_episodes * env.episode_length
    print(
        json.dumps(
            {
                "benchmark": "data_throughput",
                "device": str(jax.devices()[0]),
                "task": args.task,
                "num_users": args.num_users,
                "labelled_pairs": pairs,
                "env_steps": steps,
                "compile_plus_first_run_s": round(compile_s, 3),
                "run_s": round(best, 4),
                "labelled_pairs_per_s": round(pairs / best, 1),
                "env_steps_per_s": round(steps / best, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
