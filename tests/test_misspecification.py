"""Misspecified human models and misidentified rewards: each new piece matches its definition,
the correct human model recovers what the assumed one gets wrong, and the iterate loop's round 0
is the offline pipeline."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax import pipeline
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.data import (
    Segments,
    label_queries,
    perceived,
    relabel,
    relabel_deviating,
    shifted_hazard,
)
from vpl_jax.data.beliefs import believed_features
from vpl_jax.iterate import (
    IterateConfig,
    iterate,
    misidentification_gap,
    normalized_return,
    pad_context,
    round_key,
    seed_keys,
    select_queries,
)
from vpl_jax.pipeline import (
    PolicyTrainer,
    correct_human_model,
    fit_labellings,
    fit_relabellings,
    label_agreement,
    labelling_scores,
    offline,
    policies_on_rewards,
    policy_curves,
    policy_inputs,
    rational_targets,
    relabelled,
    score_labellings,
    score_relabellings,
    train_oracle,
)
from vpl_jax.plotting import metric_grid, plt
from vpl_jax.rewards.base import sum_over_steps
from vpl_jax.users import HumanModel, User, segment_score, segment_values

SMALL_BTL = R.BTL(hidden=(16,))
TINY_TRAIN = R.TrainConfig(num_epochs=3, users_per_batch=4)
TINY_PPO = P.PPOConfig(
    total_timesteps=2 * 16 * 10, num_envs=16, num_steps=10, num_minibatches=2, update_epochs=1,
    hidden_sizes=(16,), center_rewards=True,
)  # fmt: skip


def cosine(a, b):
    return np.asarray(R.cosine(jnp.asarray(a), jnp.asarray(b)))


def one_user(theta, **human) -> User:
    """A batch of one user with weights ``theta`` and the given human-model fields."""
    model = jax.tree.map(lambda x: x[None], HumanModel.create(**human))
    return User(theta=jnp.asarray(theta, jnp.float32)[None], human=model,
                type_id=jnp.zeros(1, jnp.int32))  # fmt: skip


def toy_segments(features) -> Segments:
    """Segments with the given per-step features ``[S, H, F]`` (observations unused)."""
    features = jnp.asarray(features, jnp.float32)
    s, h, _ = features.shape
    return Segments(obs=jnp.zeros((s, h, 1)), actions=jnp.zeros((s, h, 1)), features=features,
                    positions=jnp.zeros((s, h, 2)), alive=jnp.ones((s, h), bool),
                    obs_before=jnp.zeros((s, 1)))  # fmt: skip


PAIR = jnp.array([[[0, 1]]], jnp.int32)  # one user asked about (segment 0, segment 1)


# --- each new human model's labels, by hand -------------------------------------------------------
def test_myopic_labels_by_hand():
    # Segment 0 earns 2 at its first step, segment 1 earns 1.5 at its last: partial returns 2 vs
    # 1.5 ("a"); with gamma = 0.5 the first step counts half: 1 vs 1.5 ("b").
    segments = toy_segments([[[2.0], [0.0]], [[0.0], [1.5]]])
    key = jax.random.PRNGKey(0)
    assert float(label_queries(key, one_user([1.0]), segments, PAIR).labels[0, 0]) == 1.0
    myopic = one_user([1.0], gamma=0.5)
    assert float(label_queries(key, myopic, segments, PAIR).labels[0, 0]) == 0.0
    assert float(label_queries(key, one_user([1.0], gamma=0.8), segments, PAIR).labels[0, 0]) == 1.0


def test_regret_labels_by_hand():
    # Partial returns 1 (segment 0) and 0.5 (segment 1); segment 1 ends where the user's optimal
    # value is 2 higher than where it started, segment 0 where it is unchanged. The score is
    # R + w (V*(end) - V*(start)): w = 1 gives 1 vs 2.5 ("b"), w = 0.5 gives 1 vs 1.5 ("b"),
    # w = 0.2 gives 1 vs 0.9 ("a").
    segments = toy_segments([[[0.5], [0.5]], [[0.25], [0.25]]])
    values = jnp.array([[[3.0, 3.0], [1.0, 3.0]]])  # [U, S, (start, end)]
    key = jax.random.PRNGKey(0)
    for weight, label in ((1.0, 0.0), (0.5, 0.0), (0.2, 1.0), (0.0, 1.0)):
        answers = label_queries(key, one_user([1.0], regret_weight=weight), segments, PAIR, values)
        assert float(answers.labels[0, 0]) == label, weight


@pytest.mark.slow
def test_regret_labels_equal_partial_return_labels_when_the_optimal_value_is_constant(
    nav_dataset,
):
    users = nav_dataset.users
    users = users.replace(human=users.human.replace(
        regret_weight=jnp.ones(users.type_id.shape), beta=jnp.full(users.type_id.shape, 2.0)
    ))  # fmt: skip
    constant = lambda x: jnp.full(x.shape[:-1], 7.5)  # noqa: E731
    values = segment_values(constant, nav_dataset.segments, users.theta)
    pairs = jnp.concatenate([nav_dataset.context.pairs, nav_dataset.heldout.pairs], axis=1)
    key = jax.random.PRNGKey(3)  # Boltzmann users (beta = 2): the same key, the same draws
    regret = label_queries(key, users, nav_dataset.segments, pairs, values)
    plain = label_queries(key, users, nav_dataset.segments, pairs)
    chex.assert_trees_all_equal(regret, plain)
    assert 0.0 < float(np.mean(np.asarray(plain.labels))) < 1.0  # stochastic answers


def test_false_belief_labels_by_hand(navigation):
    # Two one-step segments: the robot at the hazard's true centre (0, 0.3), and 0.4 m to its
    # right. A user who only cares about safety prefers the second; a user who believes the
    # hazard is 0.4 m to the right perceives the first as safe (safety 0) and the second as
    # the hazard's centre (safety -1), and prefers the first.
    far = jnp.array([-0.6, -0.25, 0.0, 0.0])  # bystander position and velocity, far away
    obs = jnp.stack([jnp.concatenate([jnp.array([x, 0.3, 0.0, 0.0]), far]) for x in (0.0, 0.4)])
    segments = Segments(obs=obs[:, None], actions=jnp.zeros((2, 1, 2)),
                        features=jax.vmap(lambda o: navigation.features_from_obs(
                            o, jnp.zeros(2), o, navigation.true_world))(obs)[:, None],
                        positions=obs[:, None, :2], alive=jnp.ones((2, 1), bool),
                        obs_before=obs)  # fmt: skip
    world = navigation.true_world
    believed = world.replace(hazard_center=world.hazard_center + jnp.array([0.4, 0.0]))
    seen = believed_features(navigation, segments, jnp.arange(2), believed)
    safety = navigation.feature_names.index("safety")
    np.testing.assert_allclose(segments.features[:, 0, safety], [-1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(seen[:, 0, safety], [0.0, -1.0], atol=1e-6)
    # Features that do not depend on the hazard are perceived as they are.
    other = [i for i in range(len(navigation.feature_names)) if i != safety]
    np.testing.assert_allclose(seen[..., other], segments.features[..., other], atol=1e-6)
    user = one_user(navigation.weights({"safety": 1.0}))
    key = jax.random.PRNGKey(0)
    assert float(label_queries(key, user, segments, PAIR).labels[0, 0]) == 0.0
    fooled = label_queries(key, user, segments.replace(features=seen), PAIR)
    assert float(fooled.labels[0, 0]) == 1.0


# --- a dataset answered again with one deviation -------------------------------------------------
def answers(dataset):
    return np.concatenate([dataset.context.labels, dataset.heldout.labels], axis=1)


def test_relabelling_with_a_deviation_changes_the_answers_as_its_kind_says(navigation, nav_dataset):
    key = jax.random.PRNGKey(5)
    again = lambda kind, size, values=None: relabel_deviating(  # noqa: E731
        key, navigation, nav_dataset, kind, size, values
    )
    # The conftest users are rational: with no deviation they answer as they did.
    none = again("none", 0.0)
    np.testing.assert_array_equal(answers(none), answers(nav_dataset))
    # epsilon: about that share of the answers flipped, with common random numbers (the same
    # draws as relabel with the field set by hand).
    flipped = answers(again("epsilon", 0.3)) != answers(none)
    assert 0.2 < flipped.mean() < 0.4
    by_hand = relabel(key, nav_dataset, nav_dataset.users.with_human(epsilon=0.3))
    np.testing.assert_array_equal(answers(again("epsilon", 0.3)), answers(by_hand))
    # belief: a hazard believed where it is changes nothing; 0.4 m to the right, the answers are
    # those given on the features of that world; the dataset keeps its true features.
    np.testing.assert_array_equal(answers(again("belief", 0.0)), answers(none))
    believed = again("belief", 0.4)
    world = shifted_hazard(navigation, 0.4)
    moved = navigation.true_world.hazard_center + jnp.array([0.4, 0.0])
    np.testing.assert_allclose(world.hazard_center, moved)
    seen = perceived(navigation, nav_dataset, world)
    every = jnp.arange(nav_dataset.segments.num_segments)
    np.testing.assert_array_equal(
        seen.segments.features, believed_features(navigation, nav_dataset.segments, every, world)
    )
    np.testing.assert_array_equal(
        answers(believed), answers(relabel(key, nav_dataset, nav_dataset.users, seen.segments))
    )
    assert (answers(believed) != answers(none)).any()
    chex.assert_trees_all_equal(believed.segments, nav_dataset.segments)
    # Only regret users are given the optimal values.
    values = jnp.ones((nav_dataset.num_users, nav_dataset.segments.num_segments, 2))
    np.testing.assert_array_equal(
        answers(again("epsilon", 0.3, values)), answers(again("epsilon", 0.3))
    )


@pytest.mark.slow
def test_labelling_scores_average_the_test_users_scores(nav_dataset):
    key = jax.random.PRNGKey(6)
    datasets = [nav_dataset, relabel(key, nav_dataset, nav_dataset.users.with_human(epsilon=0.5))]
    _, test = nav_dataset.split()
    for model in (R.LinearBayes.for_beta(2.0), SMALL_BTL):
        params = fit_labellings(model, TINY_TRAIN, key, datasets)
        scores = labelling_scores(model, params, datasets, test)
        accuracy, _ = score_labellings(model, params, datasets, test)
        np.testing.assert_allclose(scores["accuracy"], np.nanmean(accuracy, axis=1))
        chex.assert_shape(scores["accuracy"], (2,))
        if isinstance(model, R.LinearBayes):  # the posterior from all pairs, against theta
            _, mean = score_labellings(model, params, datasets, test, part="all")
            expected = cosine(mean, test.users.theta).mean(axis=1)
            np.testing.assert_allclose(scores["alignment"], expected, rtol=1e-6)
        else:
            assert set(scores) == {"accuracy"}


@pytest.mark.slow
def test_s_seeds_fit_and_score_in_one_vmap_as_each_seed_alone(nav_dataset):
    """The misspecification sweep's seed axis: fit_labellings with S keys and labelling_scores
    with seeds=True give, per seed, what a single-seed fit and its scores give."""
    key = jax.random.PRNGKey(14)
    datasets = [nav_dataset, relabel(key, nav_dataset, nav_dataset.users.with_human(epsilon=0.5))]
    _, test = nav_dataset.split()
    keys = jax.random.split(key, 2)
    model = R.LinearBayes.for_beta(2.0)  # both scores: accuracy and alignment
    params = fit_labellings(model, TINY_TRAIN, keys, datasets)  # [S, P]
    scores = labelling_scores(model, params, datasets, test, seeds=True)
    assert set(scores) == {"accuracy", "alignment"}
    for s in range(2):
        alone = fit_labellings(model, TINY_TRAIN, keys[s], datasets)  # [P]
        chex.assert_trees_all_close(jax.tree.map(lambda x, s=s: x[s], params), alone, atol=1e-5)
        for metric, values in labelling_scores(model, alone, datasets, test).items():
            chex.assert_shape(scores[metric], (2, 2))  # [S, P]
            np.testing.assert_allclose(scores[metric][s], values, atol=1e-5)
    # The seeds differ (else a seed axis would report a zero-width interval by construction).
    assert not np.allclose(params["prior"]["mean"][0], params["prior"]["mean"][1])


def test_rational_targets_and_the_agreement_of_each_labelling_with_them(nav_dataset):
    key = jax.random.PRNGKey(11)
    rational = rational_targets(key, nav_dataset)
    _, test = nav_dataset.split()
    by_hand = label_queries(key, test.users.rational(), test.segments, test.heldout.pairs)
    chex.assert_trees_all_equal(rational.heldout, by_hand)
    chex.assert_trees_all_equal(rational.context, test.context)  # only the held-out answers
    # A labelling whose held-out answers are the opposite agrees exactly where the first does not.
    flipped = nav_dataset.replace(heldout=nav_dataset.heldout.replace(
        labels=1.0 - nav_dataset.heldout.labels))  # fmt: skip
    agreement = label_agreement([nav_dataset, rational, flipped], rational)
    same = np.mean(np.asarray(test.heldout.labels) == np.asarray(by_hand.labels))
    np.testing.assert_allclose(agreement, [same, 1.0, 1.0 - same])
    assert same > 0.5  # the conftest users are rational: mostly the same answers


def test_the_correct_human_model_knows_the_discount_or_sees_the_believed_world(
    navigation, nav_dataset
):
    for model in (R.LinearBayes(), SMALL_BTL):
        known, seen = correct_human_model(model, navigation, nav_dataset, "gamma", 0.3)
        assert known == R.with_discount(model, 0.7) and known.discount == pytest.approx(0.7)
        assert seen is nav_dataset  # a myopic user judged the true features
    model = R.LinearBayes()
    known, seen = correct_human_model(model, navigation, nav_dataset, "belief", 0.4)
    assert known is model
    believed = perceived(navigation, nav_dataset, shifted_hazard(navigation, 0.4))
    np.testing.assert_array_equal(seen.segments.features, believed.segments.features)
    assert not np.allclose(seen.segments.features, nav_dataset.segments.features)
    chex.assert_trees_all_equal(seen.context, nav_dataset.context)  # the same answers
    for kind in ("beta", "epsilon", "regret"):
        with pytest.raises(ValueError, match=f"deviation kind '{kind}'"):
            correct_human_model(model, navigation, nav_dataset, kind, 0.5)
    with pytest.raises(ValueError, match="cannot assume a labeller discount"):
        correct_human_model(R.DPLMeanVariance(), navigation, nav_dataset, "gamma", 0.3)


@pytest.mark.slow
def test_policies_on_rewards_train_one_run_per_reward_and_score_its_test_users(
    navigation, nav_dataset
):
    """Two LinearBayes rewards (two labellings) in one vmap: each run is scored on its own
    dataset's test users acting on their posterior means, as training and evaluating by hand."""
    key, k_policy, k_eval = jax.random.split(jax.random.PRNGKey(12), 3)
    model = R.LinearBayes.for_beta(2.0)
    datasets = [nav_dataset, relabel(key, nav_dataset, nav_dataset.users.with_human(epsilon=0.4))]
    params = fit_labellings(model, TINY_TRAIN, key, datasets)
    fits = [(jax.tree.map(lambda x, p=p: x[p], params), d) for p, d in enumerate(datasets)]
    trainer = PolicyTrainer(navigation, "linear_bayes", model, TINY_PPO)
    evaluations, history = policies_on_rewards(trainer, fits, k_policy, k_eval, episodes=2)
    _, test = nav_dataset.split()
    assert len(evaluations) == 2
    for leaf in jax.tree.leaves(history):
        assert np.shape(leaf)[:2] == (TINY_PPO.num_updates, 2)  # [updates, R]
    inputs = [policy_inputs("linear_bayes", model, p, d) for p, d in fits]
    states, _ = trainer.train(jax.random.split(k_policy, 2),
                              jax.tree.map(lambda *xs: jnp.stack(xs), *inputs))  # fmt: skip
    for r, ((p, d), ev) in enumerate(zip(fits, evaluations, strict=True)):
        chex.assert_shape(ev.true_return, (test.num_users,))
        state = jax.tree.map(lambda x, r=r: x[r], states)
        z = pipeline.test_latents("linear_bayes", model, p, d)
        by_hand = trainer.evaluate(state, z, test.users.theta, k_eval, 2)
        np.testing.assert_allclose(ev.true_return, by_hand.true_return, rtol=1e-5, atol=1e-5)
    # The two rewards' posteriors differ, so do the latents the two runs act on.
    latents = [pipeline.test_latents("linear_bayes", model, *fit) for fit in fits]
    assert not np.allclose(latents[0], latents[1])
    # With a seed axis: the two fits as seeds of one reward are the same two runs, seed-major,
    # returned per seed, with curves [updates, S, R].
    seeded, seeded_history = policies_on_rewards(
        trainer, [(params, nav_dataset)], k_policy, k_eval, episodes=2, seeds=2
    )
    flat, flat_history = policies_on_rewards(
        trainer, [(fits[0][0], nav_dataset), (fits[1][0], nav_dataset)], k_policy, k_eval, 2
    )
    assert [len(row) for row in seeded] == [1, 1]
    for s in range(2):
        np.testing.assert_allclose(seeded[s][0].true_return, flat[s].true_return, atol=1e-5)
    leaves = zip(jax.tree.leaves(seeded_history), jax.tree.leaves(flat_history), strict=True)
    for leaf, other in leaves:
        assert np.shape(leaf)[:3] == (TINY_PPO.num_updates, 2, 1)
        np.testing.assert_allclose(np.asarray(leaf)[:, :, 0], other, atol=1e-5)


