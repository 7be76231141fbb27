"""The results every experiment writes, in one tidy long format.

``results/<experiment>/<run-name>/`` holds:

* ``config.json`` — the resolved config (non-finite floats, such as ``beta = inf``, as
  ``null``, as in ``metrics.json``);
* ``metrics.json`` — ``{"experiment", "preset", "seed", "rows": [...]}`` (plus ``"warnings"``,
  the messages of any :class:`~vpl_jax.checks.DataWarning` the run raised) where each row is
  ``{"method", "task", "user_type", "metric", "value", "seed", ...}`` plus optional fields such as
  ``n_queries``, ``deviation`` or ``round``;
* ``metrics.csv`` — the same rows;
* ``intervals.json`` — ``{"experiment", "preset", "seed", "confidence", "reps", "intervals",
  "improvement"}``: per cell (every field of a row but ``seed`` and ``value``) the mean over
  seeds with its 95 % stratified-bootstrap interval (:func:`interval_rows`), and per pair of
  methods in a cell the probability of improvement with its interval
  (:func:`improvement_rows`), as rliable reports them (:mod:`vpl_jax.intervals`);
* figures as PNG and PDF, and ``summary.md`` (a table of every metric by method and user type,
  ``mean [low, high]`` over seeds where a cell has two or more, the probability of improvement
  of each pair of methods, then the experiment's own notes);
* for experiments that build datasets and train reward models (``reward_accuracy``,
  ``underspecification``): ``<task>_dataset.npz`` (:func:`~vpl_jax.data.save_dataset`) and
  ``models/<task>_<method>/``, the trained reward model of seed 0
  (:func:`~vpl_jax.rewards.save_model`) — what ``python -m vpl_jax.label --run`` serves — and
  of each seed s >= 1 in its ``seed_<s>/``;
* for experiments that also train policies (``underspecification``):
  ``policies/<task>_<method>/``, the trained policy of seed 0
  (:func:`~vpl_jax.policies.files.save_policy`), which the labelling app rolls out for a person,
  and of each seed s >= 1 in its ``seed_<s>/``.

Per-user scores become rows per user type and ``"all"`` with :meth:`RunResults.add_type_rows`
(the means: :func:`type_means`).

Method names are short snake_case and the same everywhere (the reward methods are
:data:`vpl_jax.rewards.REWARD_METHODS`, the acquisition criteria :data:`vpl_jax.active.CRITERIA`).
Every file is written atomically, and by process 0 only when a run spans several processes
(:attr:`RunResults.writes`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vpl_jax.atomic import atomic_write
from vpl_jax.data.dataset import PreferenceDataset, save_dataset
from vpl_jax.harness.config import ExperimentConfig, json_safe
from vpl_jax.harness.tasks import task_env_kwargs
from vpl_jax.intervals import CONFIDENCE, REPS, improvement_probability, seed_interval
from vpl_jax.policies.files import save_policy
from vpl_jax.policies.ppo import PPO, RunnerState
from vpl_jax.rewards.base import Params, RewardModel
from vpl_jax.rewards.files import save_model
from vpl_jax.runtime import sharding
from vpl_jax.runtime.checkpoint import Checkpointer

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_REQUIRED = ("method", "task", "user_type", "metric", "value", "seed")
#: The fields aggregate rows add (:func:`interval_rows`, :func:`improvement_rows`); no row may
#: use them.
_AGGREGATE = ("mean", "low", "high", "num_seeds", "versus", "probability", "num_seeds_versus")


def dataset_path(run: str | os.PathLike, task: str) -> Path:
    """Where a run folder keeps ``task``'s dataset: ``<run>/<task>_dataset.npz``."""
    return Path(run) / f"{task}_dataset.npz"


def model_folder(run: str | os.PathLike, task: str, method: str) -> Path:
    """Where a run folder keeps ``task``'s trained ``method``: ``<run>/models/<task>_<method>``."""
    return Path(run) / "models" / f"{task}_{method}"


def policy_folder(run: str | os.PathLike, task: str, method: str) -> Path:
    """Where a run folder keeps ``task``'s trained ``method`` policy:
    ``<run>/policies/<task>_<method>``."""
    return Path(run) / "policies" / f"{task}_{method}"


