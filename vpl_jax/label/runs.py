"""What an experiment's run folder offers the app: a task's dataset, a trained model to serve,
the trained policies to roll out, and the registrations its tasks need.

``reward_accuracy`` and ``underspecification`` save ``<task>_dataset.npz`` and
``models/<task>_<method>/`` (seed 0; other seeds in its ``seed_<s>/``) into their run folder
(:func:`vpl_jax.harness.dataset_path`, :func:`vpl_jax.harness.model_folder`);
``underspecification`` also saves
``policies/<task>_<method>/`` (:func:`vpl_jax.harness.policy_folder`). The app serves a model
with a belief about one person: VPL (its z) or LinearBayes (its θ). A run of registered task
variants or user types records the registrations in its ``config.json`` (``register``); the app
imports them too, so a variant is drawn as its parent task.
"""

from __future__ import annotations

import json
from pathlib import Path

from vpl_jax.harness import dataset_path, model_folder

#: Methods the app can serve, the default first.
SERVED_METHODS = ("vpl", "linear_bayes")


class RunFolderContentError(ValueError):
    """A run folder lacks what was asked for (a task's dataset, a method's model)."""


def run_tasks(run: str | Path) -> list[str]:
    """The tasks whose dataset the run folder holds, sorted."""
    return sorted(p.name.removesuffix("_dataset.npz") for p in Path(run).glob("*_dataset.npz"))


def served_files(
    run: str | Path, task: str | None = None, method: str | None = None
) -> tuple[Path, Path | None]:
    """``(dataset file, model folder or None)`` to serve from ``run``.

    ``task`` defaults to the run's only task; ``method`` to the first of :data:`SERVED_METHODS`
    the run trained (None when it trained neither: the app then asks random pairs).
    """
    run = Path(run)
    if not run.is_dir():
        raise RunFolderContentError(f"run folder {run} does not exist")
    tasks = run_tasks(run)
    if not tasks:
        raise RunFolderContentError(
            f"{run} holds no <task>_dataset.npz (runs of reward_accuracy and underspecification "
            "save them; re-run an older run to get them)"
        )
    if task is None:
        if len(tasks) > 1:
            raise RunFolderContentError(f"{run} holds several tasks {tasks}: choose one (--task)")
        task = tasks[0]
    if task not in tasks:
        raise RunFolderContentError(f"{run} holds no dataset of task {task!r}; it has {tasks}")
    if method is not None:
        if method not in SERVED_METHODS:
            raise RunFolderContentError(
                f"method {method!r}: the app serves one of {list(SERVED_METHODS)}"
            )
        folder = model_folder(run, task, method)
        if not folder.is_dir():
            raise RunFolderContentError(f"{run} holds no {method} model of {task} ({folder})")
        return dataset_path(run, task), folder
    for candidate in SERVED_METHODS:
        folder = model_folder(run, task, candidate)
        if folder.is_dir():
            return dataset_path(run, task), folder
    return dataset_path(run, task), None


def policy_folders(run: str | Path, task: str) -> dict[str, Path]:
    """``{method: folder}`` of the policies the run saved for ``task`` (empty when none): the
    folders under ``policies/`` whose ``policy.json`` names the task."""
    found = {}
    for path in sorted((Path(run) / "policies").glob("*/policy.json")):  # policy_folder's
        try:
            description = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise RunFolderContentError(f"{path} is malformed: {e}") from e
        if description.get("task") == task:
            found[str(description.get("method"))] = path.parent
    return found


def run_registrations(run: str | Path) -> list[str]:
    """The ``register`` entries of the run's ``config.json`` (empty without one)."""
    path = Path(run) / "config.json"
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("register", []))
    except (ValueError, AttributeError) as e:
        raise RunFolderContentError(f"{path} is not a config written by an experiment: {e}") from e