@pytest.mark.slow
def test_the_oracle_is_one_raw_reward_run_on_every_users_theta(navigation, nav_dataset):
    key = jax.random.PRNGKey(13)
    trainer, state, history = train_oracle(navigation, TINY_PPO, 1, nav_dataset, key)
    assert (trainer.method, trainer.model, trainer.reward_scaling) == ("oracle", None, "none")
    for leaf in jax.tree.leaves(history):
        assert np.shape(leaf)[:2] == (TINY_PPO.num_updates, 1)
    # As training by hand on the theta of every user, training and test alike, raw rewards
    # (no references, so no per-user scaling) and uniform user sampling (no log_weights).
    by_hand = PolicyTrainer(navigation, "oracle", None, TINY_PPO, 1, reward_scaling="none")
    alone = by_hand.train_one(key, {"theta": nav_dataset.users.theta})
    chex.assert_trees_all_equal(state.params, alone.params)
    values = trainer.segment_values(state, nav_dataset.segments, nav_dataset.users.theta[:2])
    chex.assert_shape(values, (2, nav_dataset.segments.num_segments, 2))
    # S keys: S runs in one vmap (states and history lead with S), run s as key s alone.
    keys = jax.random.split(key, 2)
    _, states, history = train_oracle(navigation, TINY_PPO, 1, nav_dataset, keys)
    for leaf in jax.tree.leaves(history):
        assert np.shape(leaf)[:2] == (TINY_PPO.num_updates, 2)
    for s in range(2):
        _, alone, _ = train_oracle(navigation, TINY_PPO, 1, nav_dataset, keys[s])
        run = jax.tree.map(lambda x, s=s: x[s], states)
        chex.assert_trees_all_close(run.params, alone.params, atol=1e-5)


