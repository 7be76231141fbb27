"""PPO on the ant: a learning curve (episode return against env steps), as JSON.

``--env locomotion`` trains on our locomotion task's default reward (walk along +x, stay upright,
little effort; features in [-1, 1] per step); ``--env brax_ant`` on Brax's own ant and reward
(forward velocity + 1 per healthy step - control cost, episodes end on a fall), whose returns
Brax users know: about 1000 per 1000-step episode for standing still, several thousand for
walking. Meant for a GPU for a few minutes (the defaults); on a CPU run it tiny, e.g.::

    python benchmarks/ppo_ant.py --num-envs 16 --num-steps 8 --total-steps 2048 --chunks 2

Training runs in ``--chunks`` jitted chunks; the curve has one point per chunk: the return of
the deterministic policy (``tanh`` of the mean action) over ``--eval-envs`` fresh episodes of
``--episode-length`` steps, as Brax's trainers report it, and the mean return of the training
episodes that ended during the chunk. Progress lines go to stderr, the JSON to stdout.
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
    from brax import envs as brax_envs

    from vpl_jax import envs
    from vpl_jax.policies import PPOConfig, make_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="brax_ant", choices=["brax_ant", "locomotion"])
    parser.add_argument("--backend", default="positional")
    parser.add_argument("--total-steps", type=int, default=50_000_000)
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--num-steps", type=int, default=20)
    parser.add_argument("--num-minibatches", type=int, default=8)
    parser.add_argument("--update-epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--gamma", type=float, default=0.97)
    parser.add_argument("--ent-coef", type=float, default=1e-3)
    parser.add_argument("--reward-scale", type=float, default=None, help="default: 10 (brax_ant)")
    parser.add_argument(
        "--normalize-rewards",
        action="store_true",
        help="divide rewards by the return's running std (off: the recorded GPU run used a fixed "
        "reward scale, as Brax's PPO does)",
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--activation", default="swish")
    parser.add_argument("--episode-length", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--eval-envs", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.env == "brax_ant":
        env = brax_envs.get_environment("ant", backend=args.backend)
        reward_scale = 10.0 if args.reward_scale is None else args.reward_scale
    else:
        env = envs.make("locomotion", backend=args.backend)
        reward_scale = 1.0 if args.reward_scale is None else args.reward_scale
    config = PPOConfig(
        total_timesteps=args.total_steps,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        num_minibatches=args.num_minibatches,
        update_epochs=args.update_epochs,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        ent_coef=args.ent_coef,
        reward_scale=reward_scale,
        normalize_rewards=args.normalize_rewards,
        hidden_sizes=tuple(args.hidden),
        activation=args.activation,
        episode_length=args.episode_length,
    )
    chunks = max(1, min(args.chunks, config.num_updates))
    per_chunk = config.num_updates // chunks

    ppo = make_train(env, config)
    start = time.perf_counter()
    runner_state = jax.block_until_ready(jax.jit(ppo.init)(jax.random.PRNGKey(args.seed)))
    chunk = (
        jax.jit(ppo.train_chunk, static_argnums=1, donate_argnums=0)
        .lower(runner_state, per_chunk)
        .compile()
    )

    def eval_return(policy_params, key):
        """Mean undiscounted return of the deterministic policy; steps after a fall are masked."""
        state = jax.vmap(env.reset)(jax.random.split(key, args.eval_envs))

        def step(carry, _):
            state, total, alive = carry
            state = jax.vmap(env.step)(state, ppo.act(policy_params, state.obs))
            return (state, total + alive * state.reward, alive * (1 - state.done)), None

        zeros = jax.numpy.zeros(args.eval_envs)
        (_, total, _), _ = jax.lax.scan(step, (state, zeros, zeros + 1), None, args.episode_length)
        return total.mean()

    evaluate = jax.jit(eval_return).lower(ppo.policy_params(runner_state), runner_state.key)
    evaluate = evaluate.compile()
    compile_s = time.perf_counter() - start

    curve = []
    start = time.perf_counter()
    for _ in range(chunks):
        runner_state, metrics = chunk(runner_state)
        metrics = jax.tree.map(np.asarray, metrics)
        eval_key = jax.random.fold_in(jax.random.PRNGKey(args.seed + 1), len(curve))
        eval_ret = float(evaluate(ppo.policy_params(runner_state), eval_key))
        ended = metrics["episodes"]
        weights = ended / max(ended.sum(), 1)
        point = {
            "env_steps": int(metrics["env_steps"][-1]),
            "wall_s": round(time.perf_counter() - start, 2),
            # Returns in the environment's own (unscaled) reward.
            "eval_return": round(eval_ret, 2),
            "train_episode_return": round(float(np.sum(weights * metrics["episode_return"])), 2),
            "train_episode_length": round(float(np.sum(weights * metrics["episode_length"])), 1),
            "train_episodes": int(ended.sum()),
        }
        curve.append(point)
        print(json.dumps(point), file=sys.stderr, flush=True)
    train_s = time.perf_counter() - start
    steps = chunks * per_chunk * config.env_steps_per_update
    print(
        json.dumps(
            {
                "benchmark": "ppo_ant",
                "device": str(jax.devices()[0]),
                "env": args.env,
                "backend": args.backend,
                "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
                "compile_s": round(compile_s, 2),
                "train_s": round(train_s, 2),
                "env_steps": steps,
                "env_steps_per_s": round(steps / train_s, 1),
                "final_eval_return": curve[-1]["eval_return"],
                "curve": curve,
            }
        )
    )


if __name__ == "__main__":
    main()
