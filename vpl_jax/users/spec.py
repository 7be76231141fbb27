"""A population written as one string: the command line's syntax, the same for every task.

    highway:aggressive=0.7,cautious=0.2,lawful=0.1      registered types with shares (sum 1)
    navigation:goal_a,goal_b                             registered types, equal shares
    highway:gaussian:safety=1,efficiency=0.5:std=0.3     theta ~ N(mean, std^2 I); features not
                                                         named have mean 0
    highway:gaussian:safety=1,law=0.5:std=safety=0.2,law=0.4   a spread per feature (others 0)

:func:`parse_population` checks the syntax (no task needed); :func:`population_from_spec` resolves
it against a task: registered user types (a task variant sees its parent's, see
``envs.register``) and feature names. Both raise ``ValueError`` saying what is wrong and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from vpl_jax.users.human import HumanModel
from vpl_jax.users.population import Population, user_types

#: The name of a continuous population's single type.
GAUSSIAN = "gaussian"
_SYNTAX = (
    "TASK:TYPE=SHARE,TYPE=SHARE,... (shares sum to 1), TASK:TYPE,TYPE,... (equal shares) or "
    "TASK:gaussian:FEATURE=MEAN,...[:std=S or :std=FEATURE=S,...]"
)


@dataclasses.dataclass(frozen=True)
class PopulationSpec:
    """A parsed population string: ``shares`` for a mixture, else ``mean`` and ``std`` for a
    Gaussian over theta (``std`` a number for every feature or a number per feature name)."""

    task: str
    shares: Mapping[str, float] | None = None
    mean: Mapping[str, float] | None = None
    std: float | Mapping[str, float] = 0.0

    @property
    def is_mixture(self) -> bool:
        return self.shares is not None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}={text!r} must be finite")
    return value


def _assignments(text: str, what: str) -> dict[str, float]:
    """``a=1,b=2`` as a dict; names repeat never."""
    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{what}: {item!r} is not NAME=NUMBER")
        if name in out:
            raise ValueError(f"{what}: {name!r} is given twice")
        out[name] = _number(value.strip(), f"{what} {name}")
    return out


def parse_population(spec: str) -> PopulationSpec:
    """The :class:`PopulationSpec` of ``spec`` (syntax in the module docstring)."""
    if not isinstance(spec, str):
        raise ValueError(f"population {spec!r} must be a string: {_SYNTAX}")
    task, sep, body = spec.strip().partition(":")
    if not sep or not task or not body:
        raise ValueError(f"population {spec!r}: expected {_SYNTAX}")
    if body.startswith(f"{GAUSSIAN}:"):
        parts = body.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"population {spec!r}: expected {_SYNTAX}")
        mean = _assignments(parts[1], f"population {spec!r} mean")
        std: float | dict[str, float] = 0.0
        if len(parts) == 3:
            key, sep, value = parts[2].partition("=")
            if key != "std" or not sep:
                raise ValueError(f"population {spec!r}: the spread is written std=S")
            std = (
                _assignments(value, f"population {spec!r} std")
                if "=" in value
                else _number(value, f"population {spec!r} std")
            )
        spreads = std.values() if isinstance(std, dict) else [std]
        if any(s < 0 for s in spreads):
            raise ValueError(f"population {spec!r}: std must be >= 0")
        return PopulationSpec(task=task, mean=mean, std=std)
    if "=" in body:
        shares = _assignments(body, f"population {spec!r} share of")
        if any(v < 0 for v in shares.values()):
            raise ValueError(f"population {spec!r}: shares must be >= 0, got {shares}")
        if abs(sum(shares.values()) - 1.0) > 1e-6:
            raise ValueError(
                f"population {spec!r}: shares sum to {sum(shares.values()):g}; they must sum to 1"
            )
        return PopulationSpec(task=task, shares=shares)
    names = [n.strip() for n in body.split(",")]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"population {spec!r}: user types must be non-empty and not repeat")
    return PopulationSpec(task=task, shares={n: 1.0 / len(names) for n in names})


def population_from_spec(
    spec: str | PopulationSpec,
    feature_names: Sequence[str],
    beta: float | None = None,
    weight_noise: float | None = None,
) -> Population:
    """The :class:`Population` of ``spec`` for a task with ``feature_names``.

    Args:
      spec: a population string or its :class:`PopulationSpec`.
      feature_names: the task's ``feature_names``.
      beta: every user's Boltzmann rationality (inf: rational labels); None keeps each user
        type's own (a Gaussian population's users are then rational).
      weight_noise: a mixture's per-type ``weight_noise`` override (None: each type's own).
        Not used by a Gaussian population, whose spread is ``std``.
    """
    parsed = parse_population(spec) if isinstance(spec, str) else spec
    if parsed.is_mixture:
        known = user_types(parsed.task)
        unknown = [n for n in parsed.shares if n not in known]
        if unknown:
            raise ValueError(
                f"unknown user type(s) {unknown} for task {parsed.task!r}; known types: "
                f"{sorted(known)}"
            )
        return Population.mixture(
            parsed.task,
            feature_names,
            dict(parsed.shares),
            overrides=None if beta is None else {"beta": beta},
            weight_noise=weight_noise,
        )
    if GAUSSIAN in user_types(parsed.task):
        raise ValueError(f"task {parsed.task!r} has a user type named {GAUSSIAN!r}: rename it")
    return Population.continuous(
        parsed.task,
        feature_names,
        dict(parsed.mean),
        dict(parsed.std) if isinstance(parsed.std, Mapping) else parsed.std,
        human=HumanModel.create(beta=math.inf if beta is None else beta),
        name=GAUSSIAN,
    )