@pytest.fixture(scope="module")
def oracle_runs(navigation):
    """Two tiny oracle PPO runs (z = theta) and their trainer."""
    trainer = PolicyTrainer(navigation, "oracle", None, TINY_PPO, reward_scaling="none")
    theta = jnp.asarray(navigation.default_weights)[None].repeat(4, 0)
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    states, _ = trainer.train(keys, {"theta": theta[None].repeat(2, 0)})
    return trainer, states


@pytest.mark.slow
def test_policy_curves_evaluate_every_run_on_each_number_of_queries(navigation, oracle_runs):
    trainer, states = oracle_runs
    theta = jnp.stack(
        [navigation.weights({"progress_a": 1.0}), navigation.weights({"safety": 1.0})]
    )
    # Run s acts on user u's latent after r queries: three numbers of queries, distinct latents.
    latents = jax.random.normal(jax.random.PRNGKey(8), (2, 2, 3, theta.shape[1]))
    key = jax.random.PRNGKey(9)
    ev = policy_curves(trainer, states, latents, theta, key, episodes=2)
    chex.assert_shape(ev.true_return, (2, 3, 2))  # [S, R+1, U]
    for s in range(2):
        state = jax.tree.map(lambda x, s=s: x[s], states)
        for r in range(3):
            one = trainer.evaluate(state, latents[s, :, r], theta, key, 2)
            np.testing.assert_allclose(ev.true_return[s, r], one.true_return, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(ev.success[s, r], one.success)
    # The oracles' reference: every run acting for each user on the user's own theta.
    reference = pipeline.oracle_returns(trainer, states, theta, key, 2)
    chex.assert_shape(reference, (2, 2))  # [S, U]
    for s in range(2):
        state = jax.tree.map(lambda x, s=s: x[s], states)
        one = trainer.evaluate(state, theta, theta, key, 2)
        np.testing.assert_allclose(reference[s], one.true_return, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_an_oracles_segment_values_are_its_critic_at_the_segment_ends(nav_dataset, oracle_runs):
    trainer, states = oracle_runs
    state = jax.tree.map(lambda x: x[0], states)
    theta = nav_dataset.users.theta[:2]
    values = trainer.segment_values(state, nav_dataset.segments, theta)
    chex.assert_shape(values, (2, nav_dataset.segments.num_segments, 2))
    start = nav_dataset.segments.obs_before[3]
    ppo = trainer.acting()
    critic = P.critic_values(ppo, state, jnp.concatenate([start, theta[1]]))
    np.testing.assert_allclose(values[1, 3, 0], critic, rtol=1e-5, atol=1e-5)


# --- the assumed discount: per-step weights of a segment's return ---------------------------------
class TestDiscountedReturn(chex.TestCase):
    @chex.all_variants(with_pmap=False)
    def test_matches_hand_computed_values(self):
        per_step = jnp.array([2.0, 2.0, 3.0])
        alive = jnp.array([True, True, True])
        total = self.variant(sum_over_steps, static_argnums=2)
        # weights 0.25, 0.5, 1: the last step counts fully, as for B-Pref's myopic teacher
        np.testing.assert_allclose(total(per_step, alive, 0.5), 0.25 * 2 + 0.5 * 2 + 3.0)
        np.testing.assert_allclose(total(per_step, alive.at[1].set(False), 0.5), 0.5 + 3.0)
        chex.assert_trees_all_equal(total(per_step, alive, 1.0), jnp.sum(per_step))


def test_a_model_told_the_discount_scores_segments_as_the_myopic_user():
    phi = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    theta = jnp.array([2.0, 1.0])
    alive = jnp.ones(3, bool)
    myopic = HumanModel.create(gamma=0.5)
    expected = segment_score(myopic, theta, phi)
    model = R.with_discount(R.LinearBayes(), 0.5)
    np.testing.assert_allclose(model.segment_return({}, phi, alive, theta), expected, rtol=1e-6)
    batch = R.PairBatch(phi[None], jnp.zeros_like(phi)[None], alive[None], alive[None],
                        jnp.ones(1), jnp.ones(1, bool))  # fmt: skip
    np.testing.assert_allclose(model.feature_differences(batch)[0], [1.25, 2.0], rtol=1e-6)
    ensemble = R.with_discount(R.Ensemble(SMALL_BTL, size=2), 0.5)
    assert ensemble.member.discount == 0.5 and R.with_discount(R.VPL(), 0.9).discount == 0.9
    with pytest.raises(ValueError, match="cannot assume a labeller discount"):
        R.with_discount(R.DPLMeanVariance(), 0.5)
    with pytest.raises(ValueError, match=r"discount=1\.5"):
        R.BTL(discount=1.5)


def _posterior_means(model, data: R.UserPairs):
    """Each user's Laplace posterior mean under the fixed prior N(0, I) (no training needed)."""
    params = model.init(jax.random.PRNGKey(0), data.batch())
    return jax.jit(lambda b: model.posterior(params, b).mean())(data.batch())


def test_known_discount_recovers_a_myopic_users_weights(nav_dataset):
    users = nav_dataset.users.replace(
        human=nav_dataset.users.human.replace(gamma=jnp.full(nav_dataset.num_users, 0.4))
    )
    pairs = jnp.concatenate([nav_dataset.context.pairs, nav_dataset.heldout.pairs], axis=1)
    answers = label_queries(jax.random.PRNGKey(1), users, nav_dataset.segments, pairs)
    data = R.user_pairs(nav_dataset.replace(context=answers), "context", "features")
    theta = nav_dataset.users.theta
    assumed = cosine(_posterior_means(R.LinearBayes(learn_prior=False), data), theta)
    known = cosine(_posterior_means(R.LinearBayes(learn_prior=False, discount=0.4), data), theta)
    assert known.mean() > assumed.mean() + 0.02, (known.mean(), assumed.mean())


def test_fitting_with_the_known_discount_learns_a_myopic_users_reward(navigation, nav_dataset):
    # One myopic user type (gamma = 0.4 over the segment). A linear BTL reward on the features
    # is trained twice on the same answers: assuming partial returns, and told the discount.
    # Told the discount, it learns weights much closer to the user's theta.
    theta = navigation.default_weights
    n = nav_dataset.num_users
    users = nav_dataset.users.replace(
        theta=jnp.tile(theta, (n, 1)),
        human=nav_dataset.users.human.replace(gamma=jnp.full(n, 0.4)),
    )
    pairs = jnp.concatenate([nav_dataset.context.pairs, nav_dataset.heldout.pairs], axis=1)
    answers = label_queries(jax.random.PRNGKey(7), users, nav_dataset.segments, pairs)
    data = R.user_pairs(nav_dataset.replace(users=users, context=answers), "context", "features")
    config = R.TrainConfig(num_epochs=150, users_per_batch=16, learning_rate=0.05)
    linear = R.BTL(hidden=(), inputs="features", normalize_inputs=False)

    def learned_alignment(model):
        params, _ = R.fit(model, config, jax.random.PRNGKey(8), data)
        return float(cosine(params["reward"]["params"]["Dense_0"]["kernel"][:, 0], theta))

    assumed = learned_alignment(linear)
    known = learned_alignment(R.with_discount(linear, 0.4))
    # 1 - cosine (about 0.06 assuming partial returns, 0.02 told the discount) at least halves
    assert known > 0.95 and 1.0 - known < 0.5 * (1.0 - assumed), (known, assumed)


def test_known_belief_recovers_the_weights_of_a_user_with_a_false_belief(navigation, nav_dataset):
    # Users who care about the hazard, but believe it is 0.4 m to the right of where it is.
    theta = navigation.weights({"progress_a": 0.5, "safety": 2.0, "courtesy": 0.5})
    users = nav_dataset.users.replace(theta=jnp.tile(theta, (nav_dataset.num_users, 1)))
    world = navigation.true_world
    world = world.replace(hazard_center=world.hazard_center + jnp.array([0.4, 0.0]))
    segments = nav_dataset.segments
    seen = segments.replace(
        features=believed_features(navigation, segments, jnp.arange(segments.num_segments), world)
    )
    pairs = jnp.concatenate([nav_dataset.context.pairs, nav_dataset.heldout.pairs], axis=1)
    answers = label_queries(jax.random.PRNGKey(2), users, seen, pairs)
    model = R.LinearBayes(learn_prior=False)
    true_bank = R.user_pairs(nav_dataset.replace(context=answers), "context", "features")
    believed = R.user_pairs(
        nav_dataset.replace(context=answers, segments=seen), "context", "features"
    )
    assumed = cosine(_posterior_means(model, true_bank), users.theta)
    known = cosine(_posterior_means(model, believed), users.theta)
    assert known.mean() > assumed.mean() + 0.05, (known.mean(), assumed.mean())


# --- regret: optimal values at the ends of segments -----------------------------------------------
def test_segment_values_read_the_state_before_and_after_the_last_live_step():
    obs = jnp.arange(3 * 2 * 1, dtype=jnp.float32).reshape(3, 2, 1) + 1.0  # [S, H, O]
    segments = Segments(
        obs=obs,
        actions=jnp.zeros((3, 2, 1)),
        features=jnp.zeros((3, 2, 1)),
        positions=jnp.zeros((3, 2, 2)),
        alive=jnp.array([[True, True], [True, False], [False, False]]),
        obs_before=jnp.array([[10.0], [20.0], [30.0]]),
    )
    z = jnp.array([[0.0], [100.0]])  # two users
    values = segment_values(lambda x: jnp.sum(x, -1), segments, z)
    # start: obs_before; end: the observation after the last live step (segment 0: 2; segment 1,
    # whose second step is dead: 3); a segment with no live step ends where it starts.
    expected = np.array([[10.0, 2.0], [20.0, 3.0], [30.0, 30.0]])
    np.testing.assert_allclose(values, np.stack([expected, expected + 100.0]))


def test_regret_labels_follow_the_optimal_advantage(nav_dataset):
    users = nav_dataset.users.replace(
        human=nav_dataset.users.human.replace(regret_weight=jnp.ones(nav_dataset.num_users))
    )
    s = nav_dataset.segments.num_segments
    values = jax.random.normal(jax.random.PRNGKey(3), (nav_dataset.num_users, s, 2)) * 5.0
    pairs = nav_dataset.context.pairs
    answers = label_queries(jax.random.PRNGKey(4), users, nav_dataset.segments, pairs, values)
    feats = np.asarray(nav_dataset.segments.features)
    theta, v = np.asarray(users.theta), np.asarray(values)
    for u in range(3):
        for q in range(pairs.shape[1]):
            a, b = np.asarray(pairs[u, q])
            score = [feats[i].sum(0) @ theta[u] + v[u, i, 1] - v[u, i, 0] for i in (a, b)]
            assert answers.labels[u, q] == float(score[0] > score[1])
    plain = label_queries(jax.random.PRNGKey(4), users, nav_dataset.segments, pairs)
    assert not np.array_equal(answers.labels, plain.labels)  # the values mattered


def test_critic_values_undo_reward_normalisation(navigation):
    env = P.LatentReward(navigation, P.constant_sampler(navigation.default_weights),
                         P.oracle_reward)  # fmt: skip
    ppo = P.make_train(env, TINY_PPO)
    state = jax.jit(ppo.init)(jax.random.PRNGKey(0))
    obs = state.env_state.obs[:3]
    raw = ppo.value(ppo.policy_params(state), obs)
    doubled = state._replace(return_stats=state.return_stats.replace(std=jnp.float32(2.0)))
    np.testing.assert_allclose(P.critic_values(ppo, doubled, obs), 2.0 * raw, rtol=1e-6)


def test_rational_users_keep_their_weights_and_drop_their_deviations(nav_dataset):
    users = nav_dataset.users.replace(
        human=nav_dataset.users.human.replace(beta=jnp.ones(16), epsilon=jnp.full(16, 0.3))
    )
    rational = users.rational()
    chex.assert_trees_all_equal(rational.theta, users.theta)
    assert np.all(np.isinf(rational.human.beta)) and np.all(rational.human.epsilon == 0)
    assert rational.human.gamma.shape == (16,)


# --- relabelled data ------------------------------------------------------------------------------
@pytest.mark.slow
def test_fitting_many_labellings_at_once_equals_fitting_each(nav_dataset):
    fit_users, valid_users = R.validation_split(nav_dataset)
    train, valid = R.user_pairs(fit_users, "all"), R.user_pairs(valid_users, "all")

    def flipped(d):
        return relabelled(d, 1.0 - d.labels, d.mask)

    def stack(d):  # two labellings: the answers, and their opposites
        return relabelled(d, jnp.stack([d.labels, 1 - d.labels]), jnp.stack([d.mask] * 2))

    key = jax.random.PRNGKey(5)
    params = fit_relabellings(SMALL_BTL, TINY_TRAIN, key, stack(train), stack(valid))
    for p, (t, v) in enumerate(((train, valid), (flipped(train), flipped(valid)))):
        one, _ = R.fit(SMALL_BTL, TINY_TRAIN, key, t, v)
        chex.assert_trees_all_close(jax.tree.map(lambda x, p=p: x[p], params), one, atol=1e-5)
    _, test = nav_dataset.split()
    context, heldout = R.user_pairs(test, "context"), R.user_pairs(test, "heldout")
    accuracy, _ = score_relabellings(SMALL_BTL, params, stack(context), heldout)
    first = R.evaluate(SMALL_BTL, jax.tree.map(lambda x: x[0], params), context, heldout)
    np.testing.assert_allclose(accuracy[0], first.accuracy, atol=1e-6)


# --- the iterate loop -----------------------------------------------------------------------------
def test_information_gain_asks_where_the_belief_is_split():
    # Segment 0 and 1 are identical (every particle says 0.5: no information); segment 2 differs
    # from 0 along the first feature, where the prior N(0, I) is uncertain.
    feats = jnp.array([[[0.0, 0.0]], [[0.0, 0.0]], [[3.0, 0.0]]])
    bank = R.SegmentBank(inputs=feats, alive=jnp.ones((3, 1), bool), kind="features")
    model = R.LinearBayes(learn_prior=False)
    alive = jnp.ones((1, 1, 1), bool)
    no_answer = jnp.zeros((1, 1))
    empty = R.PairBatch(feats[None, :1], feats[None, :1], alive, alive, no_answer, no_answer > 0)
    params = model.init(jax.random.PRNGKey(0), empty)
    offered = jnp.array([[[0, 1], [2, 0], [1, 0]]], jnp.int32)
    pick = select_queries(
        jax.random.PRNGKey(1), model, params, "info_gain", empty, bank, offered, 1, 64
    )
    assert int(pick[0, 0]) == 1


@dataclasses.dataclass(frozen=True)
class LinearMembers(R.Ensemble):
    """An ensemble whose members are fixed linear rewards ``x . params[e]`` (one step each)."""

    def member_logits(self, params, batch):
        def ret(x):
            return jnp.einsum("...hd,ed->e...", x, params)

        return ret(batch.inputs_a) - ret(batch.inputs_b)


def test_ensemble_information_gain_weighs_members_by_the_users_answers():
    """Four members; the user's answers rule out members 2 and 3. Pair B (1, 1, 0, 0) splits the
    uniform ensemble best, but the user's surviving members agree on it; pair A (1, 0, 1, 1)
    splits exactly the members still in play. The loop must ask A (it asked B when it weighted
    the members uniformly, unlike vpl_jax.active's belief)."""
    members = 10.0 * jnp.array([[1, 1, 0], [1, -1, 0], [-1, 0, 1], [-1, 0, -1]], jnp.float32)
    feats = jnp.array([[[0, 0, 0]], [[1, 0, 0]], [[-1, 2, 0]]], jnp.float32)  # [S, H=1, 3]
    bank = R.SegmentBank(inputs=feats, alive=jnp.ones((3, 1), bool), kind="features")
    answers = jnp.array([[1, 0]] * 4, jnp.int32)  # segment 1 over 0, four times
    context = R.gather_pairs(bank, answers, jnp.ones(4), jnp.ones(4, bool))
    context = jax.tree.map(lambda x: x[None], context)  # one user
    offered = jnp.array([[[1, 0], [2, 0]]], jnp.int32)  # B, A
    model = LinearMembers(size=4)
    pick = select_queries(
        jax.random.PRNGKey(0), model, members, "info_gain", context, bank, offered, 1
    )
    assert int(pick[0, 0]) == 1


def test_padding_the_context_leaves_the_input_normaliser_alone(nav_dataset):
    """The loop pads every user's context to its final size; a model initialised on the padded
    context standardises its inputs exactly as on the real pairs."""
    padded = nav_dataset.replace(context=pad_context(nav_dataset, nav_dataset.context_size + 8))
    params = [
        jax.jit(SMALL_BTL.init)(jax.random.PRNGKey(0), R.user_pairs(d, "context").batch())
        for d in (nav_dataset, padded)
    ]
    chex.assert_trees_all_close(params[0]["input_norm"], params[1]["input_norm"], rtol=1e-6)


def test_normalized_return_and_gap_by_hand():
    assert normalized_return(np.array([4.0, 6.0]), np.array([10.0]), np.array([0.0])) == 0.5
    assert misidentification_gap(0.9, 0.5) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="oracle"):
        normalized_return(1.0, 0.0, 0.0)


@pytest.mark.slow
def test_round_zero_of_the_iterate_loop_is_the_offline_pipeline(navigation, nav_dataset):
    key = jax.random.PRNGKey(6)
    loop = IterateConfig(schedule=(2,), episodes_per_round=2, offered_per_user=4,
                         onpolicy_pairs=4, num_eval_episodes=2)  # fmt: skip
    trainer = PolicyTrainer(navigation, "btl", SMALL_BTL, TINY_PPO)
    rounds = iterate(key, nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop)
    alone = offline(round_key(key, 0), nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, 2)
    chex.assert_trees_all_equal(rounds[0].pipeline.reward.params, alone.reward.params)
    chex.assert_trees_all_equal(rounds[0].pipeline.state.params, alone.state.params)
    chex.assert_trees_all_equal(rounds[0].pipeline.policy.true_return, alone.policy.true_return)
    assert rounds[0].heldout_accuracy == alone.heldout_accuracy

    # Round 1 trained on two more answers per user, about the round-0 policy's segments.
    assert [r.n_queries for r in rounds] == [0, 2]
    new = rounds[0].segments
    assert new.num_segments == 2 * navigation.episode_length // nav_dataset.segments.horizon
    # Round 1 is a real round: it refitted the reward on the grown data (other params than
    # round 0's) and rolled out its own policy (new segments, which it is scored on).
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)),
        rounds[1].pipeline.reward.params,
        rounds[0].pipeline.reward.params,
    )
    assert any(jax.tree.leaves(changed))
    assert not np.allclose(rounds[1].segments.features, new.features)
    assert 0.0 <= rounds[1].onpolicy_accuracy <= 1.0
    assert np.isfinite(rounds[1].true_return)


