"""PPO env-steps/s on a learned latent reward versus raw env-steps/s, one run, as JSON.

PPO trains a latent-conditioned policy (``z ~ N(0, I_Z)`` per episode, appended to the
observation) on a stand-in for a learned reward: a randomly initialised MLP ``r(obs, z)``. The raw
figure is ``jit(vmap(scan(step)))`` of the bare task with uniformly random actions, for the same
task, batch size and number of steps. Compile time is reported separately from run time; each
figure is the best of ``--repeats`` timed runs. Example::

    python benchmarks/ppo_throughput.py --task locomotion --num-envs 4096 --num-steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

# MJX prints its optional-import notices on stdout; keep stdout for the JSON.
with contextlib.redirect_stdout(sys.stderr):
    from vpl_jax import envs
    from vpl_jax.policies import LatentReward, PPOConfig, learned_reward, make_train, prior_sampler


class RewardMLP(nn.Module):
    """``r(obs, z) -> f32[]``: the shape of a VPL reward decoder."""

    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, obs, z):
        x = jnp.concatenate([obs, z], axis=-1)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return jnp.squeeze(nn.Dense(1)(x), -1)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="navigation", choices=["navigation", "locomotion"])
    parser.add_argument("--backend", default="positional")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-steps", type=int, default=40, help="rollout length per update")
    parser.add_argument("--updates", type=int, default=10, help="PPO updates per timed call")
    parser.add_argument("--num-minibatches", type=int, default=4)
    parser.add_argument("--update-epochs", type=int, default=4)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--latent-size", type=int, default=4)
    parser.add_argument("--reward-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    task = envs.make(args.task, backend=args.backend)
    reward_net = RewardMLP(tuple(args.reward_hidden))
    obs_size = jax.eval_shape(task.reset, jax.random.PRNGKey(0)).obs.shape[-1]
    reward_params = reward_net.init(
        jax.random.PRNGKey(1), jnp.zeros((obs_size,)), jnp.zeros((args.latent_size,))
    )
    env = LatentReward(
        task,
        prior_sampler(args.latent_size),
        learned_reward(lambda obs, z: reward_net.apply(reward_params, obs, z)),
    )
    config = PPOConfig(
        total_timesteps=args.updates * args.num_envs * args.num_steps,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_minibatches=args.num_minibatches,
        update_epochs=args.update_epochs,
        hidden_sizes=tuple(args.hidden),
    )
    ppo = make_train(env, config)
    runner_state = jax.block_until_ready(jax.jit(ppo.init)(jax.random.PRNGKey(0)))
    start = time.perf_counter()
    chunk = jax.jit(ppo.train_chunk, static_argnums=1).lower(runner_state, args.updates).compile()
    ppo_compile_s = time.perf_counter() - start
    # Always from the same state, so every timed call does the same work.
    ppo_s = best_time(lambda: chunk(runner_state), args.repeats)
    ppo_steps = args.updates * config.batch_size

    raw_steps_per_call = args.updates * args.num_steps

    def raw(key):
        k_reset, k_act = jax.random.split(key)
        state = jax.vmap(task.reset)(jax.random.split(k_reset, args.num_envs))

        def step(state, k):
            action = jax.random.uniform(k, (args.num_envs, task.action_size), minval=-1)
            state = jax.vmap(task.step)(state, action)
            return state, state.reward

        _, rewards = jax.lax.scan(step, state, jax.random.split(k_act, raw_steps_per_call))
        return rewards.sum()

    key = jax.random.PRNGKey(2)
    start = time.perf_counter()
    raw_compiled = jax.jit(raw).lower(key).compile()
    raw_compile_s = time.perf_counter() - start
    raw_s = best_time(lambda: raw_compiled(key), args.repeats)
    raw_steps = raw_steps_per_call * args.num_envs

    ppo_sps, raw_sps = ppo_steps / ppo_s, raw_steps / raw_s
    print(
        json.dumps(
            {
                "benchmark": "ppo_throughput",
                "device": str(jax.devices()[0]),
                "task": args.task,
                "backend": args.backend,
                "num_envs": args.num_envs,
                "num_steps": args.num_steps,
                "updates": args.updates,
                "num_minibatches": args.num_minibatches,
                "update_epochs": args.update_epochs,
                "hidden": args.hidden,
                "latent_size": args.latent_size,
                "reward_hidden": args.reward_hidden,
                "ppo_compile_s": round(ppo_compile_s, 2),
                "ppo_run_s": round(ppo_s, 4),
                "ppo_env_steps_per_s": round(ppo_sps, 1),
                "raw_compile_s": round(raw_compile_s, 2),
                "raw_run_s": round(raw_s, 4),
                "raw_env_steps_per_s": round(raw_sps, 1),
                "ppo_over_raw": round(ppo_sps / raw_sps, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
