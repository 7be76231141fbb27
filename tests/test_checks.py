"""The declarative validation every config uses (vpl_jax.checks): each rule by hand, the messages,
nested configs named by their path, and every number field of every config declaring a rule."""

import dataclasses
import math

import numpy as np
import pytest

from vpl_jax.checks import (
    WIDTHS,
    Choice,
    Choices,
    ConfigError,
    Each,
    Float,
    Int,
    check_config,
    checked,
    rule_of,
)

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (Int(ge=1), [1, 7, np.int32(3)], [0, -1, 2.5, 1.0, True, "1", None]),
        (Int(ge=0, le=9), [0, 9], [-1, 10]),
        (Int(gt=0, lt=3), [1, 2], [0, 3]),
        (Int(ge=1, optional=True), [None, 1], [0, 1.5]),
        (Float(gt=0), [1e-9, 3, 2.5, np.float32(1.0)], [0, -1.0, INF, NAN, "1e-3", None, True]),
        (Float(ge=0, le=1), [0, 0.5, 1], [-1e-9, 1.0001]),
        (Float(ge=0, lt=1), [0.0], [1.0]),
        (Float(ge=0, finite=False), [0.0, INF], [NAN, -INF, -1.0]),
        (Float(finite=False), [-INF, INF, -3.0], [NAN]),
        (Float(gt=0, optional=True), [None, 0.1], [0.0, NAN]),
        (Choice(("a", "b")), ["a", "b"], ["c", None, ("a",)]),
        (Choices(("a", "b")), [("a",), ("b", "a"), ["a"]], [(), ("a", "a"), ("c",), "a"]),
        (Choices(("a", "b"), min_count=0), [()], [("a", "a")]),
        (WIDTHS, [(), (64, 64), [8]], [(0,), (8, -1), (2.5,), 8, "8"]),
        (Each(Float(ge=0), min_count=3), [(0, 0.5, 1.0)], [(1.0, 1.0), (NAN, 0, 0)]),
    ],
)
def test_rules_accept_and_reject_values_worked_out_by_hand(rule, good, bad):
    for value in good:
        assert rule.ok(value), (rule, value)
        rule.check("x", value)
    for value in bad:
        assert not rule.ok(value), (rule, value)
        with pytest.raises(ConfigError, match=r"^x"):
            rule.check("x", value)


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        (Int(ge=1), 0, "n=0: must be an integer >= 1"),
        (Int(ge=0, le=2**32 - 1), 2**32, "n=4294967296: must be an integer in [0, 4294967295]"),
        (Int(ge=1, optional=True), 0, "n=0: must be an integer >= 1, or None"),
        (Float(gt=0), INF, "n=inf: must be a finite number > 0"),
        (Float(gt=0), "1e-3", "n='1e-3': must be a finite number > 0"),
        (Float(gt=0, le=1), 2.0, "n=2.0: must be a finite number in (0, 1]"),
        (Float(ge=0, finite=False), NAN, "n=nan: must be a number >= 0 (inf allowed)"),
        (Choice(("a", "b")), "c", "n='c': allowed values are ['a', 'b']"),
        (Choices(("a", "b")), (), "n: give at least 1 of ['a', 'b']"),
        (Choices(("a", "b")), ("a", "c"), "n: unknown value(s) ['c']; allowed values are"),
        (Choices(("a", "b")), ("a", "a"), "n=['a', 'a']: values must not repeat"),
        (WIDTHS, (8, 0), "n=(8, 0): must be a tuple, each entry an integer >= 1"),
        (Each(Int(ge=1), min_count=1), (), "n=(): must be a non-empty tuple, each entry an"),
    ],
)
def test_messages_name_the_field_the_value_and_what_is_allowed(rule, value, message):
    with pytest.raises(ConfigError) as error:
        rule.check("n", value)
    assert str(error.value).startswith(message), str(error.value)


@dataclasses.dataclass(frozen=True)
class Inner:
    size: int = checked(1, Int(ge=1))
    rate: float = checked(0.5, Float(gt=0, lt=1))


@dataclasses.dataclass(frozen=True)
class Outer:
    count: int = checked(2, Int(ge=2))
    inner: Inner = Inner()
    free: str = "anything"  # no rule: not checked


def test_check_config_names_the_class_or_the_path_of_a_nested_field():
    check_config(Outer())
    with pytest.raises(ConfigError, match=r"^Outer\.count=1: must be an integer >= 2$"):
        check_config(Outer(count=1))
    bad = Outer(inner=Inner(rate=1.0))
    with pytest.raises(ConfigError, match=r"^Outer\.inner\.rate=1\.0: must be"):
        check_config(bad)
    with pytest.raises(ConfigError, match=r"^inner\.rate=1\.0: must be"):  # a command line's
        check_config(bad, "")
    with pytest.raises(ConfigError, match=r"^data\.inner\.rate=1\.0"):
        check_config(bad, "data")
    with pytest.raises(ConfigError, match=r"^Outer\.count=3\.0"):  # the first bad field
        check_config(Outer(count=3.0, inner=Inner(size=0)))
    assert rule_of(Inner, "size") == Int(ge=1) and rule_of(Outer, "free") is None
    assert issubclass(ConfigError, ValueError)  # callers catching ValueError keep working


def _configs():
    """Every config class of the library and the experiments (the experiments' ``Config``)."""
    from vpl_jax import active, harness, iterate, nash
    from vpl_jax import policies as P
    from vpl_jax import rewards as R
    from vpl_jax.active.beliefs import LatentBelief
    from vpl_jax.data import DatasetConfig
    from vpl_jax.users import UserType

    return [P.PPOConfig, R.TrainConfig, R.ModelSizes, DatasetConfig, iterate.IterateConfig,
               active.Acquisition, LatentBelief, nash.NashConfig, nash.CloneConfig,
               nash.DirectConfig, nash.PreferenceModel, R.BTL, R.VPL, R.DPLMeanVariance,
               R.DPLCategorical, R.LinearBayes, R.Ensemble, UserType, harness.ExperimentConfig,
               harness.PopulationStudy]  # fmt: skip


#: Number fields checked by explicit code instead of a rule, and why.
EXPLICIT = {
    "weights": "UserType: a mapping of feature names to finite numbers",
    **{
        f"{kind}_sizes": "misspecification: checked for the kinds swept (SIZES)"
        for kind in ("beta", "gamma", "epsilon", "regret", "belief")
    },
}


def _number_fields(cls):
    for field in dataclasses.fields(cls):
        annotation = str(field.type)
        if not annotation.startswith("bool") and any(t in annotation for t in ("int", "float")):
            yield field


@pytest.mark.parametrize("experiment", [None, *sorted(
    ["reward_accuracy", "underspecification", "active_queries", "misspecification",
     "misidentification", "nash", "policy_conflicts", "many_types", "label_noise",
     "reproduce"])])  # fmt: skip
def test_every_number_field_of_every_config_declares_its_rule(experiment, load_experiment):
    """A number field without a rule would accept NaN, 2.5 users or a string silently."""
    classes = _configs() if experiment is None else [load_experiment(experiment).Config]
    for cls in classes:
        for field in _number_fields(cls):
            if field.name in EXPLICIT:
                continue
            assert rule_of(cls, field.name) is not None, f"{cls.__name__}.{field.name}"