def _save_each_seed(folder: Path, tree: Any, seeds: bool, save: Callable[[Path, Any], Any]):
    """``save(path, tree[s])`` for each seed s of ``tree``'s leading axis (``seeds``; else the
    whole ``tree`` as seed 0): seed 0 into ``folder`` itself, seed s >= 1 into
    ``folder/seed_<s>``. Then removes the ``seed_<s>`` subfolders past the last seed that an
    overwritten run left behind."""
    num = jax.tree.leaves(tree)[0].shape[0] if seeds else 1
    for s in range(num):
        one = jax.tree.map(lambda x, s=s: x[s], tree) if seeds else tree
        save(folder if s == 0 else folder / f"seed_{s}", one)
    for path in folder.glob("seed_*"):
        suffix = path.name.removeprefix("seed_")
        if path.is_dir() and suffix.isdigit() and int(suffix) >= num:
            shutil.rmtree(path)


class RunResults:
    """Collects tidy rows and figures for one run and writes them atomically.

    Args:
      experiment: the experiment's name (its script's stem).
      config: the resolved, validated config.
    """

    def __init__(self, experiment: str, config: ExperimentConfig):
        self.experiment = experiment
        self.config = config
        self.path = Path(config.results_dir) / experiment / config.run_name
        self.rows: list[dict[str, Any]] = []
        self.figures: list[str] = []
        self.warnings: list[str] = []  # DataWarnings raised during the run (run_experiment)
        # Process 0 writes; on the others of a multi-process run every method here writes
        # nothing and returns the path it would have written.
        self.writes = sharding.is_writer()
        self._start = time.time()

    def write_config(self) -> Path:
        path = self.path / "config.json"
        if not self.writes:
            return path
        with atomic_write(path) as f:
            f.write(self.config.to_json() + "\n")
        return path

    def checkpointer(self, name: str, every: int, **identity: Any) -> Checkpointer | None:
        """Checkpoints of one training of this run, in ``<run folder>/checkpoints/<name>``, saved
        every ``every`` updates (None when ``every`` is 0). Their fingerprint is the config's
        :meth:`~ExperimentConfig.results_json` (with ``identity``, when given), so a checkpoint
        of another config is refused while one moved with its results folder resumes."""
        if not every:
            return None
        config = self.config.results_json()
        if identity:
            config = {"config": config, **identity}
        return Checkpointer(self.path / "checkpoints" / name, config, every=every)

    def add(
        self,
        *,
        method: str,
        task: str,
        metric: str,
        value: float,
        user_type: str = "all",
        seed: int | None = None,
        **extra: Any,
    ) -> None:
        """Adds one row; ``extra`` holds optional fields (``n_queries``, ``deviation``, …)."""
        for name, text in (("method", method), ("metric", metric)):
            if not _SNAKE.match(text):
                raise ValueError(f"result {name} {text!r} must be short snake_case")
        if reserved := sorted(set(extra) & set(_AGGREGATE)):
            raise ValueError(f"result fields {reserved} are reserved for intervals.json")
        row = {
            "method": method,
            "task": task,
            "user_type": user_type,
            "metric": metric,
            "value": json_safe(value),
            "seed": self.config.seed if seed is None else int(seed),
        }
        row.update({k: json_safe(v) for k, v in extra.items()})
        self.rows.append(row)

    def add_type_rows(
        self,
        values: Any,
        type_id: Any,
        type_names: Sequence[str],
        columns: Sequence[tuple[int, dict[str, Any]]],
        *,
        axis: int = -1,
        overall: bool = True,
        first_seed: int = 0,
        **fields: Any,
    ) -> None:
        """Adds rows of per-user ``values`` averaged per user type (:func:`type_means`).

        ``values: f32[S, C, U]`` holds one value per seed, column (e.g. number of queries) and
        user, the users along ``axis`` (e.g. ``f32[S, U, C]`` with ``axis=1``); ``type_id:
        i32[U]`` indexes ``type_names``. Each type's mean ``f32[S, C]`` (then that of ``"all"``
        users when ``overall``) gives a row per seed s and entry ``(c, extra)`` of ``columns``,
        in that order: ``value=mean[s, c]``, ``seed=first_seed + s``, ``fields`` (``method``,
        ``task``, ``metric``, …) and then ``extra`` (e.g. ``{"n_queries": 4}``; a column may
        appear in several entries).
        """
        for name, mean in type_means(values, type_id, type_names, axis, overall).items():
            for s in range(mean.shape[0]):
                for c, extra in columns:
                    self.add(**fields, user_type=name, value=mean[s, c], seed=first_seed + s,
                             **extra)  # fmt: skip

    def add_separation_rows(
        self, separation: Any, type_names: Sequence[str], *, first_seed: int = 0, **fields: Any
    ) -> None:
        """Rows ``latent_recovery``, ``latent_spread`` and ``latent_nearest`` per seed and type
        of a :class:`~vpl_jax.rewards.LatentSeparation` with a leading seed axis (seed
        ``first_seed + s``); types with no user are left out; ``fields``: ``method``, ``task``."""
        for metric, values in (
            ("latent_recovery", separation.recovery),
            ("latent_spread", separation.spread),
            ("latent_nearest", separation.nearest),
        ):
            values = np.asarray(values)
            for s in range(values.shape[0]):
                for t, name in enumerate(type_names):
                    if not np.isnan(values[s, t]):
                        self.add(**fields, user_type=name, metric=metric, value=values[s, t],
                                 seed=first_seed + s)  # fmt: skip

    def log_curves(self, prefix: str, curves: dict[str, Any], step_scale: int = 1) -> None:
        """Logs training curves to TensorBoard when the config asks for it (else does nothing).

        ``curves`` maps a name to values ``f32[E]`` or ``f32[E, S]`` (S seeds, logged as
        ``name/seed_s``); point e is logged at step ``e * step_scale``.
        """
        if not self.config.tensorboard or not self.writes:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:
            raise RuntimeError("tensorboard=True needs the tensorboardX package") from e
        with SummaryWriter(str(self.path / "tensorboard")) as writer:
            for name, values in curves.items():
                values = np.asarray(values, dtype=float)
                values = values[:, None] if values.ndim == 1 else values.reshape(len(values), -1)
                for e, row in enumerate(values):
                    for s, value in enumerate(row):
                        tag = f"{prefix}/{name}" + (f"/seed_{s}" if values.shape[1] > 1 else "")
                        writer.add_scalar(tag, value, e * step_scale)

    def log_reward_history(self, prefix: str, history: Any) -> None:
        """Logs a reward model's training curves (a :class:`vpl_jax.rewards.History`, its
        values ``f32[E]`` or, for seeds in one vmap, ``f32[S, E]``) as ``train_<metric>`` and
        ``valid_<metric>`` per epoch, when the config asks for TensorBoard."""
        if not self.config.tensorboard:
            return
        curves = {
            f"{part}_{name}": np.asarray(values) if np.ndim(values) == 1
            else np.moveaxis(np.asarray(values), 0, 1)
            for part, metrics in (("train", history.train), ("valid", history.valid))
            for name, values in metrics.items()
        }  # fmt: skip
        self.log_curves(prefix, curves)

    def log_ppo_history(self, prefix: str, history: dict[str, Any], steps_per_update: int) -> None:
        """Logs PPO's per-update curves (``f32[updates, R]`` for R runs in one vmap) against
        environment steps, when the config asks for TensorBoard."""
        if not self.config.tensorboard:
            return
        curves = {k: v for k, v in history.items() if np.ndim(v) == 2}
        self.log_curves(prefix, curves, step_scale=steps_per_update)

    def figure(self, fig, name: str) -> list[Path]:
        """Saves a matplotlib figure as ``name.png`` and ``name.pdf``; closes it."""
        import matplotlib.pyplot as plt

        paths = []
        for ext in ("png", "pdf") if self.writes else ():
            buffer = io.BytesIO()
            fig.savefig(buffer, format=ext, dpi=150, bbox_inches="tight")
            path = self.path / f"{name}.{ext}"
            with atomic_write(path, "wb") as f:
                f.write(buffer.getvalue())
            paths.append(path)
        plt.close(fig)
        self.figures.append(name)
        return paths

    def save_dataset(self, dataset: PreferenceDataset, task: str) -> Path:
        """Writes ``task``'s dataset into the run folder (:func:`dataset_path`), atomically."""
        if not self.writes:
            return dataset_path(self.path, task)
        return save_dataset(dataset, dataset_path(self.path, task))

    def save_reward_model(
        self, task: str, method: str, model: RewardModel, params: Params, seeds: bool = True
    ) -> Path:
        """Writes ``task``'s trained ``method`` into the run folder (:func:`model_folder`).
        With ``seeds`` (params lead with the seed axis S) the first seed goes there — what the
        labelling app serves — and seed s >= 1 into its ``seed_<s>`` subfolder, so every seed of
        a run can be inspected afterwards."""
        folder = model_folder(self.path, task, method)
        if self.writes:
            _save_each_seed(folder, params, seeds, lambda path, one: save_model(path, model, one))
        return folder

    def save_policy(
        self, task: str, method: str, ppo: PPO, states: RunnerState, seeds: bool = True
    ) -> Path:
        """Writes ``task``'s trained ``method`` policy into the run folder
        (:func:`policy_folder`), with the task's constructor arguments under this config
        (:func:`~vpl_jax.harness.tasks.task_env_kwargs`), so it can be rebuilt to act. With
        ``seeds`` (``states`` lead with the seed axis S) seed 0 goes there and seed s >= 1 into
        its ``seed_<s>`` subfolder, as :meth:`save_reward_model`."""
        folder = policy_folder(self.path, task, method)
        if self.writes:
            kwargs = task_env_kwargs(self.config, task)
            _save_each_seed(
                folder,
                ppo.policy_params(states),
                seeds,
                lambda path, params: save_policy(path, ppo, params, task, method, kwargs),
            )
        return folder

    def write(self, notes: str = "") -> Path:
        """Writes ``metrics.json``, ``metrics.csv``, ``intervals.json``, ``summary.md`` and
        ``timing.json``; returns the run folder.

        ``metrics.json`` and ``intervals.json`` hold results only, so two runs of the same config
        and seed on the same device write byte-identical files; the wall time goes to
        ``timing.json``.
        """
        if not self.writes:
            return self.path
        header = {
            "experiment": self.experiment,
            "preset": self.config.preset,
            "seed": self.config.seed,
        }
        payload = {**header, "rows": self.rows}
        if self.warnings:
            payload["warnings"] = self.warnings
        with atomic_write(self.path / "metrics.json") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
        with atomic_write(self.path / "timing.json") as f:
            json.dump({"wall_time_s": round(time.time() - self._start, 2)}, f)
            f.write("\n")
        columns = list(_REQUIRED) + sorted({k for r in self.rows for k in r} - set(_REQUIRED))
        with atomic_write(self.path / "metrics.csv") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)
        intervals = interval_rows(self.rows)
        improvement = improvement_rows(self.rows)
        with atomic_write(self.path / "intervals.json") as f:
            json.dump(
                {
                    **header,
                    "confidence": CONFIDENCE,
                    "reps": REPS,
                    "intervals": intervals,
                    "improvement": improvement,
                },
                f,
                indent=1,
            )
            f.write("\n")
        with atomic_write(self.path / "summary.md") as f:
            f.write(self.summary(notes, intervals, improvement))
        return self.path

    def summary(
        self,
        notes: str = "",
        intervals: list[dict[str, Any]] | None = None,
        improvement: list[dict[str, Any]] | None = None,
    ) -> str:
        """Markdown: one table per metric (columns: user type; rows: method, qualified by the task
        and every optional field that varies within the metric, such as ``n_queries`` or
        ``round``; cells: the mean over seeds, and its 95 % interval ``[low, high]`` where the
        cell has two or more seeds), the probability of improvement of each pair of methods with
        two or more seeds each, then the figures and the experiment's notes. ``intervals`` and
        ``improvement`` are :func:`interval_rows` and :func:`improvement_rows` of the rows
        (computed when not given)."""
        intervals = interval_rows(self.rows) if intervals is None else intervals
        improvement = improvement_rows(self.rows) if improvement is None else improvement
        lines = [
            f"# {self.experiment} — run `{self.config.run_name}`",
            "",
            f"preset `{self.config.preset}`, seed {self.config.seed}, "
            f"{time.time() - self._start:.0f} s.",
            "",
        ]
        if any(r["num_seeds"] > 1 for r in intervals):
            lines += [
                "Cells: the mean over seeds and, where a cell has two or more seeds, its 95 % "
                "confidence interval `[low, high]` (percentile stratified bootstrap over seeds, "
                "as rliable; `intervals.json` has every cell).",
                "",
            ]
        lines += _metric_tables(intervals, lambda r: r["method"], _mean_cell)
        compared = [r for r in improvement if min(r["num_seeds"], r["num_seeds_versus"]) > 1]
        if compared:
            lines += [
                "## Probability of improvement",
                "",
                "P(a > b): how likely a seed of method a scores higher than a seed of method b "
                "(ties count half; for a metric where lower is better, read 1 − P), with its "
                "95 % interval over seeds. Around 0.5 with an interval that holds 0.5: no "
                "difference shown.",
                "",
            ]
            lines += _metric_tables(
                compared, lambda r: f"{r['method']} > {r['versus']}", _probability_cell, "###"
            )
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        if self.figures:
            lines += ["## Figures", ""] + [f"![{n}]({n}.png)" for n in self.figures] + [""]
        if notes:
            lines += [notes.rstrip(), ""]
        return "\n".join(lines)


