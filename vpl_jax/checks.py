"""Type predicates for config validation, shared by every package (a leaf: imports nothing of
the project)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy int or float), not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """Whether ``value`` is a real number (:func:`is_number`) that is neither NaN nor inf."""
    return is_number(value) and math.isfinite(value)


def check_field_types(config, name: str | None = None) -> None:
    """Raises ``ValueError`` naming ``Class.field`` (or ``name.field``) unless every field of the
    dataclass ``config`` whose default is an int holds an int and every field whose default is
    a float holds a finite number: what a config's range checks assume (a string there raised a
    bare ``TypeError`` from a comparison, 2.5 steps failed deep in a trace)."""
    prefix = name or type(config).__name__
    for field in dataclasses.fields(config):
        value, default = getattr(config, field.name), field.default
        if isinstance(default, bool):
            continue
        if isinstance(default, int) and not is_int(value):
            raise ValueError(f"{prefix}.{field.name}={value!r}: must be an integer")
        if isinstance(default, float) and not is_finite_number(value):
            raise ValueError(f"{prefix}.{field.name}={value!r}: must be a finite number")


def valid_widths(hidden) -> bool:
    """Whether ``hidden`` is a sequence of MLP hidden widths, each an int >= 1 (may be empty)."""
    try:
        widths = tuple(hidden)
    except TypeError:
        return False
    return all(is_int(w) and w >= 1 for w in widths)


class DataWarning(UserWarning):
    """Input or data that is legitimate but suspicious (every label 'equal', rewards at a scale
    PPO cannot learn from unnormalised): the run goes on, the warning is shown, and
    :func:`vpl_jax.harness.run_experiment` records it in the run's results."""


class TrainingDivergedError(ValueError):
    """A training's loss became NaN or inf (a reward model's, or PPO's): its params are not a
    trained model, so the run stops instead of reporting numbers of a broken one."""
