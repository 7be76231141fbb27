"""Any population from the command line: shares, Gaussian populations, user types from one's own
file, task variants that inherit their parent's types — and every bad spec caught at parse time."""

import functools
import math

import jax
import numpy as np
import pytest

from vpl_jax import envs, harness
from vpl_jax.data import DatasetConfig, build_dataset
from vpl_jax.users import (
    PopulationSpec,
    UserType,
    parse_population,
    population_from_spec,
    register_user_type,
    user_types,
)

HIGHWAY_FEATURES = ("safety", "efficiency", "law", "courtesy", "comfort")


def test_population_syntax():
    assert parse_population("highway:aggressive=0.7,cautious=0.3") == PopulationSpec(
        task="highway", shares={"aggressive": 0.7, "cautious": 0.3}
    )
    assert parse_population("navigation:goal_a,goal_b").shares == {"goal_a": 0.5, "goal_b": 0.5}
    gauss = parse_population("highway:gaussian:safety=1,efficiency=0.5:std=0.3")
    assert (gauss.mean, gauss.std, gauss.is_mixture) == (
        {"safety": 1.0, "efficiency": 0.5},
        0.3,
        False,
    )
    per_feature = parse_population("highway:gaussian:safety=1:std=safety=0.2,law=0.1")
    assert per_feature.std == {"safety": 0.2, "law": 0.1}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("highway", "expected TASK:TYPE=SHARE"),
        ("highway:aggressive=0.7,cautious=0.2", "shares sum to 0.9; they must sum to 1"),
        ("highway:aggressive=1.2,cautious=-0.2", "shares must be >= 0"),
        ("highway:aggressive=nan,cautious=1", "must be finite"),
        ("highway:aggressive=x", "is not a number"),
        ("highway:aggressive,aggressive", "must be non-empty and not repeat"),
        ("highway:aggressive=0.5,aggressive=0.5", "'aggressive' is given twice"),
        ("highway:gaussian:safety=1:spread=2", "the spread is written std=S"),
        ("highway:gaussian:safety=1:std=-1", "std must be >= 0"),
    ],
)
def test_bad_population_syntax_says_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_population(spec)


def test_population_from_spec_resolves_types_features_and_human_model():
    pop = population_from_spec(
        "highway:aggressive=0.7,cautious=0.3", HIGHWAY_FEATURES, beta=2.0, weight_noise=0.1
    )
    assert pop.type_names == ("aggressive", "cautious")
    np.testing.assert_allclose(pop.shares, [0.7, 0.3])
    np.testing.assert_allclose(pop.human.beta, [2.0, 2.0])
    np.testing.assert_allclose(pop.theta_std, 0.1 * np.abs(pop.theta_mean), atol=1e-7)
    with pytest.raises(ValueError, match=r"unknown user type\(s\) \['brisk'\].*known types"):
        population_from_spec("highway:brisk=1", HIGHWAY_FEATURES)
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['speed'\]"):
        population_from_spec("highway:gaussian:speed=1", HIGHWAY_FEATURES)


def test_gaussian_population_draws_theta_around_its_mean():
    pop = population_from_spec(
        "highway:gaussian:safety=1,efficiency=0.5:std=safety=0.2", HIGHWAY_FEATURES
    )
    theta = np.asarray(pop.sample(jax.random.PRNGKey(0), 4000).theta)
    np.testing.assert_allclose(theta.mean(0), [1.0, 0.5, 0, 0, 0], atol=0.02)
    np.testing.assert_allclose(theta.std(0), [0.2, 0, 0, 0, 0], atol=0.02)
    assert pop.type_names == ("gaussian",)


@pytest.mark.slow
def test_a_task_variant_inherits_its_parents_user_types_and_is_recorded():
    name = "highway_variant_for_tests"
    if name not in envs.names():
        envs.register(name, functools.partial(envs.Highway, num_lanes=4, num_cars=3))
    assert envs.parent(name) == "highway" and envs.lineage(name) == (name, "highway")
    assert set(user_types("highway")) <= set(user_types(name))
    env = envs.make(name)
    assert env.num_lanes == 4
    pop = population_from_spec(f"{name}:aggressive=0.5,cautious=0.5", env.feature_names)
    config = DatasetConfig(num_users=8, context_size=2, heldout_size=2, pool_size=64,
                           num_episodes=16)  # fmt: skip
    dataset = build_dataset(jax.random.PRNGKey(0), env, pop, config, task=name)
    assert dataset.meta.task == name


def test_register_rejects_an_unknown_parent_and_a_bad_name():
    with pytest.raises(ValueError, match="parent task 'nowhere'"):
        envs.register("orphan_for_tests", envs.Navigation, parent="nowhere")
    with pytest.raises(ValueError, match="must be an identifier"):
        envs.register("has space", envs.Navigation)


# --- through the experiments' command line ---------------------------------------------------
@pytest.fixture(scope="module")
def types_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "my_types.py"
    path.write_text(
        "from vpl_jax.users import UserType, register_user_type\n"
        "register_user_type('highway', UserType('brisk_for_tests', "
        "{'efficiency': 0.8, 'safety': 0.6, 'comfort': 0.3}))\n"
    )
    return str(path)


