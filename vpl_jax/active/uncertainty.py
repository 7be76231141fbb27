"""Does the model know what it does not know? Uncertainty against error, and calibration.

Two views of the same question, for any model that reports a predicted ``P(a ≻ b)`` and a
per-user uncertainty (e.g. from an elicitation :class:`~vpl_jax.active.elicitation.Trace`):

* :func:`spread_error_correlation` — across users, the Spearman rank correlation between the
  belief's spread (posterior variance) and the held-out error rate. Positive: users the model is
  unsure about are the ones it gets wrong, so the variance is worth acting on (e.g. ask those
  users more).
* :func:`calibration_curve` — predicted probabilities binned, against the empirical frequency of
  "a preferred" in each bin (a reliability diagram), and the expected calibration error
  ``ECE = sum_bins (n_bin / n) |frequency - mean prediction|``. "Equal" labels count as 0.5.

Both are jittable and take any leading axes, which they pool. :func:`uncertainty_report` applies
both to an elicitation trace after every number of queries; :func:`uncertainty_rows` turns a
report into results rows and :func:`uncertainty_table` reports into markdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

if TYPE_CHECKING:
    from vpl_jax.active.elicitation import Trace
    from vpl_jax.rewards import UserPairs


@struct.dataclass
class Calibration:
    """A reliability diagram.

    Attributes:
      predicted: f32[B] mean predicted ``P(a ≻ b)`` in each bin (NaN: empty bin).
      frequency: f32[B] mean label in each bin (the empirical ``P(a ≻ b)``; NaN: empty).
      count: f32[B] labelled pairs in each bin.
      ece: f32[] expected calibration error.
    """

    predicted: jax.Array
    frequency: jax.Array
    count: jax.Array
    ece: jax.Array


def calibration_curve(
    probs: jax.Array, labels: jax.Array, mask: jax.Array, num_bins: int = 10
) -> Calibration:
    """Bins ``probs: f32[...]`` into ``num_bins`` equal-width bins over [0, 1] and compares each
    bin's mean prediction with its mean label (``labels: f32[...]``, only where ``mask``)."""
    p, y = probs.reshape(-1), labels.reshape(-1)
    w = mask.reshape(-1).astype(jnp.float32)
    which = jnp.clip(jnp.floor(p * num_bins).astype(jnp.int32), 0, num_bins - 1)
    one_hot = jax.nn.one_hot(which, num_bins) * w[:, None]
    count = jnp.sum(one_hot, axis=0)
    safe = jnp.maximum(count, 1.0)
    predicted = jnp.where(count > 0, p @ one_hot / safe, jnp.nan)
    frequency = jnp.where(count > 0, y @ one_hot / safe, jnp.nan)
    gap = jnp.where(count > 0, jnp.abs(frequency - predicted), 0.0)
    ece = jnp.sum(count * gap) / jnp.maximum(jnp.sum(count), 1.0)
    return Calibration(predicted=predicted, frequency=frequency, count=count, ece=ece)


def _ranks(x: jax.Array, valid: jax.Array) -> jax.Array:
    """Average ranks of ``x`` among the valid entries (ties share their mean rank)."""
    big = jnp.where(valid, x, jnp.inf)
    below = jnp.sum(valid[None, :] & (big[None, :] < big[:, None]), axis=1)
    equal = jnp.sum(valid[None, :] & (big[None, :] == big[:, None]), axis=1)
    return below + 0.5 * (equal - 1.0)


def spread_error_correlation(spread: jax.Array, accuracy: jax.Array) -> jax.Array:
    """f32[]: Spearman correlation of ``spread: f32[...]`` with the error ``1 - accuracy``,
    pooled over all entries where both are finite (NaN if fewer than 3 or either is constant).
    """
    s, e = spread.reshape(-1), 1.0 - accuracy.reshape(-1)
    valid = jnp.isfinite(s) & jnp.isfinite(e)
    n = jnp.sum(valid)
    rs, re = _ranks(s, valid), _ranks(e, valid)
    mean_rank = (n - 1) / 2.0
    ds = jnp.where(valid, rs - mean_rank, 0.0)
    de = jnp.where(valid, re - mean_rank, 0.0)
    denom = jnp.sqrt(jnp.sum(ds**2) * jnp.sum(de**2))
    return jnp.where((n >= 3) & (denom > 0), jnp.sum(ds * de) / jnp.maximum(denom, 1e-12), jnp.nan)


