"""``python -m vpl_jax.label --dataset D.npz [--out FOLDER] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import sys

from vpl_jax.data.dataset import load_dataset
from vpl_jax.label.app import create_app


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m vpl_jax.label")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", default="labels")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--allow-remote", action="store_true")
    a = p.parse_args(argv)
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        if not a.allow_remote:
            p.error(f"binding to {a.host} needs --allow-remote")
        print(f"WARNING: serving on {a.host}: anyone who can reach it can label", file=sys.stderr)
    create_app(load_dataset(a.dataset), a.out).run(host=a.host, port=a.port)


if __name__ == "__main__":
    main()
