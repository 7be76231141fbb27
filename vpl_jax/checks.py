"""Config validation, shared by every package (a leaf: imports nothing of the project).

Every config is a frozen dataclass whose fields declare what they accept, next to the field::

    @dataclasses.dataclass(frozen=True)
    class TrainConfig:
        num_epochs: int = checked(100, Int(ge=1))
        learning_rate: float = checked(1e-3, Float(gt=0))
        max_grad_norm: float | None = checked(1.0, Float(gt=0, optional=True))
        monitor: str = checked("nll", Choice(MONITORS))

        def validate(self):
            check_config(self)  # every declared rule, then the cross-field rules as code
            ...

:func:`check_config` checks each field against its rule (:class:`Int`, :class:`Float`,
:class:`Choice`, :class:`Choices`, :class:`Each`) and every nested config field by field, and
raises :class:`ConfigError` naming the first bad one, its value and what is allowed:
``TrainConfig.learning_rate=inf: must be a finite number > 0`` in the API, and
``reward_train.learning_rate=inf: ...`` for a field of an experiment's config, which names its
fields as its command line does. Rules that relate fields (``K + M <= P``, a multiple of
another field) stay short explicit code after the declarative pass; a rule object's
:meth:`~Rule.check` serves those that depend on a registry or on another field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

#: The key of a field's rule in its ``dataclasses.field`` metadata.
RULE = "vpl_jax.rule"


class ConfigError(ValueError):
    """A config field has a value outside its allowed set (a ``ValueError``, so callers that
    catch those keep working)."""


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy int or float), not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """Whether ``value`` is a real number (:func:`is_number`) that is neither NaN nor inf."""
    return is_number(value) and math.isfinite(value)


# --- rules ----------------------------------------------------------------------------------------
class Rule:
    """What one field accepts: :meth:`ok` says whether a value is allowed, :attr:`allowed`
    says in words what is."""

    allowed: str

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, name: str, value: Any) -> None:
        """Raises :class:`ConfigError` ``"{name}={value!r}: must be {allowed}"`` unless ``ok``."""
        if not self.ok(value):
            raise ConfigError(f"{name}={value!r}: must be {self.allowed}")


def _show(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _bounds(rule) -> str:
    """The range of ``rule``'s ``ge``/``gt``/``le``/``lt`` in words: ``>= 1``, ``in (0, 1]``."""
    low = ("[", rule.ge) if rule.ge is not None else ("(", rule.gt)
    high = ("]", rule.le) if rule.le is not None else (")", rule.lt)
    if low[1] is not None and high[1] is not None:
        return f" in {low[0]}{_show(low[1])}, {_show(high[1])}{high[0]}"
    if low[1] is not None:
        return f" {'>=' if low[0] == '[' else '>'} {_show(low[1])}"
    if high[1] is not None:
        return f" {'<=' if high[0] == ']' else '<'} {_show(high[1])}"
    return ""


def _within(rule, value) -> bool:
    return (
        (rule.ge is None or value >= rule.ge)
        and (rule.gt is None or value > rule.gt)
        and (rule.le is None or value <= rule.le)
        and (rule.lt is None or value < rule.lt)
    )


@dataclasses.dataclass(frozen=True)
class Int(Rule):
    """An integer (not a bool) within the bounds (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``:
    <), or None if ``optional``."""

    ge: int | None = None
    gt: int | None = None
    le: int | None = None
    lt: int | None = None
    optional: bool = False

    def ok(self, value) -> bool:
        if value is None:
            return self.optional
        return is_int(value) and _within(self, value)

    @property
    def allowed(self) -> str:
        return f"an integer{_bounds(self)}" + (", or None" if self.optional else "")