@pytest.mark.slow
def test_s_seeds_of_the_iterate_loop_in_one_vmap_equal_each_seed_alone(navigation, nav_dataset):
    """Two seeds in one call (one vmap per reward fit, PPO, rollout and labelling) give each
    seed's loop run alone with its key, to float rounding; seed 0's key is the loop's key."""
    key = jax.random.PRNGKey(6)
    keys = seed_keys(key, 2)
    np.testing.assert_array_equal(keys[0], key)
    loop = IterateConfig(schedule=(2,), episodes_per_round=2, offered_per_user=4,
                         onpolicy_pairs=4, num_eval_episodes=2)  # fmt: skip
    trainer = PolicyTrainer(navigation, "btl", SMALL_BTL, TINY_PPO)
    together = iterate(keys, nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop)
    assert [(r.round, r.num_seeds, r.seeds) for r in together] == [(0, 2, True), (1, 2, True)]
    close = functools.partial(chex.assert_trees_all_close, atol=1e-4, rtol=1e-4)
    for s in range(2):
        alone = iterate(keys[s], nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop)
        for both, one in zip(together, alone, strict=True):
            mine = both.seed(s)
            close(mine.pipeline.reward.params, one.pipeline.reward.params)
            close(mine.pipeline.state.params, one.pipeline.state.params)
            close(mine.pipeline.policy.true_return, one.pipeline.policy.true_return)
            close(mine.segments.features, one.segments.features)
            assert mine.onpolicy_accuracy == pytest.approx(one.onpolicy_accuracy, abs=1e-6)
            assert mine.heldout_accuracy == pytest.approx(one.heldout_accuracy, abs=1e-6)
    # The seeds' rounds diverge: each rolled out its own policy.
    assert not np.allclose(together[0].segments.features[0], together[0].segments.features[1])


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_an_iterate_loop_killed_mid_round_resumes_to_identical_rounds(
    navigation, nav_dataset, tmp_path
):
    """Killed in round 1's PPO, the loop run again recomputes round 0's reward, restores its
    finished policy, resumes round 1 from its checkpoint (one chunk left) and ends as an
    uninterrupted loop."""
    from vpl_jax.runtime.checkpoint import Checkpointer

    key = jax.random.PRNGKey(6)
    loop = IterateConfig(schedule=(2,), episodes_per_round=2, offered_per_user=4,
                         onpolicy_pairs=4, num_eval_episodes=2)  # fmt: skip
    trainer = PolicyTrainer(navigation, "btl", SMALL_BTL, TINY_PPO, chunk_updates=1)
    reference = iterate(key, nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop)

    def checkpointers(r):
        return Checkpointer(tmp_path / f"round{r}", {"loop": 1}, every=1)

    chunk, ran = trainer._chunk, []

    def counted(states, inputs, n, die_at=None):
        if not isinstance(jax.tree.leaves(states)[0], jax.core.Tracer):  # not a structure trace
            ran.append(n)
            if len(ran) == die_at:
                raise Interrupt
        return chunk(states, inputs, n)

    trainer._chunk = functools.partial(counted, die_at=4)  # round 1's second (last) chunk
    with pytest.raises(Interrupt):
        iterate(key, nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop,
                checkpointers=checkpointers)  # fmt: skip
    ran.clear()
    trainer._chunk = counted
    resumed = iterate(key, nav_dataset, SMALL_BTL, "btl", TINY_TRAIN, trainer, loop,
                      checkpointers=checkpointers)  # fmt: skip
    assert ran == [1]  # round 0 restored whole; round 1 ran only its last update
    for a, b in zip(resumed, reference, strict=True):
        chex.assert_trees_all_equal(a.pipeline.reward.params, b.pipeline.reward.params)
        chex.assert_trees_all_equal(a.pipeline.state.params, b.pipeline.state.params)
        chex.assert_trees_all_equal(a.pipeline.policy.true_return, b.pipeline.policy.true_return)
        assert a.onpolicy_accuracy == b.onpolicy_accuracy


