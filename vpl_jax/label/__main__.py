"""``python -m vpl_jax.label --dataset D.npz [--model M] [--queries info_gain|random]``.

``--dataset`` is a file written by :func:`~vpl_jax.data.save_dataset`; ``--model`` a folder
written by :func:`~vpl_jax.label.save_model` (a trained VPL or LinearBayes). Experiment run
folders keep neither their dataset nor their trained params, so they cannot be served directly.
Serves on 127.0.0.1 unless ``--host`` names another address, which also needs ``--allow-remote``.
"""

from __future__ import annotations

import argparse
import sys

from vpl_jax.data.dataset import load_dataset
from vpl_jax.label.app import create_app
from vpl_jax.label.model import load_model
from vpl_jax.label.queries import QUERY_CHOICES

LOCAL = ("127.0.0.1", "localhost", "::1")


def main(argv=None) -> None:
    """Parses the command line and serves the labelling app until interrupted."""
    p = argparse.ArgumentParser(prog="python -m vpl_jax.label", description=__doc__)
    p.add_argument("--dataset", required=True, help="a dataset .npz (save_dataset)")
    p.add_argument("--model", help="a trained model folder (vpl_jax.label.save_model)")
    p.add_argument(
        "--queries",
        choices=QUERY_CHOICES,
        help="how the next pair is chosen (default: info_gain with --model, else random)",
    )
    p.add_argument("--out", default="labels", help="folder of the per-person answer files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--allow-remote", action="store_true", help="allow a non-local --host")
    a = p.parse_args(argv)
    if a.host not in LOCAL:
        if not a.allow_remote:
            p.error(f"binding to {a.host} needs --allow-remote")
        print(f"WARNING: serving on {a.host}: anyone who can reach it can label", file=sys.stderr)
    if a.queries == "info_gain" and a.model is None:
        p.error("--queries info_gain needs --model")
    dataset = load_dataset(a.dataset)
    model, params = load_model(a.model, dataset) if a.model else (None, None)
    app = create_app(dataset, a.out, a.seed, model, params, a.queries)
    app.run(host=a.host, port=a.port)


if __name__ == "__main__":
    main()