@struct.dataclass
class UncertaintyReport:
    """Uncertainty against error after each number of queries (from :func:`uncertainty_report`).

    Attributes:
      correlation: f32[R+1] :func:`spread_error_correlation` over the trace's users and seeds.
      calibration: a :class:`Calibration` whose fields lead with R+1 (``predicted``,
        ``frequency`` and ``count`` f32[R+1, B]; ``ece`` f32[R+1]).
    """

    correlation: np.ndarray
    calibration: Calibration


def uncertainty_report(trace: Trace, heldout: UserPairs, num_bins: int = 10) -> UncertaintyReport:
    """Does the belief know what it does not know, after 0, b, 2b, ... queries?

    Args:
      trace: an elicitation :class:`~vpl_jax.active.Trace` with leading axes [S, U] (from
        ``elicit_users(..., seeds=True)``; ``accuracy`` and ``spread`` f32[S, U, R+1],
        ``heldout_probs`` f32[S, U, R+1, M]).
      heldout: the users' held-out pairs (``labels`` and ``mask`` [U, M]), those the trace's
        ``heldout_probs`` predict; the same for every seed.
      num_bins: bins of the reliability diagram.

    Returns:
      An :class:`UncertaintyReport`: per number of queries, the Spearman correlation of spread
      with error and the calibration of ``heldout_probs``, users and seeds pooled.
    """
    shape = (*trace.heldout_probs.shape[:2], trace.heldout_probs.shape[-1])  # [S, U, M]
    labels = np.broadcast_to(np.asarray(heldout.labels), shape)
    mask = np.broadcast_to(np.asarray(heldout.mask), shape)
    correlation = jax.vmap(spread_error_correlation, in_axes=-1)(trace.spread, trace.accuracy)
    calibration = jax.vmap(
        lambda probs: calibration_curve(probs, labels, mask, num_bins), in_axes=-2
    )(trace.heldout_probs)
    return UncertaintyReport(correlation=np.asarray(correlation), calibration=calibration)


def uncertainty_rows(report: UncertaintyReport, n_queries: np.ndarray) -> list[dict[str, Any]]:
    """Results rows of a report (fields for :meth:`vpl_jax.harness.RunResults.add`, without
    method, task or model): ``spread_error_correlation`` and ``calibration_ece`` after each
    number of queries (``n_queries: [R+1]``), then the reliability diagram after all of them,
    ``calibration_frequency`` per ``bin`` with its ``predicted`` probability and ``count``."""
    rows = [
        {"metric": metric, "value": value, "n_queries": int(n)}
        for r, n in enumerate(n_queries)
        for metric, value in (
            ("spread_error_correlation", report.correlation[r]),
            ("calibration_ece", report.calibration.ece[r]),
        )
    ]
    final = jax.tree.map(lambda x: x[-1], report.calibration)
    for b in range(final.count.shape[0]):
        rows.append(
            {
                "metric": "calibration_frequency",
                "value": final.frequency[b],
                "predicted": final.predicted[b],
                "count": final.count[b],
                "bin": b,
                "n_queries": int(n_queries[-1]),
            }
        )
    return rows


def uncertainty_table(reports: dict[tuple[str, str], UncertaintyReport]) -> list[str]:
    """Markdown lines: a table of ``reports`` (keyed by ``(task, model)``, from random queries),
    the spread's correlation with error after each number of queries and the ECE after all."""
    out = [
        "## Uncertainty (random queries)",
        "",
        "| task | model | Spearman ρ(spread, error) by queries | ECE after all |",
        "|---|---|---|---|",
    ]
    for (task, model), report in reports.items():
        corr = " ".join(f"{c:.2f}" for c in report.correlation)
        ece = float(report.calibration.ece[-1])
        out.append(f"| {task} | {model} | {corr} | {ece:.3f} |")
    return out
