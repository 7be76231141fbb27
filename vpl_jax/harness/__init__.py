"""The research harness: configs and CLI, tidy results and figures (progress from runtime).

An experiment script is a frozen config dataclass, a dict of presets and a ``main``::

    @dataclasses.dataclass(frozen=True)
    class Config(harness.ExperimentConfig):
        num_users: int = checked(32, Int(ge=2))  # what it accepts (vpl_jax.checks)
        '''Users drawn from the population.'''

    PRESETS = {"cpu": Config(), "paper": Config(num_users=512)}

    def main(config: Config, results: harness.RunResults) -> str:
        results.add(method="vpl", task="navigation", metric="heldout_accuracy", value=0.93)
        return "notes for summary.md"

    if __name__ == "__main__":
        harness.run_experiment("my_experiment", Config, PRESETS, main)
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from vpl_jax.checks import DataWarning
from vpl_jax.harness.config import (
    ChunkedPolicies,
    ConfigError,
    ExperimentConfig,
    check_checkpoint_every,
    parse,
)
from vpl_jax.harness.results import (
    RunFolderError,
    RunResults,
    claim_run_folder,
    dataset_path,
    improvement_rows,
    interval_rows,
    load_metrics,
    load_timing,
    model_folder,
    policy_folder,
    type_means,
)
from vpl_jax.harness.sweep import SweepPoint, sweep_points
from vpl_jax.harness.tasks import (
    TYPE_FIELDS,
    PopulationStudy,
    check_dataset_files,
    check_type_fields,
    check_user_types,
    load_registrations,
    reward_models,
    supported_tasks,
    task_dataset,
    task_env,
    task_env_kwargs,
    task_population,
)
from vpl_jax.runtime import sharding
from vpl_jax.runtime.progress import chunks, progress

C = TypeVar("C", bound=ExperimentConfig)

__all__ = [
    "TYPE_FIELDS",
    "ChunkedPolicies",
    "ConfigError",
    "ExperimentConfig",
    "PopulationStudy",
    "RunFolderError",
    "RunResults",
    "SweepPoint",
    "check_checkpoint_every",
    "check_dataset_files",
    "check_type_fields",
    "check_user_types",
    "chunks",
    "claim_run_folder",
    "dataset_path",
    "improvement_rows",
    "interval_rows",
    "load_metrics",
    "load_registrations",
    "load_timing",
    "model_folder",
    "parse",
    "policy_folder",
    "progress",
    "reward_models",
    "run_experiment",
    "supported_tasks",
    "sweep_points",
    "task_dataset",
    "task_env",
    "task_env_kwargs",
    "task_population",
    "type_means",
]


@contextlib.contextmanager
def _recording_data_warnings(into: list[str]):
    """Shows warnings as usual and appends each :class:`DataWarning`'s message to ``into``."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def record(message, category, *args, **kwargs):
            if issubclass(category, DataWarning) and str(message) not in into:
                into.append(str(message))
            show(message, category, *args, **kwargs)

        warnings.showwarning = record
        warnings.simplefilter("always", DataWarning)
        yield


def run_experiment(
    name: str,
    config_cls: type[C],
    presets: Mapping[str, C],
    main: Callable[[C, RunResults], str | None],
    argv: Sequence[str] | None = None,
    description: str | None = None,
) -> RunResults:
    """Parses the command line, validates, runs ``main`` and writes the results folder.

    ``main(config, results)`` adds rows and figures and may return markdown notes for
    ``summary.md``. The resolved config is written before ``main`` starts, the metrics after.
    ``main`` runs inside :func:`vpl_jax.runtime.sharding.use_devices` with the run's
    ``--devices``, so the library's trainers split their seeds across them; on several
    processes every process runs ``main`` and only process 0 writes.
    """
    recorded: list[str] = []
    with _recording_data_warnings(recorded):
        config = parse(
            config_cls, presets, argv, prog=f"experiments/{name}.py", description=description
        )
    results = RunResults(name, config)
    results.warnings = recorded
    pool = sharding.device_pool(config.devices)
    lock = _claim_run_folder(results, config.overwrite)
    with lock, _recording_data_warnings(recorded), sharding.use_devices(pool):
        if results.writes:
            print(f"devices: {_describe(pool, config)}")
        results.write_config()
        notes = main(config, results)
        path = results.write(notes or "")
    if results.writes:
        print(f"results written to {path}/")
    return results


def _claim_run_folder(results: RunResults, overwrite: bool):
    """The run folder's lock (:func:`claim_run_folder`), taken by process 0 (the others write
    nothing); a refused folder exits with status 2 on every process."""
    lock, error = contextlib.nullcontext(), None
    if results.writes:
        try:
            lock = claim_run_folder(results.path, overwrite)
        except RunFolderError as e:
            error = e
    if sharding.process_zero_says(error is not None):
        print(f"error: {error or 'process 0 could not claim the run folder'}", file=sys.stderr)
        raise SystemExit(2)
    return lock


def _describe(pool, config: ExperimentConfig) -> str:
    """E.g. ``4 cpu devices, 2 processes; num_seeds=6 split across 2``: where the seeds go."""
    processes = len({d.process_index for d in pool})
    kinds = "/".join(sorted({d.platform for d in pool}))
    text = f"{len(pool)} {kinds} device{'s' * (len(pool) > 1)}"
    text += f", {processes} processes" if processes > 1 else ""
    for name in config.SEED_FIELDS:
        n = getattr(config, name)
        text += f"; {name}={n} split across {sharding.split_size(n, len(pool), processes)}"
    return text
