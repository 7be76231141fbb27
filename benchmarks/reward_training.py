"""Reward-model training throughput: one seed versus S seeds vmapped in one compiled call.

Prints one JSON object: for each seed count, compile time (lowering + XLA compilation, measured
ahead of time) and run time (median of ``--repeats`` calls of the compiled run), the throughput
in labelled pairs per second (pairs seen by the optimiser, summed over seeds), and XLA's cost
analysis of one optimiser step on this backend (flops and bytes of memory accessed, all seeds
together). Bytes per step over run time per step is the memory bandwidth the run achieves: where
it approaches the device's peak, more seeds cost proportionally more time (the S-seed run is
bandwidth-bound) and only fewer bytes per seed (e.g. ``--dtype bfloat16``) bring the ratio down.
Each row's ``roofline`` says how close the run comes: the time its counted bytes and flops need
at the device's peak bandwidth and matmul throughput (known for H100, H200, A100; give
``--peak-gb-per-s`` and ``--peak-tflops`` elsewhere) over the measured time, and which bound.

The data are synthetic but shaped like the real thing — a bank of random segments, users of two
types with opposite linear rewards, rational labels — so no environment has to be rolled out and
the script runs wherever JAX runs (CPU or GPU)::

    python benchmarks/reward_training.py                       # VPL, CPU-sized defaults
    python benchmarks/reward_training.py --model btl --users 4096 --seeds 16
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

from vpl_jax import rewards as R
from vpl_jax.rewards.trainer import check_training_inputs, init_state, optimizer_step


def synthetic_pairs(key, args) -> R.UserPairs:
    """``args.users`` users of two types with opposite linear rewards over the inputs."""
    k_bank, k_pairs, k_w = jax.random.split(key, 3)
    s, h, d = args.segments, args.horizon, args.obs_dim
    inputs = jax.random.normal(k_bank, (s, h, d))
    bank = R.SegmentBank(inputs=inputs, alive=jnp.ones((s, h), bool), kind=R.DEFAULT_INPUTS)
    pairs = jax.random.randint(k_pairs, (args.users, args.pairs_per_user, 2), 0, s)
    type_id = jnp.arange(args.users) % 2
    w = jax.random.normal(k_w, (d,))
    theta = jnp.where(type_id[:, None] == 0, w, -w)  # [U, D]
    returns = inputs.sum(axis=1)  # [S, D]
    r_a = jnp.einsum("uqd,ud->uq", returns[pairs[..., 0]], theta)
    r_b = jnp.einsum("uqd,ud->uq", returns[pairs[..., 1]], theta)
    return R.UserPairs(
        bank=bank,
        pairs=pairs.astype(jnp.int32),
        labels=(r_a > r_b).astype(jnp.float32),
        mask=jnp.ones(pairs.shape[:2], bool),
        type_id=type_id.astype(jnp.int32),
        type_names=("type_0", "type_1"),
    )


def make_model(args):
    hidden = (args.hidden, args.hidden)
    if args.model == "vpl":
        return R.VPL(
            latent_dim=args.latent_dim,
            embed_dim=args.hidden,
            encoder_hidden=hidden,
            decoder_hidden=hidden,
            pooling=args.pooling,
            max_context=args.max_context,
            dtype=args.dtype,
        )
    if args.model == "btl":
        return R.BTL(hidden=hidden, dtype=args.dtype)
    if args.model == "dpl":
        return R.DPLMeanVariance(hidden=hidden, dtype=args.dtype)
    return R.Ensemble(R.BTL(hidden=hidden, dtype=args.dtype), size=5)


def step_cost(model, config, data, keys, num_seeds: int) -> dict:
    """XLA's cost analysis of one optimiser step of ``num_seeds`` seeds (the trainer's
    :func:`~vpl_jax.rewards.trainer.optimizer_step`, vmapped), compiled for this backend."""
    tx = config.optimizer()
    users = jnp.arange(min(config.users_per_batch, data.num_users))

    def step(state, key):
        batch = data.batch(users)
        return optimizer_step(model, tx, state.params, state.opt_state, batch, key, state.step)

    init = functools.partial(init_state, model, config, train=data)
    if num_seeds > 1:
        step, init = jax.vmap(step), jax.vmap(init)
    states = init(keys)
    cost = jax.jit(step).lower(states, keys).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax: one dict per program
    return {
        "xla_flops_per_step": cost.get("flops", float("nan")),
        "xla_bytes_accessed_per_step": cost.get("bytes accessed", float("nan")),
    }


#: Peak memory bandwidth (GB/s) and dense matrix-multiply throughput (TFLOP/s; float32 inputs
#: run as TF32 on these GPUs with the default matmul precision) of known devices, by the start of
#: ``device_kind``. Others (CPUs) take ``--peak-gb-per-s`` / ``--peak-tflops``.
PEAKS = {
    "NVIDIA H100": (3350.0, 494.7),
    "NVIDIA H200": (4800.0, 494.7),
    "NVIDIA A100": (2039.0, 156.0),
}


def device_peaks(device, gb_per_s: float | None, tflops: float | None) -> tuple:
    """``(peak GB/s, peak TFLOP/s)``: the flags where given, else the :data:`PEAKS` row of the
    device (None where unknown)."""
    kind = getattr(device, "device_kind", "")
    known = next((v for k, v in PEAKS.items() if kind.startswith(k)), (None, None))
    return (gb_per_s or known[0], tflops or known[1])


def roofline(row: dict, steps: int, peaks: tuple) -> dict | None:
    """How close one run comes to the roofline: the time XLA's counted bytes and flops need at
    the device's peaks (the larger of the two says whether the step is memory- or
    compute-bound) over the measured time; 1.0 is the roofline. None where a peak is unknown."""
    gb_per_s, tflops = peaks
    if gb_per_s is None or tflops is None:
        return None
    memory_s = row["xla_bytes_accessed_per_step"] * steps / (gb_per_s * 1e9)
    compute_s = row["xla_flops_per_step"] * steps / (tflops * 1e12)
    return {
        "peak_gb_per_s": gb_per_s,
        "peak_tflops": tflops,
        "bound": "memory" if memory_s >= compute_s else "compute",
        "fraction": round(max(memory_s, compute_s) / row["run_s"], 4),
    }


def measure(model, config, data, num_seeds: int, repeats: int) -> dict:
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    if num_seeds == 1:
        keys = keys[0]
        run = jax.jit(lambda key, data: R.train_run(model, config, key, data))
    else:
        run = jax.jit(
            lambda keys, data: jax.vmap(lambda k: R.train_run(model, config, k, data))(keys)
        )
    start = time.perf_counter()
    compiled = run.lower(keys, data).compile()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(keys, data))
        times.append(time.perf_counter() - start)
    run_s = statistics.median(times)
    batch = min(config.users_per_batch, data.num_users)
    steps = config.num_epochs * (data.num_users // batch)
    pairs = num_seeds * steps * batch * data.num_pairs
    cost = step_cost(model, config, data, keys, num_seeds)
    return {
        "seeds": num_seeds,
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 4),
        "run_s_all": [round(t, 4) for t in times],
        "optimizer_steps_per_seed": steps,
        "pairs_per_s": round(pairs / run_s, 1),
        "pairs_per_s_per_seed": round(pairs / run_s / num_seeds, 1),
        **cost,
        # Memory traffic the run sustains, if every step accessed what XLA's analysis counts.
        "achieved_gb_per_s": round(cost["xla_bytes_accessed_per_step"] * steps / run_s / 1e9, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["vpl", "btl", "dpl", "ensemble"], default="vpl")
    parser.add_argument("--users", type=int, default=256, help="U training users")
    parser.add_argument("--pairs-per-user", type=int, default=40, help="Q labelled pairs per user")
    parser.add_argument("--segments", type=int, default=2048, help="segments in the bank")
    parser.add_argument("--horizon", type=int, default=10, help="H steps per segment")
    parser.add_argument("--obs-dim", type=int, default=8, help="D inputs per step")
    parser.add_argument("--hidden", type=int, default=64, help="width of every hidden layer")
    parser.add_argument("--latent-dim", type=int, default=8, help="Z (VPL)")
    parser.add_argument("--pooling", choices=["mean", "attention"], default="mean")
    parser.add_argument("--max-context", type=int, default=8, help="largest training context")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--users-per-batch", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=16, help="S seeds of the vmapped run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per seed count")
    parser.add_argument(
        "--matmul-precision",
        choices=["default", "high", "highest"],
        default="default",
        help="jax_default_matmul_precision (on GPUs 'default' may use TF32)",
    )
    parser.add_argument("--peak-gb-per-s", type=float, help="the device's memory bandwidth")
    parser.add_argument("--peak-tflops", type=float, help="the device's matmul TFLOP/s")
    args = parser.parse_args()
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)

    model = make_model(args)
    config = R.TrainConfig(num_epochs=args.epochs, users_per_batch=args.users_per_batch)
    data = synthetic_pairs(jax.random.PRNGKey(1), args)
    check_training_inputs(model, config, data)
    results = [measure(model, config, data, s, args.repeats) for s in (1, args.seeds)]
    one, many = results
    device = jax.devices()[0]
    peaks = device_peaks(device, args.peak_gb_per_s, args.peak_tflops)
    for row in results:
        row["roofline"] = roofline(row, row["optimizer_steps_per_seed"], peaks)
    print(
        json.dumps(
            {
                "benchmark": "reward_training",
                "model": args.model,
                "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
                "jax": jax.__version__,
                "matmul_precision": args.matmul_precision,
                "sizes": {k: v for k, v in vars(args).items() if k not in ("matmul_precision",)},
                "results": results,
                f"wall_ratio_{args.seeds}_seeds_to_1": round(many["run_s"] / one["run_s"], 3),
                "host_cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