@dataclasses.dataclass(frozen=True)
class Float(Rule):
    """A real number (an int too, not a bool) within the bounds; never NaN; ``inf`` only if
    not ``finite`` (``beta = inf``: rational users); None if ``optional``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    finite: bool = True
    optional: bool = False

    def ok(self, value) -> bool:
        if value is None:
            return self.optional
        if not is_number(value) or math.isnan(value) or (self.finite and math.isinf(value)):
            return False
        return _within(self, value)

    @property
    def allowed(self) -> str:
        kind = "a finite number" if self.finite else "a number"
        inf = "" if self.finite else " (inf allowed)"
        return f"{kind}{_bounds(self)}{inf}" + (", or None" if self.optional else "")


@dataclasses.dataclass(frozen=True)
class Choice(Rule):
    """One of ``values``."""

    values: tuple

    def ok(self, value) -> bool:
        return value in self.values

    @property
    def allowed(self) -> str:
        return f"one of {list(self.values)}"

    def check(self, name: str, value: Any) -> None:
        if not self.ok(value):
            raise ConfigError(f"{name}={value!r}: allowed values are {list(self.values)}")


@dataclasses.dataclass(frozen=True)
class Choices(Rule):
    """A tuple of at least ``min_count`` of ``values``, none repeated (a repeated method or task
    would run twice, or collapse into one)."""

    values: tuple
    min_count: int = 1

    def ok(self, value) -> bool:
        return (
            isinstance(value, tuple | list)
            and len(value) >= self.min_count
            and all(Choice(self.values).ok(v) for v in value)
            and len(set(value)) == len(value)
        )

    @property
    def allowed(self) -> str:
        return f"at least {self.min_count} of {list(self.values)}, none repeated"

    def check(self, name: str, value: Any) -> None:
        allowed = list(self.values)
        if not isinstance(value, tuple | list):
            raise ConfigError(f"{name}={value!r}: must be a tuple of values from {allowed}")
        if len(value) < self.min_count:
            raise ConfigError(f"{name}: give at least {self.min_count} of {allowed}")
        bad = [v for v in value if not Choice(self.values).ok(v)]
        if bad:
            raise ConfigError(f"{name}: unknown value(s) {bad}; allowed values are {allowed}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{name}={list(value)}: values must not repeat")


@dataclasses.dataclass(frozen=True)
class Each(Rule):
    """A tuple (or list) of at least ``min_count`` values, each allowed by ``rule`` (network
    widths: ``Each(Int(ge=1))``)."""

    rule: Rule
    min_count: int = 0

    def ok(self, value) -> bool:
        return (
            isinstance(value, tuple | list)
            and len(value) >= self.min_count
            and all(self.rule.ok(v) for v in value)
        )

    @property
    def allowed(self) -> str:
        count = {0: "a tuple", 1: "a non-empty tuple"}.get(
            self.min_count, f"a tuple of at least {self.min_count} entries"
        )
        return f"{count}, each entry {self.rule.allowed}"


#: MLP hidden widths, each an integer >= 1 (empty: a linear network).
WIDTHS = Each(Int(ge=1))


def checked(default: Any = dataclasses.MISSING, rule: Rule | None = None, **field_kwargs) -> Any:
    """A dataclass field (``dataclasses.field(default=default, **field_kwargs)``) whose value
    :func:`check_config` checks against ``rule``."""
    return dataclasses.field(default=default, metadata={RULE: rule}, **field_kwargs)


def rule_of(cls: type, name: str) -> Rule | None:
    """The rule the dataclass ``cls`` declares on its field ``name`` (None: none)."""
    return cls.__dataclass_fields__[name].metadata.get(RULE)


def check_config(config: Any, where: str | None = None) -> None:
    """Checks every field of the dataclass ``config`` against its declared rule, and the fields
    of every nested config, in field order; raises :class:`ConfigError` naming the first bad
    one as ``where.field`` (``where``: the class name by default; ``""`` names top-level fields
    bare, as an experiment's command line spells them)."""
    where = type(config).__name__ if where is None else where
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        name = f"{where}.{field.name}" if where else field.name
        rule = field.metadata.get(RULE)
        if rule is not None:
            rule.check(name, value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_config(value, name)


class DataWarning(UserWarning):
    """Input or data that is legitimate but suspicious (every label 'equal', rewards at a scale
    PPO cannot learn from unnormalised): the run goes on, the warning is shown, and
    :func:`vpl_jax.harness.run_experiment` records it in the run's results."""


class TrainingDivergedError(ValueError):
    """A training's loss became NaN or inf (a reward model's, or PPO's): its params are not a
    trained model, so the run stops instead of reporting numbers of a broken one."""