@pytest.mark.parametrize("experiment", ["reward_accuracy", "underspecification", "active_queries"])
def test_experiments_take_populations_user_type_files_and_variants(
    experiment, types_file, load_experiment
):
    module = load_experiment(experiment)

    # active_queries also trains policies, by default on navigation only.
    def only(task):
        policy = ["--policy-tasks", task] if hasattr(module.Config, "policy_tasks") else []
        return ["--tasks", task, *policy]

    argv = ["--register", types_file, *only("highway"), "--weight-noise", "0.1",
            "--population", "highway:brisk_for_tests=0.7,cautious=0.2,lawful=0.1"]  # fmt: skip
    config = harness.parse(module.Config, module.PRESETS, argv)
    pop = harness.task_population(config, "highway")
    assert pop.type_names == ("brisk_for_tests", "cautious", "lawful")
    np.testing.assert_allclose(pop.shares, [0.7, 0.2, 0.1], rtol=1e-6)
    gaussian = [*only("highway"), "--population", "highway:gaussian:efficiency=1:std=0.3"]
    config = harness.parse(module.Config, module.PRESETS, gaussian)
    assert harness.task_population(config, "highway").type_names == ("gaussian",)
    variant = "highway_variant_cli_for_tests"
    if variant not in envs.names():
        envs.register(variant, functools.partial(envs.Highway, num_cars=4))
    config = harness.parse(module.Config, module.PRESETS, only(variant))
    assert harness.task_population(config, variant).type_names == config.highway_types


@pytest.mark.parametrize("experiment", ["misspecification", "misidentification"])
def test_navigation_studies_take_populations_and_reject_other_tasks(
    experiment, load_experiment, capsys
):
    module = load_experiment(experiment)

    def population(config):
        return harness.task_population(config, "navigation")

    argv = ["--population", "navigation:goal_a=0.8,goal_b=0.2", "--weight-noise", "0.2"]
    pop = population(harness.parse(module.Config, module.PRESETS, argv))
    assert pop.type_names == ("goal_a", "goal_b")
    np.testing.assert_allclose(pop.shares, [0.8, 0.2], rtol=1e-6)
    gaussian = ["--population", "navigation:gaussian:progress_a=1,safety=0.5:std=0.2"]
    pop = population(harness.parse(module.Config, module.PRESETS, gaussian))
    assert pop.type_names == ("gaussian",)
    # The default is navigation_types in equal shares.
    assert population(harness.parse(module.Config, module.PRESETS, [])).type_names == (
        "goal_a",
        "cautious",
    )
    for bad, message in [
        (["--population", "highway:cautious=1"], "task 'highway' is not one of tasks=['navigation"),
        (["--population", "navigation:goal_a=0.5,goal_b=0.6"], "population: population"),
    ]:
        with pytest.raises(SystemExit):
            harness.parse(module.Config, module.PRESETS, bad)
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def broken_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    return str(path)


@pytest.fixture(scope="module")
def orphan_task():
    name = "orphan_task_for_tests"
    if name not in envs.names():
        envs.register(name, lambda: envs.Navigation(num_goals=2))  # not a variant of anything
    return name


def test_a_failing_types_file_and_a_task_without_types_fail_at_parse_time(
    broken_file, orphan_task, load_experiment, capsys
):
    module = load_experiment("underspecification")
    for argv, message in [
        (["--register", broken_file], "failed to import: RuntimeError: boom"),
        (["--tasks", orphan_task], f"tasks: unknown value(s) ['{orphan_task}']"),
    ]:
        with pytest.raises(SystemExit):
            harness.parse(module.Config, module.PRESETS, argv)
        assert message in capsys.readouterr().err


def test_registered_types_are_seen_by_variants_registered_before_them():
    name = "highway_variant_late_for_tests"
    if name not in envs.names():
        envs.register(name, functools.partial(envs.Highway, num_cars=2))
    register_user_type("highway", UserType("late_for_tests", {"safety": 1.0}), overwrite=True)
    assert "late_for_tests" in user_types(name)
    assert math.isinf(
        population_from_spec(f"{name}:late_for_tests", HIGHWAY_FEATURES).human.beta[0]
    )


@pytest.mark.parametrize("experiment", ["reward_accuracy", "underspecification", "active_queries"])
def test_a_registered_types_own_human_model_is_kept_unless_beta_is_given(
    experiment, load_experiment
):
    """A type registered with its own beta (examples/scaled_goals.py's goal_b_noisy) labels with
    it: experiments used to override every type's beta with their default inf."""
    module = load_experiment(experiment)
    register_user_type(
        "navigation",
        UserType("noisy_for_tests", {"progress_b": 1.0}, beta=0.2, epsilon=0.1),
        overwrite=True,
    )
    argv = ["--tasks", "navigation"] + (
        ["--policy-tasks"] if experiment == "active_queries" else []
    )
    spec = ["--population", "navigation:goal_a=0.5,noisy_for_tests=0.5"]
    config = harness.parse(module.Config, module.PRESETS, argv + spec)
    human = harness.task_population(config, "navigation").human
    np.testing.assert_allclose(human.beta, [math.inf, 0.2])
    np.testing.assert_allclose(human.epsilon, [0.0, 0.1])
    config = harness.parse(module.Config, module.PRESETS, argv + spec + ["--beta", "3"])
    np.testing.assert_allclose(harness.task_population(config, "navigation").human.beta, [3, 3])
    gaussian = ["--population", "navigation:gaussian:progress_a=1:std=0.1"]
    config = harness.parse(module.Config, module.PRESETS, argv + gaussian)
    assert math.isinf(harness.task_population(config, "navigation").human.beta[0])


def test_nash_populations_take_beta_when_given(load_experiment):
    nash = load_experiment("nash")
    config = harness.parse(nash.Config, nash.PRESETS, [])
    assert np.isinf(nash.population(config, "cyclic").human.beta).all()
    config = harness.parse(nash.Config, nash.PRESETS, ["--beta", "2"])
    np.testing.assert_allclose(nash.population(config, "cyclic").human.beta, 2.0)
