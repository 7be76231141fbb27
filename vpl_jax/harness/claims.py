"""Claims checked against experiments' results: one row per claim, with its number, the number's
95 % interval over seeds, and whether it holds at its margin.

A :class:`Claim` names the run it reads (an experiment's run folder), says in words what it claims
and what it measures, and computes the measured quantity per *case* (a user type, a context size,
a task …) and per seed from the run's tidy rows (``metrics.json``). A claim about *every* case is
judged on its worst case (the smallest mean when it claims ``> margin``, the largest when it
claims ``< margin``), a claim about *some* case on its best. Verdicts:

* ``holds`` — the worst case's 95 % interval over seeds lies beyond the margin;
* ``not significant`` — its mean is beyond the margin but the interval reaches it;
* ``fails`` — its mean is not beyond the margin;
* ``holds (1 seed)`` / ``fails (1 seed)`` — one seed, so no interval: the mean decides;
* ``not run`` — the run folder has no ``metrics.json``; ``no data`` — it has no matching rows.

The intervals are :func:`vpl_jax.intervals.seed_interval`'s (rliable's percentile stratified
bootstrap over seeds). Measures that compare two methods pair their seeds (seed s of one against
seed s of the other: the same data and starts) and bootstrap the per-seed differences.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vpl_jax.harness.results import load_metrics
from vpl_jax.intervals import seed_interval

Row = Mapping[str, Any]
#: ``rows -> {case: {seed: value}}``: the measured quantity per case and seed.
Measure = Callable[[Sequence[Row]], dict[str, dict[int, float]]]

__all__ = [
    "Claim",
    "check",
    "claims_markdown",
    "difference",
    "evaluate",
    "value",
]


def _matches(row: Row, where: Mapping[str, Any]) -> bool:
    return all(row.get(k) == v for k, v in where.items())


def _case(row: Row, over: Sequence[str]) -> str:
    return ", ".join(f"{k}={row.get(k)}" for k in over) or "all"


def value(
    metric: str,
    where: Mapping[str, Any] | None = None,
    over: Sequence[str] = ("user_type",),
    *,
    largest: str | None = None,
    scale: Callable[[Row], float] | None = None,
    missing: float | None = None,
) -> Measure:
    """The ``metric`` rows matching ``where`` (field == value), per case (their ``over``
    fields) and seed.

    ``largest``: keep, per case, only the rows with the largest value of that field (e.g. the
    largest deviation of a sweep, the last round). ``scale(row)`` divides each value (e.g. by the
    row's budget). A row without a value (e.g. a criterion that never matched) is left out, or
    measures ``missing`` (after scaling) when given. Two rows of one case and seed are an error:
    ``over`` must name every field that varies among the matching rows."""

    where = dict(where or {})

    def measure(rows):
        rows = [r for r in rows if r.get("metric") == metric and _matches(r, where)]
        if largest is not None:
            top: dict[str, Any] = {}
            for r in rows:
                case = _case(r, over)
                top[case] = max(top.get(case, r[largest]), r[largest])
            rows = [r for r in rows if r[largest] == top[_case(r, over)]]
        out: dict[str, dict[int, float]] = defaultdict(dict)
        for r in rows:
            if r.get("value") is None and missing is None:
                continue
            if r.get("value") is None:
                v = missing
            else:
                v = float(r["value"]) / (scale(r) if scale else 1.0)
            case, seed = _case(r, over), int(r.get("seed") or 0)
            if seed in out[case]:
                raise ValueError(
                    f"{metric} rows matching {where}: two of case {case!r}, seed {seed}; "
                    f"name the fields that tell them apart in over={list(over)}"
                )
            out[case][seed] = v
        return dict(out)

    return measure


def difference(
    metric: str,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    over: Sequence[str] = ("user_type",),
    *,
    largest: str | None = None,
    largest_b: str | None = None,
) -> Measure:
    """``metric`` of the rows matching ``a`` minus that of the rows matching ``b``, per case
    (the ``over`` fields) and per seed present in both (paired seeds). ``largest`` (both sides)
    and ``largest_b`` (``b`` only) are :func:`value`'s."""
    first = value(metric, a, over, largest=largest)
    second = value(metric, b, over, largest=largest_b or largest)

    def measure(rows):
        x, y = first(rows), second(rows)
        return {
            case: {s: x[case][s] - y[case][s] for s in sorted(set(x[case]) & set(y[case]))}
            for case in x
            if case in y
        }

    return measure


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper, as a test on one run's results.

    Attributes:
      name: short identifier (snake_case).
      text: the claim in words.
      experiment: the experiment whose run it reads (``results/<experiment>/<run>``).
      measures: what the number is, in words (the metric, the methods, the cases).
      measure: computes the number per case and seed from the run's rows (:func:`value`,
        :func:`difference`, or any function of the same signature).
      margin: the threshold the worst case must clear.
      direction: ``">"`` (the number must exceed the margin) or ``"<"``.
      cases: ``"every"`` (every case must clear the margin: the worst is judged) or ``"some"``
        (one case must: the best is judged).
      run_suffix: appended to the run name, for a second configuration of the same experiment
        (e.g. ``"-scaled"``: ``results/underspecification/<run>-scaled``).
    """

    name: str
    text: str
    experiment: str
    measures: str
    measure: Measure
    margin: float
    direction: str = ">"
    cases: str = "every"
    run_suffix: str = ""

    def __post_init__(self):
        if self.direction not in (">", "<"):
            raise ValueError(f"Claim.direction={self.direction!r}, allowed: ['>', '<']")
        if self.cases not in ("every", "some"):
            raise ValueError(f"Claim.cases={self.cases!r}, allowed: ['every', 'some']")
        if not math.isfinite(self.margin):
            raise ValueError(f"Claim.margin={self.margin!r}: must be a finite number")


def check(claim: Claim, rows: Sequence[Row] | None) -> dict[str, Any]:
    """Judges ``claim`` on a run's ``rows`` (None: the run does not exist). Returns a JSON-safe
    dict: the claim's fields, ``verdict``, and for the judged case (the worst for ``every``, the
    best for ``some``) ``case``, ``mean``, ``low``, ``high``, ``num_seeds`` (and ``num_cases``)."""
    out: dict[str, Any] = {
        "claim": claim.name,
        "text": claim.text,
        "experiment": claim.experiment,
        "run_suffix": claim.run_suffix,
        "measures": claim.measures,
        "margin": claim.margin,
        "direction": claim.direction,
        "cases": claim.cases,
    }
    if rows is None:
        return {**out, "verdict": "not run"}
    cases = {c: s for c, s in claim.measure(rows).items() if s}
    if not cases:
        return {**out, "verdict": "no data"}
    above = claim.direction == ">"
    judged = []
    for case, per_seed in cases.items():
        values = [per_seed[s] for s in sorted(per_seed)]
        judged.append((case, seed_interval(values), len(values)))
    pick = min if above == (claim.cases == "every") else max
    case, interval, num_seeds = pick(judged, key=lambda j: j[1].estimate)
    beyond = (lambda x: x > claim.margin) if above else (lambda x: x < claim.margin)
    if num_seeds < 2:
        verdict = ("holds" if beyond(interval.estimate) else "fails") + " (1 seed)"
    elif beyond(interval.low if above else interval.high):
        verdict = "holds"
    elif beyond(interval.estimate):
        verdict = "not significant"
    else:
        verdict = "fails"
    return {
        **out,
        "verdict": verdict,
        "case": case,
        "mean": interval.estimate,
        "low": interval.low,
        "high": interval.high,
        "num_seeds": num_seeds,
        "num_cases": len(judged),
    }


def evaluate(claims: Sequence[Claim], results_dir: str | Path, run_name: str) -> list[dict]:
    """Every claim judged on its run, ``<results_dir>/<experiment>/<run_name><run_suffix>``."""
    out = []
    for claim in claims:
        path = Path(results_dir) / claim.experiment / f"{run_name}{claim.run_suffix}"
        rows = load_metrics(path)["rows"] if (path / "metrics.json").exists() else None
        out.append(check(claim, rows))
    return out


def _number(r: dict[str, Any]) -> str:
    if "mean" not in r:
        return "—"
    if r["num_seeds"] < 2:
        return f"{r['mean']:.3f} (1 seed)"
    return f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['num_seeds']} seeds)"


def claims_markdown(judged: Sequence[dict[str, Any]], run_name: str) -> str:
    """The claims table: the claim, the experiment and what it measures, the worst case's number
    with its 95 % interval over seeds, the margin, and the verdict."""
    lines = [
        "| claim | experiment: measure | judged case | number [95 % interval] | margin | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in judged:
        run = f"{r['experiment']}/{run_name}{r['run_suffix']}"
        lines.append(
            f"| {r['text']} | `{run}`: {r['measures']} | {r.get('case', '—')} | {_number(r)} "
            f"| {r['direction']} {r['margin']:g} ({r['cases']} case) | **{r['verdict']}** |"
        )
    return "\n".join(lines) + "\n"
