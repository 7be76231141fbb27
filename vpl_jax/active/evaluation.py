"""How much choosing the queries buys: accuracy curves and the queries a criterion needs.

* :func:`mean_curve` — a trace's held-out accuracy after each number of queries, averaged over
  seeds and users;
* :func:`queries_to_reach` — the fewest queries at which a curve reaches a target accuracy;
* :func:`queries_to_match` — for each criterion, the fewest queries it needs to reach the accuracy
  a baseline criterion (random) reaches with the same model after a reference budget;
* :func:`match_rows` — those numbers as results rows, :func:`match_text` one of them in words
  (:func:`needed_text`: "never" where the accuracy is not reached), and :func:`match_table` all
  of them as markdown;
* :func:`curve_metrics` — a trace's per-user curves by the metric names results give them;
  :func:`accuracy_table` — markdown: every trace's mean accuracy after each number of queries.

These read traces after the loop (numpy, not jitted); the per-round numbers themselves come from
:func:`~vpl_jax.active.elicitation.elicit_users`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vpl_jax.active.elicitation import Trace


def curve_metrics(trace: Trace, alignment: bool = False) -> dict[str, np.ndarray]:
    """A trace's per-user curves (any leading axes, e.g. f32[S, U, R+1]) by results metric:
    ``heldout_accuracy``, ``spread`` and, with ``alignment`` (a model whose latent is the users'
    theta: LinearBayes; NaN for the others), ``theta_alignment``."""
    metrics = {"heldout_accuracy": trace.accuracy, "spread": trace.spread}
    if alignment:
        metrics["theta_alignment"] = trace.alignment
    return metrics


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


def match_rows(matches: list[dict], reference_queries: int) -> list[dict[str, Any]]:
    """Results rows of :func:`queries_to_match`'s entries against random (fields for
    :meth:`vpl_jax.harness.RunResults.add`, without the task): ``queries_to_match_random`` with
    the criterion as method and the queries needed as value (NaN: never), then ``model``,
    ``target`` (random's accuracy) and ``reference_queries``."""
    return [
        {
            "method": m["criterion"],
            "metric": "queries_to_match_random",
            "value": m["needed"],
            "model": m["model"],
            "target": m["target"],
            "reference_queries": reference_queries,
        }
        for m in matches
    ]


def match_text(match: dict, reference_queries: int) -> str:
    """One :func:`queries_to_match` entry in words: which criterion needs how many queries to
    reach random's accuracy after ``reference_queries``."""
    return (
        f"{match['criterion']} ({match['model']}) reaches random's accuracy after "
        f"{reference_queries} queries ({match['target']:.3f}) with "
        f"{needed_text(match['needed'])} queries"
    )


def needed_text(needed: float) -> str:
    """The queries a criterion needs (an entry's ``needed``), in words: ``"never"`` for NaN."""
    return "never" if math.isnan(needed) else f"{needed:.0f}"


def match_table(matches: list[dict], reference_queries: int) -> list[str]:
    """Markdown lines: a table of :func:`queries_to_match`'s entries (each with its ``task``
    added), the queries each criterion needs to reach random's accuracy after
    ``reference_queries``."""
    return [
        f"## Queries needed to reach random's accuracy after {reference_queries}",
        "",
        "| task | model | criterion | random's accuracy | queries needed |",
        "|---|---|---|---|---|",
        *[
            f"| {m['task']} | {m['model']} | {m['criterion']} | {m['target']:.3f} | "
            f"{needed_text(m['needed'])} |"
            for m in matches
        ],
    ]


def accuracy_table(per_task: dict[str, dict[tuple[str, str], Trace]], n_queries) -> list[str]:
    """Markdown lines: a table of each task's traces (keyed by ``(model, criterion)``), their
    :func:`mean_curve` after each of ``n_queries: [R+1]`` queries."""
    out = [
        "## Mean held-out accuracy by number of queries (users and seeds pooled)",
        "",
        "| task | model | criterion | " + " | ".join(str(int(n)) for n in n_queries) + " |",
        "|---" * (len(n_queries) + 3) + "|",
    ]
    for task, traces in per_task.items():
        for (model, criterion), trace in traces.items():
            cells = " | ".join(f"{a:.3f}" for a in mean_curve(trace))
            out.append(f"| {task} | {model} | {criterion} | {cells} |")
    return out