def type_means(
    values: Any, type_id: Any, type_names: Sequence[str], axis: int = -1, overall: bool = True
) -> dict[str, np.ndarray]:
    """``{user type: f32[...]}``: ``values`` (one entry per user along ``axis``, e.g.
    ``f32[S, C, U]``) averaged over the users of each type of ``type_names`` (``type_id: i32[U]``
    indexes them), ignoring NaN (users without a score); a type with no users is left out. With
    ``overall``, ``"all"`` (every user) comes last."""
    values, type_id = np.asarray(values), np.asarray(type_id)
    axis = axis % values.ndim
    out = {}
    for t, name in enumerate(type_names):
        if np.any(type_id == t):
            members = (slice(None),) * axis + (type_id == t,)
            out[name] = np.nanmean(values[members], axis=axis)
    if overall:
        out["all"] = np.nanmean(values, axis=axis)
    return out


def _cells(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[float]]]:
    """Rows with a value grouped into cells, in the order first seen: ``(fields, values)`` with
    ``fields`` every field of the rows but ``seed`` and ``value``, ``values`` one per seed."""
    cells: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for r in rows:
        if r["value"] is None:
            continue
        fields = {k: v for k, v in r.items() if k not in ("seed", "value")}
        key = json.dumps(fields, sort_keys=True)
        cells.setdefault(key, (fields, []))[1].append(r["value"])
    return list(cells.values())


