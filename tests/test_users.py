"""Simulated users: each human model behaves as defined; populations respect their shares."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpl_jax.users import (
    DEVIATIONS,
    HumanModel,
    Population,
    User,
    UserType,
    deviating,
    get_user_type,
    label_distribution,
    label_pairs,
    pair_label_distribution,
    register_user_type,
    segment_return,
    true_returns,
    type_disagreement,
)

F = 3


def _user(theta, **human):
    return User(
        theta=jnp.asarray(theta, jnp.float32),
        human=HumanModel.create(**human),
        type_id=jnp.int32(0),
    )


def _features(key, horizon=4):
    return jax.random.normal(key, (horizon, F))


class TestSegmentReturn(chex.TestCase):
    @chex.all_variants(with_pmap=False)
    def test_matches_hand_computed_value(self):
        phi = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        theta = jnp.array([2.0, 1.0])
        # per-step rewards 2, 2, 3; with gamma = 0.5 weights 0.25, 0.5, 1 (later steps count more)
        ret = self.variant(segment_return)(theta, phi, 0.5)
        np.testing.assert_allclose(ret, 0.25 * 2 + 0.5 * 2 + 3.0, rtol=1e-6)
        np.testing.assert_allclose(self.variant(segment_return)(theta, phi, 1.0), 7.0, rtol=1e-6)


def test_rational_user_prefers_higher_return():
    user = _user([1.0, -1.0, 0.5])
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    fa, fb = _features(ka), _features(kb)
    dist = pair_label_distribution(user, fa, fb)
    better_a = segment_return(user.theta, fa) > segment_return(user.theta, fb)
    assert float(dist.p_a) == (1.0 if better_a else 0.0)


@settings(deadline=None, max_examples=25)
@given(
    seed=st.integers(0, 2**31 - 1),
    beta=st.sampled_from([0.5, 2.0, math.inf]),
    epsilon=st.sampled_from([0.0, 0.2]),
    equal=st.sampled_from([0.0, 1.0]),
)
def test_swapping_a_and_b_flips_the_label_distribution(seed, beta, epsilon, equal):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    user = _user(jax.random.normal(k1, (F,)), beta=beta, epsilon=epsilon, equal_threshold=equal)
    fa, fb = _features(k2), _features(k3)
    ab = pair_label_distribution(user, fa, fb)
    ba = pair_label_distribution(user, fb, fa)
    np.testing.assert_allclose(ab.p_a, 1.0 - ba.p_a, atol=1e-6)
    assert bool(ab.equal) == bool(ba.equal)
    assert bool(ab.skip) == bool(ba.skip)


def test_equal_answers_stay_one_half_when_swapped():
    user = _user([1.0, 0.0, 0.0], equal_threshold=0.5)
    fa = jnp.zeros((2, F)).at[0, 0].set(1.0)
    fb = jnp.zeros((2, F)).at[1, 0].set(1.2)  # return 1.2 vs 1.0: within the threshold
    labels, mask = label_pairs(
        jax.random.PRNGKey(0), jax.tree.map(lambda x: x[None], user), fa[None, None], fb[None, None]
    )
    labels_swapped, _ = label_pairs(
        jax.random.PRNGKey(0), jax.tree.map(lambda x: x[None], user), fb[None, None], fa[None, None]
    )
    assert float(labels[0, 0]) == 0.5 and float(labels_swapped[0, 0]) == 0.5
    assert bool(mask[0, 0])


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_a_rational_users_tie_is_answered_equal(epsilon):
    """Two all-zero segments tie: a rational user says "equal" (0.5), never a coin-flip
    strict preference, whatever their mistake rate."""
    human = HumanModel.create(epsilon=epsilon).broadcast(64)
    users = User(theta=jnp.ones((64, F)), human=human, type_id=jnp.zeros(64, jnp.int32))
    zeros = jnp.zeros((64, 1, 4, F))
    labels, mask = label_pairs(jax.random.PRNGKey(0), users, zeros, zeros)
    np.testing.assert_array_equal(labels, 0.5)
    assert bool(mask.all())
    assert bool(label_distribution(users.human, jnp.zeros(64), jnp.zeros(64)).equal.all())


def test_a_boltzmann_users_tie_is_a_coin_flip():
    human = HumanModel.create(beta=2.0)
    dist = label_distribution(human, jnp.float32(0.0), jnp.float32(0.0))
    assert float(dist.p_a) == 0.5 and not bool(dist.equal)


def test_boltzmann_label_frequencies_match_sigmoid():
    beta, n = 1.5, 20_000
    deltas = jnp.array([-1.0, -0.3, 0.0, 0.4, 1.2])
    users = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (deltas.shape[0], *jnp.shape(x))),
        _user([1.0, 0.0, 0.0], beta=beta),
    )
    fa = jnp.zeros((deltas.shape[0], n, 1, F)).at[..., 0].set(deltas[:, None, None])
    fb = jnp.zeros_like(fa)
    labels, _ = label_pairs(jax.random.PRNGKey(7), users, fa, fb)
    freq = np.asarray(labels.mean(1))
    expected = np.asarray(jax.nn.sigmoid(beta * deltas))
    # 4 standard errors of a Bernoulli mean with n samples
    np.testing.assert_array_less(np.abs(freq - expected), 4 * np.sqrt(0.25 / n))


def test_myopic_user_weights_later_steps_more():
    early = jnp.zeros((5, F)).at[0, 0].set(1.0)
    late = jnp.zeros((5, F)).at[4, 0].set(0.9)
    myopic = _user([1.0, 0.0, 0.0], gamma=0.8)
    farsighted = _user([1.0, 0.0, 0.0])
    assert float(pair_label_distribution(farsighted, early, late).p_a) == 1.0
    assert float(pair_label_distribution(myopic, early, late).p_a) == 0.0


def test_mistake_flips_with_probability_epsilon():
    dist = label_distribution(HumanModel.create(epsilon=0.2), jnp.float32(2.0), jnp.float32(1.0))
    np.testing.assert_allclose(dist.p_a, 0.8, atol=1e-6)
    dist = label_distribution(HumanModel.create(epsilon=0.2), jnp.float32(0.0), jnp.float32(1.0))
    np.testing.assert_allclose(dist.p_a, 0.2, atol=1e-6)


def test_skip_only_when_both_returns_are_below_threshold():
    human = HumanModel.create(skip_threshold=0.0)
    both_bad = label_distribution(human, jnp.float32(-1.0), jnp.float32(-2.0))
    one_good = label_distribution(human, jnp.float32(-1.0), jnp.float32(0.5))
    assert bool(both_bad.skip) and not bool(one_good.skip)


def test_equal_threshold_gives_one_half():
    human = HumanModel.create(equal_threshold=0.3)
    close = label_distribution(human, jnp.float32(1.0), jnp.float32(1.2))
    far = label_distribution(human, jnp.float32(1.0), jnp.float32(1.5))
    assert bool(close.equal) and not bool(far.equal)


@pytest.mark.parametrize(
    ("field", "value"),
    [("beta", -1.0), ("gamma", 0.0), ("gamma", 1.5), ("epsilon", 0.7), ("equal_threshold", -1)],
)
def test_bad_human_model_fields_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        HumanModel.create(**{field: value})


def test_population_shares_are_respected(navigation):
    population = Population.mixture(
        "navigation", navigation.feature_names, {"goal_a": 0.75, "goal_b": 0.25}
    )
    users = population.sample(jax.random.PRNGKey(0), 40)
    counts = np.bincount(np.asarray(users.type_id), minlength=2)
    np.testing.assert_array_equal(counts, [30, 10])
    theta_a = get_user_type("navigation", "goal_a").theta(navigation.feature_names)
    np.testing.assert_allclose(users.theta[users.type_id == 0], np.tile(theta_a, (30, 1)))
    assert np.asarray(population.counts(7)).sum() == 7


def test_population_weight_noise_and_overrides(navigation):
    noisy = UserType("noisy_goal_a_test", {"progress_a": 1.0, "safety": 0.5}, weight_noise=0.2)
    register_user_type("navigation", noisy, overwrite=True)
    population = Population.mixture(
        "navigation", navigation.feature_names, ["noisy_goal_a_test"], overrides={"beta": 3.0}
    )
    users = population.sample(jax.random.PRNGKey(1), 500)
    np.testing.assert_allclose(users.human.beta, 3.0)
    std = np.asarray(users.theta).std(0)
    np.testing.assert_allclose(std[[0, 2]], [0.2, 0.1], rtol=0.15)
    assert std[1] == 0.0  # unnamed features stay at 0


def test_continuous_population(navigation):
    population = Population.continuous(
        "navigation", navigation.feature_names, {"progress_a": 1.0}, std=0.5
    )
    users = population.sample(jax.random.PRNGKey(2), 2000)
    np.testing.assert_allclose(np.asarray(users.theta).mean(0)[0], 1.0, atol=0.05)
    np.testing.assert_allclose(np.asarray(users.theta).std(0), 0.5, rtol=0.1)


def test_a_new_user_type_is_a_few_lines(navigation):
    register_user_type(
        "navigation",
        UserType("sightseer_test", {"progress_b": 0.5, "courtesy": 2.0}, beta=5.0),
        overwrite=True,
    )
    population = Population.mixture(
        "navigation", navigation.feature_names, {"goal_a": 1, "sightseer_test": 1}
    )
    users = population.sample(jax.random.PRNGKey(0), 4)
    assert population.type_names == ("goal_a", "sightseer_test")
    sightseers = np.asarray(users.type_id) == 1
    np.testing.assert_allclose(users.human.beta[sightseers], 5.0)


def test_unknown_user_type_lists_known_ones(navigation):
    with pytest.raises(ValueError, match=r"known types: .*goal_a"):
        Population.mixture("navigation", navigation.feature_names, ["goal_z"])


def test_user_type_with_unknown_feature_is_rejected(navigation):
    register_user_type("navigation", UserType("speedy_test", {"speed": 1.0}), overwrite=True)
    with pytest.raises(ValueError, match="unknown feature"):
        Population.mixture("navigation", navigation.feature_names, ["speedy_test"])


def test_goal_c_needs_a_third_goal(navigation):
    with pytest.raises(ValueError, match="progress_c"):
        Population.mixture("navigation", navigation.feature_names, ["goal_c"])


def test_labelling_rejects_weights_with_the_wrong_feature_count():
    users = jax.tree.map(lambda x: x[None], _user([1.0, 0.0]))  # F = 2
    fa = jnp.zeros((1, 2, 4, F))
    with pytest.raises(ValueError, match="theta has 2 weights but the segments have 3 features"):
        label_pairs(jax.random.PRNGKey(0), users, fa, fa)


def test_regret_user_scores_segments_by_optimal_advantage():
    # Partial returns: a = 1.0, b = 2.0. Optimal values (start, end): a gains 3, b loses 1,
    # so the regret-based user (weight 1) scores a = 4.0 and b = 1.0 and prefers a.
    fa = jnp.zeros((2, F)).at[:, 0].set(0.5)
    fb = jnp.zeros((2, F)).at[:, 0].set(1.0)
    va, vb = jnp.array([0.0, 3.0]), jnp.array([2.0, 1.0])
    partial = _user([1.0, 0.0, 0.0])
    regret = _user([1.0, 0.0, 0.0], regret_weight=1.0, beta=1.0)
    assert float(pair_label_distribution(partial, fa, fb, va, vb).p_a) == 0.0
    np.testing.assert_allclose(
        pair_label_distribution(regret, fa, fb, va, vb).p_a, jax.nn.sigmoid(3.0), rtol=1e-6
    )
    half = _user([1.0, 0.0, 0.0], regret_weight=0.5, beta=1.0)  # scores 2.5 vs 1.5
    np.testing.assert_allclose(
        pair_label_distribution(half, fa, fb, va, vb).p_a, jax.nn.sigmoid(1.0), rtol=1e-6
    )


def test_regret_labels_equal_partial_return_labels_when_values_are_constant():
    key = jax.random.PRNGKey(4)
    k_theta, k_a, k_b, k_label = jax.random.split(key, 4)
    users = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (3, *jnp.shape(x))), _user([1.0, -0.5, 0.2], beta=2.0)
    )
    users = users.replace(theta=jax.random.normal(k_theta, (3, F)))
    fa = jax.random.normal(k_a, (3, 50, 4, F))
    fb = jax.random.normal(k_b, (3, 50, 4, F))
    constant = jnp.full((3, 50, 2), 7.0)
    regret_users = users.replace(human=users.human.replace(regret_weight=jnp.ones(3)))
    plain = label_pairs(k_label, users, fa, fb)
    with_values = label_pairs(k_label, regret_users, fa, fb, constant, constant)
    chex.assert_trees_all_equal(plain, with_values)


@pytest.mark.slow
def test_features_in_the_true_world_equal_the_task_features(navigation):
    from vpl_jax.data import collect, cut_segments
    from vpl_jax.data.beliefs import believed_features

    segments = cut_segments(collect(navigation, jax.random.PRNGKey(5), 4), 8)
    index = jnp.arange(segments.num_segments)
    perceived = believed_features(navigation, segments, index, navigation.true_world)
    np.testing.assert_allclose(perceived, segments.features, atol=1e-6)


@pytest.mark.slow
def test_a_user_who_misplaces_the_hazard_perceives_other_safety(navigation):
    from vpl_jax.data import collect, cut_segments
    from vpl_jax.data.beliefs import believed_pair_features

    segments = cut_segments(collect(navigation, jax.random.PRNGKey(6), 16), 10)
    safety = navigation.feature_names.index("safety")
    true_safety = np.asarray(segments.features[..., safety].sum(1))
    entered = int(np.argmin(true_safety))  # the segment deepest in the hazard
    assert true_safety[entered] < -0.5
    pairs = jnp.array([[[entered, 0]]] * 2, jnp.int32)  # 2 users, 1 pair each
    worlds = jax.tree.map(lambda x: jnp.stack([x, x]), navigation.true_world)
    worlds = worlds.replace(hazard_center=jnp.array([[0.0, 0.3], [0.0, -5.0]]))
    fa, _ = believed_pair_features(navigation, segments, pairs, worlds)
    np.testing.assert_allclose(fa[0, 0, :, safety].sum(), true_safety[entered], rtol=1e-5)
    assert float(fa[1, 0, :, safety].sum()) == 0.0  # believes the hazard is far away
    other = [i for i, n in enumerate(navigation.feature_names) if n != "safety"]
    np.testing.assert_allclose(fa[1, 0][:, other], fa[0, 0][:, other], atol=1e-6)


def test_true_returns_are_user_by_segment_for_shared_and_per_user_features():
    users = User(
        theta=jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]]),
        human=jax.tree.map(lambda x: jnp.stack([x, x]), HumanModel.create()),
        type_id=jnp.zeros(2, jnp.int32),
    )
    features = jax.random.normal(jax.random.PRNGKey(0), (3, 4, F))  # N = 3 segments
    summed = np.asarray(features).sum(1)
    expect = np.stack([summed[:, 0], 2 * summed[:, 1] - summed[:, 2]])  # [U, N]
    np.testing.assert_allclose(true_returns(users, features), expect, rtol=1e-5)
    per_user = jnp.stack([features, features[::-1]])  # f32[U, N, T, F]
    expect[1] = expect[1, ::-1]
    np.testing.assert_allclose(true_returns(users, per_user), expect, rtol=1e-5)


def test_regret_users_are_rejected_where_labels_ignore_values(navigation):
    from vpl_jax.data import DatasetConfig, build_dataset

    population = Population.mixture(
        "navigation", navigation.feature_names, ["goal_a", "goal_b"], {"regret_weight": 0.5}
    )
    with pytest.raises(ValueError, match=r"build_dataset labels by .*regret_weight up to 0.5"):
        build_dataset(jax.random.PRNGKey(0), navigation, population, DatasetConfig())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: UserType("t", {"safety": float("nan")}), "weights must map feature names to"),
        (lambda: UserType("t", {"safety": float("inf")}), "weights must map feature names to"),
        (lambda: UserType("t", {"safety": "1"}), "weights must map feature names to"),
        (lambda: UserType("t", {"safety": 1.0}, weight_noise=float("nan")), "weight_noise=nan"),
        (lambda: UserType("t", {"safety": 1.0}, weight_noise=-0.1), "weight_noise=-0.1"),
    ],
)
def test_non_finite_user_weights_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_population_api_rejects_repeats_and_non_finite_values(navigation):
    names = navigation.feature_names
    with pytest.raises(ValueError, match=r"user type\(s\) \['goal_a'\] repeat"):
        Population.mixture("navigation", names, ["goal_a", "goal_a", "goal_b"])
    with pytest.raises(ValueError, match="shares must be >= 0"):
        Population.mixture("navigation", names, {"goal_a": float("nan"), "goal_b": 1.0})
    with pytest.raises(ValueError, match="weight_noise=inf"):
        Population.mixture("navigation", names, ["goal_a"], weight_noise=float("inf"))
    with pytest.raises(ValueError, match="std must be finite"):
        Population.continuous("navigation", names, {"safety": 1.0}, float("nan"))


def test_a_population_built_directly_is_checked_like_a_mixture(navigation):
    """dataclasses.replace (or the constructor) with NaN shares gave type counts of -2**63;
    a negative number of users gave a negative count."""
    import dataclasses

    population = Population.mixture("navigation", navigation.feature_names, ["goal_a", "goal_b"])
    for shares in ([float("nan"), 1.0], [1.5, -0.5], [0.3, 0.3], [1.0]):
        with pytest.raises(ValueError, match=r"shares must be .* summing to 1"):
            dataclasses.replace(population, shares=np.array(shares))
    bad_std = np.array(population.theta_std)
    bad_std[0, 0] = -1.0
    with pytest.raises(ValueError, match="theta_std must be finite and >= 0"):
        dataclasses.replace(population, theta_std=bad_std)
    with pytest.raises(ValueError, match=r"theta_mean must be \[2, "):
        dataclasses.replace(population, theta_mean=population.theta_mean[:1])
    for n in (-1, 2.5):
        with pytest.raises(ValueError, match=f"num_users={n}: must be an integer"):
            population.counts(n)


def test_a_deviation_sets_the_human_model_field_its_kind_names():
    users = jax.tree.map(lambda *x: jnp.stack(x), _user([1.0, 0, 0]), _user([0, 1.0, 0]))
    assert deviating(users, "none", 0.0) is users
    human = lambda kind, size: deviating(users, kind, size).human  # noqa: E731
    np.testing.assert_allclose(human("beta", 0.5).beta, [2.0, 2.0])  # temperature 1/beta
    assert np.all(np.isinf(human("beta", 0.0).beta))  # no temperature: rational
    np.testing.assert_allclose(human("gamma", 0.2).gamma, [0.8, 0.8])  # myopia 1 - gamma
    np.testing.assert_allclose(human("epsilon", 0.3).epsilon, [0.3, 0.3])
    np.testing.assert_allclose(human("regret", 0.5).regret_weight, [0.5, 0.5])
    gamma = human("gamma", 0.2)  # the other fields and the weights stay as they were
    chex.assert_trees_all_equal(gamma.replace(gamma=users.human.gamma), users.human)
    chex.assert_trees_all_equal(deviating(users, "epsilon", 0.3).theta, users.theta)
    assert set(DEVIATIONS) == {"beta", "gamma", "epsilon", "regret"}
    with pytest.raises(ValueError, match="unknown deviation kind 'belief'"):
        deviating(users, "belief", 0.4)  # beliefs live in the features: data.relabel_deviating
    with pytest.raises(ValueError, match="epsilon"):
        deviating(users, "epsilon", 0.7)  # the human model's own rule refuses it


def test_type_disagreement_by_hand_and_its_invariants():
    # Three one-step segments with features (x, y); types weigh x, y and x + y.
    features = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]], [[2.0, 2.0]]])
    theta = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pairs = jnp.array([[0, 1], [0, 2], [1, 2], [0, 0]])
    d = np.asarray(type_disagreement(theta, features, pairs))
    # Pair (0, 1): x says 0, y says 1, x + y ties (not counted for it); pairs (0, 2) and (1, 2):
    # all prefer segment 2; pair (0, 0) ties for everyone.
    np.testing.assert_allclose(d, [[0, 1 / 3, 0], [1 / 3, 0, 0], [0, 0, 0]], atol=1e-6)
    # Symmetric, zero on the diagonal, unchanged when every pair is asked the other way round.
    key = jax.random.PRNGKey(0)
    features = jax.random.normal(key, (20, 3, 4))
    theta = jax.random.normal(jax.random.fold_in(key, 1), (5, 4))
    pairs = jax.random.randint(jax.random.fold_in(key, 2), (200, 2), 0, 20)
    d = np.asarray(type_disagreement(theta, features, pairs))
    np.testing.assert_allclose(d, d.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(d), 0.0)
    np.testing.assert_allclose(type_disagreement(theta, features, pairs[:, ::-1]), d, atol=1e-6)
    # Opposite weights disagree on every pair that does not tie.
    opposite = type_disagreement(jnp.stack([theta[0], -theta[0]]), features, pairs)
    assert float(opposite[0, 1]) == 1.0
