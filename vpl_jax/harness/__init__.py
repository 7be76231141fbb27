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
)
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
from vpl_jax.runtime.progress import chunks, progress

C = TypeVar("C", bound=ExperimentConfig)

__all__ = [
    "TYPE_FIELDS",
    "ConfigError",
    "ExperimentConfig",
    "PopulationStudy",
    "RunFolderError",
    "RunResults",
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
    "task_dataset",
    "task_env",
    "task_env_kwargs",
    "task_population",
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
    """
    recorded: list[str] = []
    with _recording_data_warnings(recorded):
        config = parse(
            config_cls, presets, argv, prog=f"experiments/{name}.py", description=description
        )
    results = RunResults(name, config)
    results.warnings = recorded
    try:
        lock = claim_run_folder(results.path, config.overwrite)
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    with lock, _recording_data_warnings(recorded):
        results.write_config()
        notes = main(config, results)
        path = results.write(notes or "")
    print(f"results written to {path}/")
    return results