def interval_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell of ``rows`` (every field but ``seed`` and ``value``; rows without a value left
    out): the cell's fields with ``mean``, ``low``, ``high`` (the mean over seeds and its 95 %
    stratified-bootstrap interval, :func:`vpl_jax.intervals.seed_interval`) and ``num_seeds``.
    One seed gives ``low == high == mean`` and ``num_seeds`` 1."""
    out = []
    for fields, values in _cells(rows):
        interval = seed_interval(values)
        out.append(
            {
                **fields,
                "mean": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "num_seeds": len(values),
            }
        )
    return out


def improvement_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per pair of methods whose cells agree on every field but the method (each pair once, in
    the order the methods first appear): ``method``, ``versus``, the shared fields and
    ``probability``, ``low``, ``high`` — P(method > versus) over their seeds with its 95 %
    interval (:func:`vpl_jax.intervals.improvement_probability`) — with ``num_seeds`` and
    ``num_seeds_versus``."""
    groups: dict[str, tuple[dict[str, Any], list[tuple[str, list[float]]]]] = {}
    for fields, values in _cells(rows):
        shared = {k: v for k, v in fields.items() if k != "method"}
        key = json.dumps(shared, sort_keys=True)
        groups.setdefault(key, (shared, []))[1].append((fields["method"], values))
    out = []
    for shared, methods in groups.values():
        for i, (method, x) in enumerate(methods):
            for versus, y in methods[i + 1 :]:
                p = improvement_probability(x, y)
                out.append(
                    {
                        "method": method,
                        "versus": versus,
                        **shared,
                        "probability": p.estimate,
                        "low": p.low,
                        "high": p.high,
                        "num_seeds": len(x),
                        "num_seeds_versus": len(y),
                    }
                )
    return out


