"""Tasks, populations and reward models named by an experiment's config, the same way in every
experiment.

A population study's config subclasses :class:`PopulationStudy` and declares ``tasks``, one
``<task>_types`` field per task it supports (the default population: those user types in equal
shares), ``beta`` (every user's Boltzmann rationality) and, for navigation, ``num_goals``.
:class:`PopulationStudy` adds what every such experiment accepts on its command line:

* ``--population SPEC ...``: per task, any population in one syntax
  (:mod:`vpl_jax.users.spec`: types with shares, equal shares, or a Gaussian over theta);
* ``--register FILE.py|MODULE ...``: code imported first, which registers user types
  (``register_user_type``) and task variants (``envs.register``), so ``--tasks`` and
  ``--population`` can name them; a variant inherits its parent task's user types;
* ``--weight-noise X``: every mixture type's relative spread of individual weights.

:func:`task_env` and :func:`task_population` turn such a config into the task and its population.
An experiment that also takes dataset files (a ``dataset`` field: ``--dataset PATH ...``, e.g.
simulated users merged with real people's answers by :func:`vpl_jax.label.merge_people`) checks
them with :func:`check_dataset_files` and gets each task's data from :func:`task_dataset`: the
file of that task, or a dataset built from the task's population.
:func:`reward_models` builds the reward models of a config's ``sizes`` (its ``validate`` calls
it, so a bad size fails before anything compiles).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vpl_jax import envs
from vpl_jax import rewards as R
from vpl_jax.checks import Float, check_config, checked
from vpl_jax.data.dataset import (
    DatasetConfig,
    DatasetFileError,
    PreferenceDataset,
    build_dataset,
    check_users_per_type,
    load_dataset,
)
from vpl_jax.harness.config import ConfigError, ExperimentConfig
from vpl_jax.users import Population, get_user_type, parse_population, population_from_spec

#: The config field holding each (root) task's user types.
TYPE_FIELDS = {
    "navigation": "navigation_types",
    "highway": "highway_types",
    "locomotion": "locomotion_types",
}


@dataclasses.dataclass(frozen=True)
class PopulationStudy(ExperimentConfig):
    """Fields of every experiment that draws simulated users of registered tasks."""

    register: tuple[str, ...] = ()
    """Python files (path/to/file.py) or modules (package.module) imported first; they register
    user types (vpl_jax.users.register_user_type) and task variants (vpl_jax.envs.register)."""
    population: tuple[str, ...] = ()
    """Per task, its population (replaces <task>_types): TASK:TYPE=SHARE,... (shares sum to 1),
    TASK:TYPE,... (equal shares) or TASK:gaussian:FEATURE=MEAN,...[:std=S] (theta ~ N)."""
    weight_noise: float | None = checked(None, Float(ge=0, optional=True))
    """Every user type's relative spread of individual users' weights (None: each type's own)."""

    def validate(self):
        super().validate()
        load_registrations(self.register)
        return self


@functools.cache
def _import(entry: str) -> None:
    """Imports a registration file (by its resolved path) or module once per process (a second
    registration of the same names would be an error)."""
    if entry.endswith(".py"):
        path = Path(entry)
        if not path.is_file():
            raise FileNotFoundError(f"no such file {entry!r}")
        name = f"_vpl_jax_registered_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(entry)


def load_registrations(entries: Sequence[str]) -> None:
    """Imports each of ``entries`` (the ``register`` field); a file or module that fails to
    import raises :class:`ConfigError` naming it and the error."""
    for entry in entries:
        try:
            # One file under two spellings (relative, absolute, via a symlink) is imported once.
            _import(str(Path(entry).resolve()) if entry.endswith(".py") else entry)
        except Exception as e:  # any failure of user code is a bad value of this field
            raise ConfigError(
                f"register={entry!r}: failed to import: {type(e).__name__}: {e}"
            ) from e


def root_task(task: str) -> str:
    """The task ``task`` derives from at the root of its lineage (itself if not a variant)."""
    return envs.lineage(task)[-1]


def supported_tasks(config_cls: type) -> list[str]:
    """The registered tasks (variants too) whose root task's ``<task>_types`` field
    ``config_cls`` declares."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    return [t for t in envs.names() if TYPE_FIELDS.get(root_task(t)) in fields]


def task_env_kwargs(config: Any, task: str) -> dict[str, Any]:
    """The constructor arguments ``config`` gives ``task``: navigation's ``num_goals``; none for
    any other task (a variant is built as registered)."""
    return {"num_goals": config.num_goals} if task == "navigation" else {}


def task_env(config: Any, task: str) -> envs.FeatureEnv:
    """The task (navigation with ``config.num_goals`` goals; a variant as registered), built
    once per argument set."""
    return envs.make(task, **task_env_kwargs(config, task))


def check_user_types(name: str, types: Sequence[str], task: str) -> None:
    """``types`` (the config field ``name``) are registered user types of ``task``, at least
    one, none repeated (a repeated type would silently collapse into one)."""
    for t in types:
        try:
            get_user_type(task, t)
        except ValueError as e:  # unknown type: the message names the known ones
            raise ConfigError(f"{name}: {e}") from None
    if not types:
        raise ConfigError(f"{name}: give at least one user type of task {task!r}")
    if len(set(types)) != len(types):
        raise ConfigError(f"{name}={list(types)}: user types must not repeat")


def _population_specs(config: Any) -> dict[str, str]:
    """``{task: spec}`` of the ``population`` field, checked: valid syntax, a task the config
    runs, one spec per task."""
    specs: dict[str, str] = {}
    tasks = list(getattr(config, "tasks", ()))
    for spec in getattr(config, "population", ()):
        try:
            task = parse_population(spec).task
        except ValueError as e:
            raise ConfigError(f"population: {e}") from None
        if task not in tasks:
            raise ConfigError(f"population={spec!r}: task {task!r} is not one of tasks={tasks}")
        if task in specs:
            raise ConfigError(f"population: task {task!r} is given two populations")
        specs[task] = spec
    return specs


def check_type_fields(config: Any) -> None:
    """Checks every ``<task>_types`` field ``config`` declares (:func:`check_user_types`), also
    those of tasks it does not run now, and the syntax of its ``population`` specs."""
    for task, field in TYPE_FIELDS.items():
        if hasattr(config, field):
            check_user_types(field, getattr(config, field), task)
    _population_specs(config)


def task_population(config: Any, task: str) -> Population:
    """The population of ``task``: its ``--population`` spec if given, else an equal mixture of
    ``config.<root task>_types``; every user with ``beta = config.beta`` if set (else each user
    type's own), and the config's ``weight_noise``, if set. A bad spec, unknown or repeated user
    types, or a task without user types raise :class:`ConfigError` naming the field."""
    env = task_env(config, task)
    beta = getattr(config, "beta", None)
    noise = getattr(config, "weight_noise", None)
    spec = _population_specs(config).get(task)
    if spec is None:
        field = TYPE_FIELDS.get(root_task(task))
        if field is None or not hasattr(config, field):
            raise ConfigError(
                f"tasks: task {task!r} has no default population here; give one "
                f"with --population {task}:TYPE=SHARE,..."
            )
        types = getattr(config, field)
        check_user_types(field, types, task)
        spec = f"{task}:{','.join(types)}"
        name = field
    else:
        name = "population"
    try:
        population = population_from_spec(spec, env.feature_names, beta=beta, weight_noise=noise)
    except ValueError as e:
        raise ConfigError(f"{name}: {e}") from None
    if isinstance(getattr(config, "data", None), DatasetConfig):
        try:
            check_users_per_type(population, config.data, "data.num_users")
        except ValueError as e:
            raise ConfigError(f"{e} (task {task!r})") from None
    return population


def _dataset_files(config: Any) -> dict[str, PreferenceDataset]:
    """``{task: dataset}`` of the config's ``dataset`` files, loaded and checked (see
    :func:`check_dataset_files`)."""
    datasets: dict[str, PreferenceDataset] = {}
    tasks = list(getattr(config, "tasks", ()))
    for path in getattr(config, "dataset", ()):
        try:
            dataset = load_dataset(path)
        except DatasetFileError as e:
            raise ConfigError(f"dataset={path!r}: {e}") from None
        task = dataset.meta.task
        if task not in tasks:
            raise ConfigError(
                f"dataset={path!r} holds task {task!r}, which is not one of tasks={tasks}"
            )
        if task in datasets:
            raise ConfigError(f"dataset: task {task!r} is given two dataset files")
        features = task_env(config, task).feature_names
        if tuple(dataset.meta.feature_names) != tuple(features):
            raise ConfigError(
                f"dataset={path!r} has features {list(dataset.meta.feature_names)}; task "
                f"{task!r} here has {list(features)}"
            )
        data = getattr(config, "data", None)
        if isinstance(data, DatasetConfig) and dataset.context_size != data.context_size:
            raise ConfigError(
                f"dataset={path!r} has {dataset.context_size} context pairs per user; "
                f"data.context_size is {data.context_size} (set --data.context-size "
                f"{dataset.context_size})"
            )
        is_test = np.asarray(dataset.is_test)
        if is_test.all() or not is_test.any():
            raise ConfigError(
                f"dataset={path!r} has {int((~is_test).sum())} training and "
                f"{int(is_test.sum())} test users; it needs both"
            )
        datasets[task] = dataset
    return datasets


def check_dataset_files(config: Any) -> None:
    """Checks the config's ``dataset`` files (:func:`vpl_jax.data.save_dataset`'s ``.npz``): each
    loads, holds one of ``config.tasks`` (one file per task) with that task's features, has
    ``config.data.context_size`` context pairs per user, and has training and test users. Raises
    :class:`ConfigError` naming the field."""
    _dataset_files(config)


def task_dataset(config: Any, task: str, key) -> PreferenceDataset:
    """``task``'s data: the config's ``dataset`` file of that task if it has one, else a dataset
    of ``config.data``'s sizes built with ``key`` from the task's population
    (:func:`task_population`)."""
    given = _dataset_files(config).get(task)
    if given is not None:
        return given
    env, population = task_env(config, task), task_population(config, task)
    return build_dataset(key, env, population, config.data, task=task)


def reward_models(
    sizes: R.ModelSizes, methods: Iterable[str], context_size: int, context_from: str
) -> dict[str, R.RewardModel]:
    """Each of ``methods``' reward model, built from the config's ``sizes`` with the context
    size the experiment sets (``context_size``, taken from the field ``context_from``).

    Validates ``sizes`` first and raises :class:`ConfigError` naming the field — also for
    ``sizes.context_size``, which every experiment sets itself, so a value given for it would
    be ignored.
    """
    if sizes.context_size != R.ModelSizes().context_size:
        raise ConfigError(
            f"sizes.context_size={sizes.context_size}: set by the experiment from "
            f"{context_from} ({context_size}); change that instead"
        )
    check_config(sizes, "sizes")
    sizes = dataclasses.replace(sizes, context_size=context_size)
    models = {}
    for method in methods:
        try:
            models[method] = R.make_model(method, sizes)
        except ValueError as e:  # a model's own check (e.g. VPL's) on a size it gets
            raise ConfigError(f"sizes ({method}): {e}") from None
    return models
