"""Active query selection throughput: one selection round for many users at once.

Prints one JSON object: the compile time (lowering + XLA compilation, measured ahead of time) and
the run time (median of ``--repeats`` calls of the compiled function) of choosing the next
``--batch-size`` queries for each of ``--users`` users from a shared pool of ``--candidates``
pairs — encoding each user's context, drawing posterior samples, scoring every candidate, and
the masked (diverse) selection. Also the throughput in candidate scores per second.

The data are synthetic but shaped like the real thing (a bank of random segments, each user
with ``--context`` labelled pairs, half of the buffer filled) and the model is freshly
initialised: the cost of a round does not depend on what the model has learned. So the script
runs wherever JAX runs (CPU or GPU)::

    python benchmarks/active_selection.py                    # VPL info gain, 4096 x 256
    python benchmarks/active_selection.py --model linear_bayes --criterion mutual_info_theta
    python benchmarks/active_selection.py --users 1024 --users-per-chunk 256   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

from vpl_jax import active as A
from vpl_jax import rewards as R


def make_model(args):
    hidden = (args.hidden, args.hidden)
    if args.model == "vpl":
        return R.VPL(
            latent_dim=args.latent_dim,
            embed_dim=args.hidden,
            encoder_hidden=hidden,
            decoder_hidden=hidden,
            max_context=args.context,
        )
    if args.model == "linear_bayes":
        return R.LinearBayes(max_context=args.context)
    return R.Ensemble(R.BTL(hidden=hidden), size=args.ensemble_size)


def synthetic(key, model, args):
    """``(candidates, contexts: PairBatch[U, K], available: bool[U, Q])``."""
    k_bank, k_feat, k_pairs, k_offset, k_ctx, k_labels = jax.random.split(key, 6)
    s, h, d = args.segments, args.horizon, args.obs_dim
    inputs = jax.random.normal(k_bank, (s, h, d))
    bank = R.SegmentBank(inputs=inputs, alive=jnp.ones((s, h), bool), kind=model.inputs)
    features = inputs if model.inputs == "features" else jax.random.normal(k_feat, (s, h, d))
    a = jax.random.randint(k_pairs, (args.candidates,), 0, s)
    b = (a + jax.random.randint(k_offset, (args.candidates,), 1, s)) % s  # b != a
    cands = A.Candidates(bank=bank, features=features, pairs=jnp.stack([a, b], -1))
    index = jax.random.randint(k_ctx, (args.users, args.context), 0, args.candidates)
    labels = jax.random.bernoulli(k_labels, 0.5, index.shape).astype(jnp.float32)
    filled = jnp.arange(args.context) < args.context // 2
    contexts = cands.batch(index, labels, jnp.broadcast_to(filled, index.shape))
    available = jnp.ones((args.users, args.candidates), bool)
    available = jax.vmap(lambda av, i: av.at[i].set(False))(available, index)
    return cands, contexts, available


def measure(args) -> dict:
    model = make_model(args)
    belief = A.make_belief(model, args.samples)
    acq = A.Acquisition(
        args.criterion, batch_size=args.batch_size, shortlist=args.shortlist
    ).validate(belief)
    cands, contexts, available = synthetic(jax.random.PRNGKey(0), model, args)
    params = model.init(jax.random.PRNGKey(1), jax.tree.map(lambda x: x[:4], contexts))
    slot = args.context // 2

    def select_round(params, cands, contexts, available, key):
        def one(xs):
            context, avail, k = xs
            return A.select_queries(belief, acq, params, cands, context, slot, avail, k)

        keys = jax.random.split(key, args.users)
        return jax.lax.map(one, (contexts, available, keys), batch_size=args.users_per_chunk)

    key = jax.random.PRNGKey(2)
    start = time.perf_counter()
    compiled = jax.jit(select_round).lower(params, cands, contexts, available, key).compile()
    compile_s = time.perf_counter() - start
    picked = jax.block_until_ready(compiled(params, cands, contexts, available, key))  # warm-up
    assert picked.shape == (args.users, args.batch_size)
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        k = jax.random.fold_in(key, i)  # fresh samples each call, same compiled function
        jax.block_until_ready(compiled(params, cands, contexts, available, k))
        times.append(time.perf_counter() - start)
    run_s = statistics.median(times)
    return {
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 4),
        "run_s_all": [round(t, 4) for t in times],
        "candidate_scores_per_s": round(args.users * args.candidates / run_s, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["vpl", "linear_bayes", "btl_ensemble"], default="vpl")
    parser.add_argument("--criterion", default="info_gain", choices=A.CRITERIA)
    parser.add_argument("--users", type=int, default=256, help="U, users selecting at once")
    parser.add_argument("--candidates", type=int, default=4096, help="Q, candidate pairs")
    parser.add_argument("--segments", type=int, default=4096, help="segments the pool uses")
    parser.add_argument("--horizon", type=int, default=10, help="H, steps per segment")
    parser.add_argument("--obs-dim", type=int, default=8, help="D, inputs per step")
    parser.add_argument("--context", type=int, default=8, help="K, context slots (half filled)")
    parser.add_argument("--samples", type=int, default=16, help="N, posterior samples")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--ensemble-size", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1, help="b, queries chosen per user")
    parser.add_argument("--shortlist", type=int, default=None, help="entropy: candidates kept")
    parser.add_argument(
        "--users-per-chunk", type=int, default=8, help="users vmapped at once (bounds memory)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in ("users", "candidates", "segments", "horizon", "obs_dim", "samples", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.segments < 2:
        parser.error("--segments must be >= 2 (pairs of distinct segments)")
    if args.context < 2:
        parser.error("--context must be >= 2 (half of it is filled)")
    result = {
        "benchmark": "active_selection",
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **vars(args),
    }
    try:
        result.update(measure(args))
    except ValueError as e:  # e.g. a criterion that does not apply to the model
        parser.error(str(e))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