# --- the sweep's figure ---------------------------------------------------------------------------
def test_metric_grid_draws_a_line_per_method_and_a_dashed_one_per_variant():
    def row(method, metric, kind, x, value, human="assumed"):
        return {"method": method, "metric": metric, "kind": kind, "x": x, "value": value,
                "human": human}  # fmt: skip

    rows = [row("b", "acc", "k1", 1.0, 0.6), row("b", "acc", "k1", 0.0, 0.9),
            row("b", "acc", "k1", 1.0, 0.8, "correct"), row("a", "acc", "k2", 0.0, 0.5),
            row("a", "ret", "k1", 0.0, 3.0), row("c", "acc", "k1", 0.0, 0.1)]  # fmt: skip
    fig = metric_grid(rows, ("acc", "none", "ret"), {"k1": "size 1", "k2": "size 2"}, ("a", "b"),
                      column="kind", x="x", line="method", variant=("human", "correct", "known"),
                      colors=("c", "a", "b"))  # fmt: skip
    axes = np.array(fig.axes[:4]).reshape(2, 2)  # "none" has no rows: two rows of axes
    lines = {ax: {ln.get_label(): ln for ln in ax.get_lines()} for ax in axes.flat}
    assert set(lines[axes[0, 0]]) == {"b", "b (known)"}  # "c" is not a line drawn
    solid, dashed = lines[axes[0, 0]]["b"], lines[axes[0, 0]]["b (known)"]
    np.testing.assert_array_equal(solid.get_xydata(), [[0.0, 0.9], [1.0, 0.6]])  # sorted by x
    assert (solid.get_linestyle(), solid.get_marker()) == ("-", "o")
    assert (dashed.get_linestyle(), dashed.get_marker()) == ("--", "s")
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert solid.get_color() == dashed.get_color() == palette[2]  # b's place in colors
    assert lines[axes[0, 1]]["a"].get_color() == palette[1]
    assert set(lines[axes[1, 0]]) == {"a"} and not lines[axes[1, 1]]
    assert [ax.get_xlabel() for ax in axes.flat] == ["", "", "size 1", "size 2"]  # bottom row
    assert [ax.get_ylabel() for ax in axes.flat] == ["acc", "", "ret", ""]  # first column
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["b", "b (known)", "a"]
    plt.close(fig)