def _mean_cell(r: dict[str, Any]) -> str:
    if r["num_seeds"] < 2:
        return f"{r['mean']:.3f}"
    return f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"


def _probability_cell(r: dict[str, Any]) -> str:
    return f"{r['probability']:.2f} [{r['low']:.2f}, {r['high']:.2f}]"


def _metric_tables(
    rows: list[dict[str, Any]],
    head: Callable[[dict[str, Any]], str],
    cell: Callable[[dict[str, Any]], str],
    level: str = "##",
) -> list[str]:
    """Markdown lines: per metric of the aggregate ``rows``, a table with a column per user type
    and a row per ``head(row)``, qualified by every field that varies within the metric (the
    task, ``n_queries``, ``round``, …); cells ``cell(row)``."""
    by_metric: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_metric[r["metric"]].append(r)
    labels_of = set(_REQUIRED + _AGGREGATE) - {"task"}
    lines = []
    for metric, rows in by_metric.items():
        fields = {k for r in rows for k in r} - labels_of
        varying = sorted(k for k in fields if len({repr(r.get(k)) for r in rows}) > 1)
        cells: dict[tuple[str, str], str] = {}
        for r in rows:
            label = ", ".join([head(r)] + [f"{k}={r[k]}" for k in varying if k in r])
            cells[(label, r["user_type"])] = cell(r)
        labels = list(dict.fromkeys(m for m, _ in cells))
        types = list(dict.fromkeys(t for _, t in cells))
        lines += [f"{level} {metric}", "", "| method | " + " | ".join(types) + " |"]
        lines.append("|---" * (len(types) + 1) + "|")
        for m in labels:
            lines.append(f"| {m} | " + " | ".join(cells.get((m, t), "") for t in types) + " |")
        lines.append("")
    return lines


