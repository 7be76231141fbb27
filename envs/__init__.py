"""Brax tasks with named per-step features, installed as ``vpl_jax.envs``.

    >>> from vpl_jax import envs
    >>> env = envs.make("navigation", num_goals=2)
    >>> env.feature_names
    ('progress_a', 'progress_b', 'safety', 'courtesy', 'comfort')

A new task is a ``FeatureEnv`` subclass plus one ``register`` call (see the README).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv
from vpl_jax.envs.highway import Highway
from vpl_jax.envs.locomotion import Locomotion
from vpl_jax.envs.navigation import Navigation

__all__ = ["BehaviourPolicy", "FeatureEnv", "make", "names", "register"]

_REGISTRY: dict[str, Callable[..., FeatureEnv]] = {
    "navigation": Navigation,
    "highway": Highway,
    "locomotion": Locomotion,
}


def register(name: str, factory: Callable[..., FeatureEnv]) -> None:
    """Registers a task constructor under ``name`` (raises if the name is taken)."""
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory
    _make_cached.cache_clear()


def names() -> tuple[str, ...]:
    """Names of the registered tasks."""
    return tuple(sorted(_REGISTRY))


def make(name: str, **kwargs) -> FeatureEnv:
    """Builds the task registered as ``name``; unknown names raise with the known ones.

    Tasks hold no mutable state, so the same ``(name, kwargs)`` returns the same instance: jitted
    functions that take the task as a static argument then compile once per process.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {list(names())}")
    return _make_cached(name, tuple(sorted(kwargs.items())))


@functools.cache
def _make_cached(name: str, kwargs: tuple) -> FeatureEnv:
    return _REGISTRY[name](**dict(kwargs))