def test_metric_grid_draws_the_mean_over_seeds_with_its_interval():
    """Rows repeated at one x (one per seed) give one line through their mean, with the 95 %
    interval over seeds (plotting.over_seeds) as error bars."""
    from vpl_jax.plotting import over_seeds

    values = {0.0: [0.9, 0.8, 0.7], 1.0: [0.5, 0.6, 0.4]}
    rows = [{"method": "a", "metric": "acc", "kind": "k", "x": x, "value": v, "seed": s}
            for x, vs in values.items() for s, v in enumerate(vs)]  # fmt: skip
    fig = metric_grid(rows, ("acc",), {"k": "size"}, ("a",), column="kind", x="x")
    ax = fig.axes[0]
    (container,) = ax.containers  # one errorbar: its line, caps and bars
    assert container.get_label() == "a"
    line, _, (bars,) = container.lines
    np.testing.assert_allclose(line.get_xydata(), [[0.0, 0.8], [1.0, 0.5]])  # the means
    assert (line.get_linestyle(), line.get_marker()) == ("-", "o")
    segments = bars.get_segments()  # the vertical bars, one per x
    mean, low, high = over_seeds(np.array([values[0.0], values[1.0]]).T)
    for n, segment in enumerate(segments):
        np.testing.assert_allclose(segment[:, 1], [low[n], high[n]])
        assert low[n] < mean[n] < high[n]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a"]
    plt.close(fig)


