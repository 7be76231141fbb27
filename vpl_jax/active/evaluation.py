"""How much choosing the queries buys: accuracy curves and the queries a criterion needs.

* :func:`mean_curve` — a trace's held-out accuracy after each number of queries, averaged over
  seeds and users;
* :func:`queries_to_reach` — the fewest queries at which a curve reaches a target accuracy;
* :func:`queries_to_match` — for each criterion, the fewest queries it needs to reach the accuracy
  a baseline criterion (random) reaches with the same model after a reference budget.

These read traces after the loop (numpy, not jitted); the per-round numbers themselves come from
:func:`~vpl_jax.active.elicitation.elicit_users`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vpl_jax.active.elicitation import Trace


def mean_curve(trace: Trace) -> np.ndarray:
    """f32[R+1]: ``trace.accuracy`` (any leading axes, e.g. [S, U, R+1]) averaged over all but
    its last axis, ignoring NaN (users without held-out pairs)."""
    accuracy = np.asarray(trace.accuracy)
    return np.nanmean(accuracy.reshape(-1, accuracy.shape[-1]), axis=0)


def queries_to_reach(curve: np.ndarray, n_queries: np.ndarray, target: float) -> float:
    """The fewest queries at which ``curve`` (f32[R+1], e.g. mean accuracy after ``n_queries``)
    reaches ``target``; NaN if it never does."""
    reached = np.flatnonzero(np.asarray(curve) >= target)
    return float(np.asarray(n_queries)[reached[0]]) if reached.size else float("nan")


def queries_to_match(
    traces: dict[tuple[str, str], Trace],
    n_queries: np.ndarray,
    reference_queries: int,
    baseline: str = "random",
) -> list[dict]:
    """For each (model, criterion) of ``traces`` other than the baseline: the fewest queries
    at which its :func:`mean_curve` reaches the accuracy the ``baseline`` criterion reaches with
    the same model after ``reference_queries`` (which must be one of ``n_queries``, the number of
    queries after each point of the curves).

    Returns one dict per such pair, in the order of ``traces``: ``model``, ``criterion``,
    ``target`` (the baseline's accuracy at the reference budget) and ``needed`` (NaN: never
    reached). Pairs whose model has no baseline trace are left out.
    """
    ref = list(n_queries).index(reference_queries)
    out = []
    for (model, criterion), trace in traces.items():
        if criterion == baseline or (model, baseline) not in traces:
            continue
        target = float(mean_curve(traces[model, baseline])[ref])
        needed = queries_to_reach(mean_curve(trace), n_queries, target)
        out.append({"model": model, "criterion": criterion, "target": target, "needed": needed})
    return out
