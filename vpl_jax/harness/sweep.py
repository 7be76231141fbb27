"""Sweeps over kinds of deviation of growing size (label noise, misspecified human models).

A study sweeps each of its ``kinds`` (e.g. ``epsilon``, ``temperature``) over that kind's
sizes; the point without any deviation is shared by every kind, so each kind's curve starts
from it::

    points = sweep_points(("epsilon", "beta"), {"epsilon": (0.1, 0.3), "beta": (2.0,)}.get)
    # [SweepPoint("none", 0.0), SweepPoint("epsilon", 0.1), SweepPoint("epsilon", 0.3),
    #  SweepPoint("beta", 2.0)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: a kind of deviation and its size (``none``, 0: no deviation)."""

    kind: str
    size: float


def sweep_points(
    kinds: Sequence[str], sizes_of: Callable[[str], Sequence[float]]
) -> list[SweepPoint]:
    """The shared point without deviation, then each kind's sizes (``sizes_of(kind)``) in order."""
    return [SweepPoint("none", 0.0)] + [SweepPoint(k, s) for k in kinds for s in sizes_of(k)]