# --- the experiment: a tiny run ------------------------------------------------------------------
TINY_RUN = [
    "--kinds", "gamma", "regret", "--gamma-sizes", "0.5", "--regret-sizes", "1",
    "--methods", "linear_bayes", "btl", "--policy-methods", "btl", "--policy-kinds", "gamma",
    "--data.num-users", "16", "--data.context-size", "4", "--data.heldout-size", "8",
    "--data.pool-size", "256", "--data.num-episodes", "32", "--reward-train.num-epochs", "2",
    "--reward-train.users-per-batch", "4", "--sizes.hidden", "16", "--ppo.total-timesteps", "640",
    "--ppo.num-envs", "16", "--ppo.num-steps", "10", "--ppo.num-minibatches", "2",
    "--ppo.update-epochs", "1", "--ppo.hidden-sizes", "16", "--num-eval-episodes", "1",
    "--chunk-updates", "2",
]  # fmt: skip


@pytest.mark.slow  # 2.4 min on 2 busy cores: the data, two oracles, the fits, 2 x 3 PPO runs
def test_the_sweep_writes_every_number_per_seed(load_experiment, tmp_path, monkeypatch):
    """With --num-seeds 2 every trained number (oracle, reward fits, corrected fits, PPO on the
    learned rewards) has a row per seed, intervals.json has two seeds in each of their cells,
    and the notes table shows the mean over the seeds. The users' label agreement is the
    data's, written once."""
    import json

    from vpl_jax import harness

    monkeypatch.setenv("VPL_JAX_PROGRESS", "0")
    experiment = load_experiment("misspecification")
    argv = [*TINY_RUN, "--num-seeds", "2", "--run-name", "s2", "--results-dir", str(tmp_path)]
    harness.run_experiment(
        "misspecification", experiment.Config, experiment.PRESETS, experiment.main, argv
    )
    folder = tmp_path / "misspecification" / "s2"
    rows = json.loads((folder / "metrics.json").read_text())["rows"]
    seeds = {}
    for r in rows:
        cell = (r["method"], r["metric"], r["deviation_kind"], r["deviation"], r["human_model"])
        seeds.setdefault(cell, []).append(r["seed"])
    trained = {cell: s for cell, s in seeds.items() if cell[0] != "users"}
    assert {cell[:2] for cell in trained} == {
        ("oracle", "true_return"), ("linear_bayes", "alignment"),
        ("linear_bayes", "rational_accuracy"), ("btl", "rational_accuracy"),
        ("btl", "true_return"),
    }  # fmt: skip
    assert all(sorted(s) == [0, 1] for s in trained.values()), trained
    assert ("btl", "true_return", "gamma", 0.5, "correct") in trained  # the corrected reward's PPO
    assert ("linear_bayes", "alignment", "gamma", 0.5, "correct") in trained
    agreement = [s for cell, s in seeds.items() if cell[0] == "users"]
    assert agreement and all(s == [0] for s in agreement)
    intervals = json.loads((folder / "intervals.json").read_text())["intervals"]
    assert {c["num_seeds"] for c in intervals if c["method"] != "users"} == {2}
    summary = (folder / "summary.md").read_text()
    assert "mean over 2 seeds" in summary and (folder / "misspecification.png").exists()
    # The notes' cell at no deviation is the mean of its two seeds' rows.
    values = [r["value"] for r in rows if (r["method"], r["metric"], r["deviation_kind"],
              r["deviation"], r["human_model"]) == ("btl", "true_return", "gamma", 0.0,
              "boltzmann")]  # fmt: skip
    line = next(x for x in summary.splitlines() if x.startswith("| btl | true_return | gamma"))
    assert line.split(" | ")[3] == f"{np.mean(values):.3f}"


