"""vpl_jax.harness.claims: a claim's number, interval and verdict from a run's tidy rows."""

import dataclasses
import json

import numpy as np
import pytest

from vpl_jax import harness
from vpl_jax.harness import claims as C
from vpl_jax.intervals import seed_interval


def rows_of(table):
    """``{(method, user_type): [value per seed]}`` as tidy rows."""
    return [
        {"method": m, "task": "navigation", "user_type": t, "metric": "success", "value": v,
         "seed": s}
        for (m, t), values in table.items()
        for s, v in enumerate(values)
    ]  # fmt: skip


ROWS = rows_of(
    {
        ("vpl", "a"): [1.0, 0.9, 0.95],
        ("btl", "a"): [0.1, 0.2, 0.0],
        ("vpl", "b"): [0.8, 0.7, 0.9],
        ("btl", "b"): [0.5, 0.6, 0.4],
    }
)
GAP = C.difference("success", {"method": "vpl"}, {"method": "btl"})


def claim(margin, direction=">", measure=GAP):
    return C.Claim("vpl_beats_btl", "VPL beats BTL", "toy", "VPL − BTL success", measure,
                   margin, direction)  # fmt: skip


def test_the_worst_case_is_judged_with_the_interval_of_its_paired_differences():
    judged = C.check(claim(0.05), ROWS)
    b = np.array([0.8, 0.7, 0.9]) - np.array([0.5, 0.6, 0.4])  # type b: the smaller gap
    interval = seed_interval(b)
    assert judged["case"] == "user_type=b" and judged["num_cases"] == 2
    assert judged["mean"] == pytest.approx(b.mean()) == pytest.approx(0.3)
    assert (judged["low"], judged["high"]) == pytest.approx((interval.low, interval.high))
    assert judged["num_seeds"] == 3 and judged["verdict"] == "holds"
    json.dumps(judged)


def test_verdicts_at_each_margin_and_direction():
    low, high = C.check(claim(0.0), ROWS)["low"], C.check(claim(0.0), ROWS)["high"]
    assert low < 0.3 < high
    assert C.check(claim(low - 0.01), ROWS)["verdict"] == "holds"
    assert C.check(claim((low + 0.3) / 2), ROWS)["verdict"] == "not significant"
    assert C.check(claim(0.35), ROWS)["verdict"] == "fails"
    # "<": the largest mean is judged (type a's gap, 0.85), against its upper end.
    smaller = C.check(claim(1.0, "<"), ROWS)
    assert smaller["case"] == "user_type=a" and smaller["mean"] == pytest.approx(0.85)
    assert smaller["verdict"] == "holds"
    assert C.check(claim(0.86, "<"), ROWS)["verdict"] == "not significant"
    assert C.check(claim(0.8, "<"), ROWS)["verdict"] == "fails"
    # "some": the best case is judged.
    some = dataclasses.replace(claim(0.5), cases="some")
    assert (
        C.check(some, ROWS)["case"] == "user_type=a" and C.check(some, ROWS)["verdict"] == "holds"
    )
    fewer = dataclasses.replace(claim(0.5, "<"), cases="some")
    assert C.check(fewer, ROWS)["case"] == "user_type=b"


def test_one_seed_is_judged_on_its_value_and_says_so():
    one = [r for r in ROWS if r["seed"] == 0]
    assert C.check(claim(0.2), one)["verdict"] == "holds (1 seed)"
    assert C.check(claim(0.4), one)["verdict"] == "fails (1 seed)"


def test_seeds_are_paired_and_unmatched_seeds_left_out():
    rows = [r for r in ROWS if not (r["method"] == "btl" and r["seed"] == 2)]
    judged = C.check(claim(0.0), rows)
    assert judged["num_seeds"] == 2  # seed 2 has no BTL to pair with
    assert judged["mean"] == pytest.approx(np.mean([0.3, 0.1]))


def test_largest_keeps_the_end_of_a_sweep_and_missing_values_can_count():
    rows = [
        {"method": "vpl", "metric": "acc", "value": v, "size": size, "seed": 0}
        for size, v in ((0.0, 0.9), (0.1, 0.8), (0.3, 0.6))
    ] + [{"method": "ig", "metric": "needed", "value": None, "budget": 8, "seed": 0}]
    assert C.value("acc", over=(), largest="size")(rows) == {"all": {0: 0.6}}
    assert C.value("needed", over=())(rows) == {}  # left out ...
    assert C.value("needed", over=(), missing=2.0, scale=lambda r: r["budget"])(rows) == {
        "all": {0: 2.0}  # ... or counted as the given value
    }
    drop = C.difference("acc", {"size": 0.0}, {}, over=(), largest_b="size")(rows)
    assert drop == {"all": {0: pytest.approx(0.3)}}


def test_rows_that_the_cases_do_not_tell_apart_are_an_error():
    with pytest.raises(ValueError, match="over=\\['user_type'\\]"):
        C.value("success", {"method": "vpl"}, over=("user_type",))(ROWS + ROWS)


def test_a_claim_without_its_run_or_rows_says_so(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Toy(harness.ExperimentConfig):
        pass

    results = harness.RunResults("toy", Toy(results_dir=str(tmp_path), run_name="r"))
    for r in ROWS:
        results.add(**r)
    results.write()
    missing = dataclasses.replace(claim(0.1), run_suffix="-other")
    unmeasured = claim(0.1, measure=C.value("win_rate"))
    judged = C.evaluate([claim(0.05), missing, unmeasured], tmp_path, "r")
    assert [j["verdict"] for j in judged] == ["holds", "not run", "no data"]
    table = C.claims_markdown(judged, "r")
    assert "`toy/r`: VPL − BTL success" in table and "**holds**" in table
    assert "`toy/r-other`" in table and "**not run**" in table
    with pytest.raises(ValueError, match="direction='>='"):
        claim(0.1, ">=")
