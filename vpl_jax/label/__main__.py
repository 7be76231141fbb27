"""``python -m vpl_jax.label --run RUN_FOLDER [--task T] [--method vpl|linear_bayes]``, or
``python -m vpl_jax.label --dataset D.npz [--model M]``; ``--queries info_gain|random``.

``--run`` is a run folder of ``experiments/reward_accuracy.py`` or ``underspecification.py``, which
save each task's dataset and trained reward models (seed 0 is served), and for underspecification
its trained policies, which "show my policy" rolls out; ``--task`` is needed when it holds several
tasks, and ``--method`` defaults to vpl (else linear_bayes). The run's registrations (its config's
``register``) are imported. ``--dataset`` is a file written by :func:`~vpl_jax.data.save_dataset`;
``--model`` a folder written by :func:`~vpl_jax.rewards.save_model` (a trained VPL or LinearBayes);
``--register`` imports the files or modules that register its task, if it is a variant. Serves on
127.0.0.1 unless ``--host`` names another address, which also needs ``--allow-remote``.
"""

from __future__ import annotations

import argparse
import sys

from vpl_jax.data.dataset import load_dataset
from vpl_jax.harness import ConfigError, load_registrations
from vpl_jax.label.app import create_app
from vpl_jax.label.policy import SHOWN
from vpl_jax.label.queries import QUERY_CHOICES
from vpl_jax.label.runs import (
    SERVED_METHODS,
    RunFolderContentError,
    policy_folders,
    run_registrations,
    served_files,
)
from vpl_jax.policies.files import PolicyFileError, load_policy
from vpl_jax.rewards import VPL, LinearBayes
from vpl_jax.rewards.files import load_model

LOCAL = ("127.0.0.1", "localhost", "::1")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vpl_jax.label", description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="an experiment's run folder (results/EXPERIMENT/RUN)")
    source.add_argument("--dataset", help="a dataset .npz (save_dataset)")
    p.add_argument("--task", help="with --run: the task to serve (when it holds several)")
    p.add_argument("--method", choices=SERVED_METHODS, help="with --run: the model to serve")
    p.add_argument("--model", help="with --dataset: a trained model folder (save_model)")
    p.add_argument(
        "--register",
        nargs="*",
        default=[],
        metavar="FILE.py|MODULE",
        help="with --dataset: code that registers its task (a variant) and user types",
    )
    p.add_argument(
        "--queries",
        choices=QUERY_CHOICES,
        help="how the next pair is chosen (default: info_gain with a model, else random)",
    )
    p.add_argument("--out", default="labels", help="folder of the per-person answer files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--allow-remote", action="store_true", help="allow a non-local --host")
    return p


def build_app(argv=None):
    """The app the command line describes (not yet serving) and the parsed arguments."""
    p = parser()
    a = p.parse_args(argv)
    if a.host not in LOCAL:
        if not a.allow_remote:
            p.error(f"binding to {a.host} needs --allow-remote")
        print(f"WARNING: serving on {a.host}: anyone who can reach it can label", file=sys.stderr)
    if a.run is None and (a.task or a.method):
        p.error("--task and --method choose within a --run folder")
    if a.run is not None and a.model:
        p.error("--model goes with --dataset (a --run folder has its own models: --method)")
    if a.run is not None and a.register:
        p.error("--register goes with --dataset (a --run folder's config has its registrations)")
    policy_dirs = {}
    if a.run is not None:
        try:
            registrations = run_registrations(a.run)
            dataset_file, model_dir = served_files(a.run, a.task, a.method)
        except RunFolderContentError as e:
            p.error(str(e))
    else:
        registrations, dataset_file, model_dir = a.register, a.dataset, a.model
    try:
        load_registrations(registrations)
    except ConfigError as e:
        p.error(str(e))
    if a.queries == "info_gain" and model_dir is None:
        p.error("--queries info_gain needs --model (or a --run folder with a model)")
    dataset = load_dataset(dataset_file)
    model, params = load_model(model_dir, dataset) if model_dir else (None, None)
    if model is not None and not isinstance(model, VPL | LinearBayes):
        p.error(f"{model_dir} holds a {type(model).__name__}; the app serves VPL or LinearBayes")
    if a.run is not None:
        saved = policy_folders(a.run, dataset.meta.task)
        policy_dirs = {m: saved[m] for m in SHOWN if m in saved}
    try:
        policies = {method: load_policy(folder) for method, folder in policy_dirs.items()}
    except PolicyFileError as e:
        p.error(str(e))
    print(f"serving {dataset_file}" + (f" with the model {model_dir}" if model_dir else ""))
    if policies:
        print(f"with the policies {', '.join(str(f) for f in policy_dirs.values())}")
    return create_app(dataset, a.out, a.seed, model, params, a.queries, policies), a


def main(argv=None) -> None:
    """Parses the command line and serves the labelling app until interrupted."""
    app, a = build_app(argv)
    app.run(host=a.host, port=a.port)


if __name__ == "__main__":
    main()