TINY_LOOP = [
    "--methods", "btl", "--criteria", "random", "--data.num-users", "16",
    "--data.context-size", "4", "--data.heldout-size", "8", "--data.pool-size", "256",
    "--data.num-episodes", "32", "--reward-train.num-epochs", "2",
    "--reward-train.users-per-batch", "4", "--sizes.hidden", "16", "--ppo.total-timesteps", "640",
    "--ppo.num-envs", "16", "--ppo.num-steps", "10", "--ppo.num-minibatches", "2",
    "--ppo.update-epochs", "1", "--ppo.hidden-sizes", "16", "--iterate.schedule", "2",
    "--iterate.episodes-per-round", "2", "--iterate.offered-per-user", "4",
    "--iterate.onpolicy-pairs", "4", "--iterate.num-eval-episodes", "1", "--chunk-updates", "2",
]  # fmt: skip


@pytest.mark.slow
def test_the_iterate_loop_writes_every_number_per_seed(load_experiment, tmp_path, monkeypatch):
    """With --num-seeds 2 every trained cell of misidentification (the oracle, the broad
    reference, every round of the loop) has a row per seed and two seeds in intervals.json;
    standing still, trained on nothing, is written once; the notes show the mean."""
    import json

    from vpl_jax import harness

    monkeypatch.setenv("VPL_JAX_PROGRESS", "0")
    experiment = load_experiment("misidentification")
    # A 640-step oracle need not beat standing still, which normalised returns refuse.
    unchecked = lambda r, oracle, still: float(np.mean(r) - np.mean(still))  # noqa: E731
    monkeypatch.setattr(experiment, "normalized_return", unchecked)
    argv = [*TINY_LOOP, "--num-seeds", "2", "--run-name", "s2", "--results-dir", str(tmp_path)]
    harness.run_experiment(
        "misidentification", experiment.Config, experiment.PRESETS, experiment.main, argv
    )
    folder = tmp_path / "misidentification" / "s2"
    rows = json.loads((folder / "metrics.json").read_text())["rows"]
    fields = ("method", "metric", "round", "n_queries", "criterion", "data")
    seeds = {}
    for r in rows:
        seeds.setdefault(tuple(r.get(f) for f in fields), []).append(r["seed"])
    trained = {cell: s for cell, s in seeds.items() if cell[0] != "still"}
    assert {(c[0], c[2], c[4], c[5]) for c in trained} == {
        ("oracle", None, None, None), ("btl", 0, "offline", "broad"),
        ("btl", 0, "random", "narrow"), ("btl", 1, "random", "narrow"),
    }  # fmt: skip
    assert all(sorted(s) == [0, 1] for s in trained.values()), trained
    assert [s for cell, s in seeds.items() if cell[0] == "still"] == [[0]]
    intervals = json.loads((folder / "intervals.json").read_text())["intervals"]
    assert {c["num_seeds"] for c in intervals if c["method"] != "still"} == {2}
    summary = (folder / "summary.md").read_text()
    assert "mean over 2 seeds" in summary and (folder / "misidentification_rounds.png").exists()
    gap = [r["value"] for r in rows if (r["method"], r["metric"], r.get("round"), r.get("data"))
           == ("btl", "misidentification_gap", 1, "narrow")]  # fmt: skip
    line = next(x for x in summary.splitlines() if x.startswith("| btl | random |"))
    assert line.rstrip(" |").endswith(f"→ {np.mean(gap):.2f}")


# --- the experiments' configs (bad ones: test_bad_inputs.py) -------------------------------------
def test_presets_are_valid(load_experiment):
    for name in ("misspecification", "misidentification"):
        experiment = load_experiment(name)
        for preset in experiment.PRESETS.values():
            preset.validate()


# --- the policy-method registry -------------------------------------------------------------------
@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_a_registered_policy_method_is_one_entry_and_acts_as_its_twin(nav_dataset, monkeypatch):
    """A new method is one registry entry: 'vpl_twin' (VPL's reward, posterior z) gets exactly
    VPL's policy inputs and test latents; unknown names follow their model; bad entries and a
    latent method without a latent model are refused."""
    from vpl_jax import pipeline

    monkeypatch.setattr(pipeline, "POLICY_METHODS", dict(pipeline.POLICY_METHODS))
    pipeline.register_policy_method(pipeline.PolicyMethod("vpl_twin", "vpl", "posterior"))
    model = R.VPL(latent_dim=2, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
    pairs = R.user_pairs(nav_dataset, "all", model.inputs)
    params = model.init(jax.random.PRNGKey(0), pairs.batch(jnp.arange(4)))
    for fn in (pipeline.policy_inputs, pipeline.test_latents):
        chex.assert_trees_all_equal(
            fn("vpl_twin", model, params, nav_dataset), fn("vpl", model, params, nav_dataset)
        )
    assert pipeline.policy_method("dpl_meanvar", R.DPLMeanVariance()).latent == "none"
    assert pipeline.policy_method("linear_bayes", R.LinearBayes()).latent == "posterior"
    assert pipeline.is_unconditioned("btl", SMALL_BTL)
    with pytest.raises(ValueError, match="conditions on a user posterior"):
        pipeline.policy_method("vpl", SMALL_BTL)
    with pytest.raises(ValueError, match="already registered"):
        pipeline.register_policy_method(pipeline.PolicyMethod("vpl", "vpl", "posterior"))
    with pytest.raises(ValueError, match="latent='goal'"):
        pipeline.PolicyMethod("x", "vpl", "goal")
    with pytest.raises(ValueError, match="only the true reward"):
        pipeline.PolicyMethod("x", "btl", "theta")


def test_the_pipeline_refuses_a_policy_trainer_built_for_another_method(navigation):
    """offline and offline_seeds share one check: the trainer's method and model must match."""
    trainer = PolicyTrainer(navigation, "btl", R.BTL(), TINY_PPO)
    pipeline.check_trainer(trainer, "btl", R.BTL())  # the same method and model: accepted
    with pytest.raises(ValueError, match="the policy trainer is for method 'btl', not 'vpl'"):
        pipeline.check_trainer(trainer, "vpl", R.BTL())
    with pytest.raises(ValueError, match="not 'btl' with this model"):
        pipeline.check_trainer(trainer, "btl", R.BTL(hidden=(7,)))
