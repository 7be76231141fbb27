"""Tasks, populations and reward models named by an experiment's config, the same way in every
experiment.

A population study's config has ``tasks``, one ``<task>_types`` field per task it supports (the
user types, in equal shares), ``beta`` (every user's Boltzmann rationality) and, for navigation,
``num_goals``; :func:`task_env` and :func:`task_population` turn such a config into the task and
its population. :func:`reward_models` builds the reward models of a config's ``sizes`` (its
``validate`` calls it, so a bad size fails before anything compiles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from vpl_jax import envs
from vpl_jax import rewards as R
from vpl_jax.harness.config import ConfigError
from vpl_jax.users import Population, get_user_type

#: The config field holding each task's user types.
TYPE_FIELDS = {
    "navigation": "navigation_types",
    "highway": "highway_types",
    "locomotion": "locomotion_types",
}


def supported_tasks(config_cls: type) -> list[str]:
    """The tasks whose ``<task>_types`` field ``config_cls`` declares."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    return [task for task, field in TYPE_FIELDS.items() if field in fields]


def task_env(config: Any, task: str) -> envs.FeatureEnv:
    """The task (navigation with ``config.num_goals`` goals), built once per argument set."""
    if task == "navigation":
        return envs.make(task, num_goals=config.num_goals)
    return envs.make(task)


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


def check_type_fields(config: Any) -> None:
    """Checks every ``<task>_types`` field ``config`` declares (:func:`check_user_types`), also
    those of tasks it does not run now."""
    for task in supported_tasks(type(config)):
        check_user_types(TYPE_FIELDS[task], getattr(config, TYPE_FIELDS[task]), task)


def task_population(config: Any, task: str) -> Population:
    """An equal mixture of ``config.<task>_types``, every user with ``beta = config.beta``.
    Unknown or repeated user types raise :class:`ConfigError` naming the field (and the known
    types)."""
    env = task_env(config, task)
    types = getattr(config, TYPE_FIELDS[task])
    check_user_types(TYPE_FIELDS[task], types, task)
    return Population.mixture(task, env.feature_names, types, overrides={"beta": config.beta})


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
    sizes.validate()
    sizes = dataclasses.replace(sizes, context_size=context_size)
    models = {}
    for method in methods:
        try:
            models[method] = R.make_model(method, sizes)
        except ValueError as e:  # a model's own check (e.g. VPL's) on a size it gets
            raise ConfigError(f"sizes ({method}): {e}") from None
    return models