class RunFolderError(RuntimeError):
    """A run folder holds a completed run (and no ``--overwrite``), or another live run."""


class _RunLock:
    """``<run folder>/.lock`` holding this process's pid while a run writes there."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
        return False


def _live_holder(lock: Path) -> int | None:
    """The pid in ``lock`` if another process that is still running holds it, else None (no
    lock, an unreadable one, ours, or one left by a killed process)."""
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # exists, owned by someone else
        return pid
    return pid


def claim_run_folder(path: str | Path, overwrite: bool = False) -> _RunLock:
    """Makes ``path`` this run's folder, before anything is written or compiled.

    * A folder with a ``metrics.json`` holds a completed run: refused unless ``overwrite``,
      which deletes the folder first (so no figure of the old run stays behind).
    * A folder without one is an interrupted run: kept, so its checkpoints resume (they refuse
      a different config themselves).
    * ``.lock`` holds the pid of the run writing there; a second live run is refused, and a
      lock left by a killed process is taken over.

    Returns the lock, a context manager that releases it.
    """
    path = Path(path)
    lock = path / ".lock"
    holder = _live_holder(lock)
    if holder is not None:
        raise RunFolderError(
            f"run folder {path} is in use by process {holder} (another run of the same name); "
            "wait for it or choose another --run-name"
        )
    if (path / "metrics.json").exists():
        if not overwrite:
            raise RunFolderError(
                f"run folder {path} holds a completed run; pass --overwrite to replace it, or "
                "choose another --run-name"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    lock.unlink(missing_ok=True)  # left by a killed run (a live holder was refused above)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another run took it since
        raise RunFolderError(
            f"run folder {path} is in use by process {_live_holder(lock)} (another run of the "
            "same name); wait for it or choose another --run-name"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return _RunLock(lock)


def load_timing(path: str | Path) -> dict[str, Any]:
    """Reads a run folder's ``timing.json`` (``{"wall_time_s": ...}``)."""
    with open(Path(path) / "timing.json", encoding="utf-8") as f:
        return json.load(f)


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Reads a run's ``metrics.json`` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)
