"""Intervals over seeds as rliable computes them: the mean with a percentile stratified-bootstrap
interval, and the probability of improvement, checked against cases worked out by hand; and the
figures' error bars are those intervals."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from vpl_jax.intervals import Interval, improvement_probability, seed_interval
from vpl_jax.plotting import bars, over_seeds, plt


def test_the_interval_of_three_seeds_holds_the_mean_within_their_range():
    interval = seed_interval([0.2, 0.5, 0.8])
    assert interval.estimate == pytest.approx(0.5)
    assert 0.2 <= interval.low < 0.5 < interval.high <= 0.8


def test_the_interval_is_the_bootstrap_percentile_worked_out_by_hand():
    # Five seeds, one of them 1: a resample's mean is K/5 with K ~ Binomial(5, 1/5), so
    # P(K = 0) = 0.33 > 2.5 % and P(K <= 2) = 0.94 < 97.5 % <= P(K <= 3) = 0.99: [0, 0.6].
    # A normal interval would give [-0.19, 0.59], a t-interval [-0.36, 0.76].
    interval = seed_interval([0.0, 0.0, 0.0, 0.0, 1.0])
    assert interval == Interval(pytest.approx(0.2), 0.0, pytest.approx(0.6))


def test_strata_are_resampled_independently():
    # Each seed's mean over the two strata is 0.5, so resampling whole seeds would give
    # [0.5, 0.5]; resampling each stratum's seeds on its own, the mean is 0 with chance 1/16.
    interval = seed_interval([[0.0, 1.0], [1.0, 0.0]])
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.0, 1.0)


def test_one_seed_gives_its_value_as_a_zero_width_interval():
    assert seed_interval([0.7]) == Interval(0.7, 0.7, 0.7)
    assert improvement_probability([1.0], [0.0]) == Interval(1.0, 1.0, 1.0)


def test_probability_of_improvement_against_hand_computed_cases():
    assert improvement_probability([1, 2, 3], [0, 0, 0]) == Interval(1.0, 1.0, 1.0)
    assert improvement_probability([1, 2, 3], [1, 2, 3]).estimate == 0.5
    # Pairs (2,1) (2,2) (3,1) (3,2): 1 + 0.5 (a tie) + 1 + 1 over 4.
    assert improvement_probability([2, 3], [1, 2]).estimate == 0.875
    # Seed counts may differ; the strata's probabilities are averaged: (1 + 0.25) / 2.
    assert improvement_probability([[1, 0], [1, 1]], [[0, 1]]).estimate == 0.625
    p = improvement_probability([0.1, 0.5, 0.9], [0.3, 0.4, 0.6, 0.7])
    assert 0.0 <= p.low <= p.estimate <= p.high <= 1.0


def test_probability_of_improvement_is_complementary():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=5), rng.normal(size=4)
    forward, backward = improvement_probability(x, y), improvement_probability(y, x)
    assert forward.estimate + backward.estimate == pytest.approx(1.0)
    assert forward.low + backward.high == pytest.approx(1.0)


def test_intervals_are_deterministic_given_the_seed():
    scores = np.random.default_rng(0).normal(size=8)
    assert seed_interval(scores) == seed_interval(scores)
    assert seed_interval(scores, seed=1) != seed_interval(scores)  # the resamples matter
    x, y = scores[:4], scores[4:] + 0.5
    assert improvement_probability(x, y) == improvement_probability(x, y)


@pytest.mark.parametrize("scores", [[], [1.0, np.nan], np.zeros((2, 2, 2))])
def test_scores_must_be_finite_seeds(scores):
    with pytest.raises(ValueError, match="scores must be"):
        seed_interval(scores)


def test_error_bars_are_the_seed_interval():
    values = np.array([[0.2, 0.9], [0.5, 0.9], [0.8, np.nan]])  # [S, N]; a missing seed
    mean, low, high = over_seeds(values)
    first, second = seed_interval([0.2, 0.5, 0.8]), seed_interval([0.9, 0.9])
    assert mean.tolist() == [first.estimate, 0.9]
    assert low.tolist() == [first.low, second.low] and high.tolist() == [first.high, second.high]
    fig, ax = plt.subplots()
    container = bars(ax, np.arange(2), values.T, 0.4, "type", axis=1)  # seeds along axis 1
    (segments,) = container.errorbar.lines[2]
    ends = [sorted(y for _, y in s) for s in segments.get_segments()]
    plt.close(fig)
    assert ends[0] == pytest.approx([first.low, first.high])
    assert ends[1] == pytest.approx([0.9, 0.9])
