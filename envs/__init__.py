"""Brax tasks with named per-step features, installed as ``vpl_jax.envs``.

    >>> from vpl_jax import envs
    >>> env = envs.make("navigation", num_goals=2)
    >>> env.feature_names
    ('progress_a', 'progress_b', 'safety', 'courtesy', 'comfort')

A new task is a ``FeatureEnv`` subclass plus one ``register`` call (see the README). A *variant*
of a task — the same class with other constructor arguments — derives from it and inherits its
user types::

    envs.register("highway_4lanes", functools.partial(envs.Highway, num_lanes=4, num_cars=10))
    envs.parent("highway_4lanes")   # 'highway' (found from the partial's class; or parent=...)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv
from vpl_jax.envs.highway import Highway
from vpl_jax.envs.locomotion import Locomotion
from vpl_jax.envs.navigation import Navigation

__all__ = [
    "BehaviourPolicy",
    "FeatureEnv",
    "Highway",
    "Locomotion",
    "Navigation",
    "lineage",
    "make",
    "names",
    "parent",
    "register",
]

_REGISTRY: dict[str, Callable[..., FeatureEnv]] = {
    "navigation": Navigation,
    "highway": Highway,
    "locomotion": Locomotion,
}


_PARENTS: dict[str, str] = {}


def register(name: str, factory: Callable[..., FeatureEnv], parent: str | None = None) -> None:
    """Registers a task constructor under ``name`` (raises if the name is taken).

    ``parent`` names the registered task this one is a variant of (it inherits that task's user
    types). Left out, a ``functools.partial`` of a registered task's class derives from that
    task; anything else is a task of its own.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"task name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    if parent is None and isinstance(factory, functools.partial):
        parent = next((n for n, f in _REGISTRY.items() if f is factory.func), None)
    if parent is not None and parent not in _REGISTRY:
        raise ValueError(f"parent task {parent!r} of {name!r} is not registered; known: {names()}")
    _REGISTRY[name] = factory
    if parent is not None:
        _PARENTS[name] = parent
    _make_cached.cache_clear()


def parent(name: str) -> str | None:
    """The task ``name`` is a variant of, or None."""
    _check_known(name)
    return _PARENTS.get(name)


def lineage(name: str) -> tuple[str, ...]:
    """``name`` and the tasks it derives from, the root (a task of its own) last."""
    chain = [name]
    while (up := parent(chain[-1])) is not None:
        chain.append(up)
    return tuple(chain)


def names() -> tuple[str, ...]:
    """Names of the registered tasks."""
    return tuple(sorted(_REGISTRY))


def make(name: str, **kwargs) -> FeatureEnv:
    """Builds the task registered as ``name``; unknown names raise with the known ones.

    Tasks hold no mutable state, so the same ``(name, kwargs)`` returns the same instance: jitted
    functions that take the task as a static argument then compile once per process.
    """
    _check_known(name)
    return _make_cached(name, tuple(sorted(kwargs.items())))


def _check_known(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {list(names())}")


@functools.cache
def _make_cached(name: str, kwargs: tuple) -> FeatureEnv:
    return _REGISTRY[name](**dict(kwargs))
