"""Tasks and populations named by an experiment's config, the same way in every experiment.

A population study's config has ``tasks``, one ``<task>_types`` field per task it supports (the
user types, in equal shares), ``beta`` (every user's Boltzmann rationality) and, for navigation,
``num_goals``; these two functions turn such a config into the task and its population.
"""

from __future__ import annotations

from typing import Any

from vpl_jax import envs
from vpl_jax.users import Population

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


def task_population(config: Any, task: str) -> Population:
    """An equal mixture of ``config.<task>_types``, every user with ``beta = config.beta``.
    Unknown user types raise ``ValueError`` naming the known ones."""
    env = task_env(config, task)
    types = getattr(config, TYPE_FIELDS[task])
    return Population.mixture(task, env.feature_names, types, overrides={"beta": config.beta})
