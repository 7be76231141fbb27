"""Means over seeds with 95 % confidence intervals, and the probability of improvement, as
rliable reports them (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", NeurIPS; https://github.com/google-research/rliable).

A score is one training seed's value of one metric (for one method, task and user type): seeds
are the unit of replication, so an interval says how far the mean could move with other seeds,
not how users spread. The intervals are percentile intervals of a stratified bootstrap: the S
seeds are resampled with replacement, independently within each stratum (a column of
``f32[S, T]``: a task or a user type), ``reps`` times, and the statistic's 2.5th and 97.5th
percentiles over the resamples bound the interval. With one seed there is nothing to resample and
the interval is the value itself.

Written in numpy rather than taken from the ``rliable`` package, which brings arch, pandas, scipy
and seaborn for these two estimators. The estimators are rliable's (``get_interval_estimates``
with ``method="percentile"`` and the mean as the aggregate, ``probability_of_improvement`` with
its ``StratifiedIndependentBootstrap``); the default ``reps`` is 10 000 (rliable's 50 000 for
intervals) so a run's thousands of cells take seconds on a laptop. A bootstrap resample is drawn
as each seed's count (a multinomial), which has the same distribution as resampled indices.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["CONFIDENCE", "REPS", "Interval", "improvement_probability", "seed_interval"]

#: Coverage of every interval.
CONFIDENCE = 0.95
#: Bootstrap resamples per interval.
REPS = 10_000


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate over seeds and its ``CONFIDENCE`` percentile-bootstrap interval."""

    estimate: float
    """The mean over seeds (of :func:`seed_interval`) or the probability of improvement."""
    low: float
    high: float


def _scores(scores, name: str) -> np.ndarray:
    """``scores`` as ``f64[S, T]`` (a 1-D array is one stratum), checked finite and non-empty."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"{name} must be f32[S] or f32[S, T] with S >= 1, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} must be finite (leave out seeds without a value): {scores}")
    return scores


def _resample_counts(rng: np.random.Generator, num_seeds: int, shape) -> np.ndarray:
    """``int[*shape, S]``: how often each of S seeds appears in a resample of S with replacement."""
    return rng.multinomial(num_seeds, np.full(num_seeds, 1.0 / num_seeds), size=shape)


def _percentiles(statistics: np.ndarray, estimate: float) -> Interval:
    low, high = np.percentile(statistics, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return Interval(float(estimate), float(low), float(high))


def seed_interval(scores, *, reps: int = REPS, seed: int = 0) -> Interval:
    """The mean of ``scores: f32[S]`` (or ``f32[S, T]``, T strata) and its 95 % interval.

    The estimate is the mean over seeds (and strata); the interval is the percentile interval of
    that mean over ``reps`` stratified bootstrap resamples of the seeds (each stratum's seeds
    resampled on their own), as rliable's ``get_interval_estimates``. Deterministic: the
    resamples come from ``np.random.default_rng(seed)``, so a cell's interval does not depend on
    which other cells were computed before it. One seed gives ``[value, value]``.
    """
    scores = _scores(scores, "scores")
    num_seeds, num_strata = scores.shape
    counts = _resample_counts(np.random.default_rng(seed), num_seeds, (reps, num_strata))
    means = np.einsum("rts,st->r", counts, scores) / (num_seeds * num_strata)  # f64[reps]
    # A resample's mean lies within the scores' range; keep rounding from stepping out of it.
    return _percentiles(np.clip(means, scores.min(), scores.max()), scores.mean())


def improvement_probability(x, y, *, reps: int = REPS, seed: int = 0) -> Interval:
    """P(X > Y): how likely a seed of X scores higher than a seed of Y, with its 95 % interval.

    ``x: f32[Sx]`` and ``y: f32[Sy]`` (or ``f32[Sx, T]`` and ``f32[Sy, T]``, the mean over T
    strata) are the two methods' per-seed scores; seed counts may differ. Per stratum the
    estimate is the Mann-Whitney statistic over every pair of seeds, ``mean_ij [x_i > y_j] +
    0.5 [x_i == y_j]`` (ties count half, so identical samples give 0.5), as rliable's
    ``probability_of_improvement``; the interval resamples x's and y's seeds independently per
    stratum (rliable's ``StratifiedIndependentBootstrap``). Direction-neutral: for a metric where
    lower is better, read ``1 - P``.
    """
    x, y = _scores(x, "x"), _scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same strata: {x.shape} vs {y.shape}")
    (sx, num_strata), sy = x.shape, y.shape[0]
    # wins[t, a, b]: seed a of x against seed b of y in stratum t.
    wins = (x.T[:, :, None] > y.T[:, None, :]) + 0.5 * (x.T[:, :, None] == y.T[:, None, :])
    rng = np.random.default_rng(seed)
    cx = _resample_counts(rng, sx, (reps, num_strata))  # int[reps, T, Sx]
    cy = _resample_counts(rng, sy, (reps, num_strata))  # int[reps, T, Sy]
    probabilities = np.einsum("rta,tab,rtb->r", cx, wins, cy) / (sx * sy * num_strata)
    return _percentiles(probabilities, wins.mean())
