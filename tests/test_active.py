"""Active query selection at the model level: the invariants of the scores, the elicitation loop
against a plain Python loop, the uncertainty report, and the claim that choosing queries by
information gain identifies a user faster than asking at random."""

import dataclasses
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax import active as A
from vpl_jax import rewards as R
from vpl_jax.active.beliefs import sigma_points
from vpl_jax.data import DatasetConfig, build_dataset
from vpl_jax.users import Population, pair_label_distribution, sample_label

# Tiny networks: these tests check plumbing and invariants, not learning.
TINY_VPL = R.VPL(latent_dim=3, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
TINY_ENSEMBLE = R.Ensemble(R.BTL(hidden=(8,)), size=3)
LINEAR_BAYES = R.LinearBayes()
NUM_CANDIDATES = 24


def init(model, dataset, seed=0):
    train, _ = dataset.split()
    batch = R.user_pairs(train, "all", model.inputs).batch(jnp.arange(4))
    return model.init(jax.random.PRNGKey(seed), batch)


def pool(dataset, model):
    return A.candidates(dataset, model.inputs, pool=dataset.pool[:NUM_CANDIDATES])


def first_pairs(dataset, model, k):
    """``PairBatch[k]``: the first test user's first k context pairs."""
    _, test = dataset.split()
    return jax.tree.map(lambda x: x[0, :k], R.user_pairs(test, "context", model.inputs).batch())


@pytest.fixture(scope="module")
def models(nav_dataset):
    """(belief, params) of untrained tiny models (scores depend on the posterior, not on its
    quality)."""
    return {
        "vpl": (A.make_belief(TINY_VPL, 8), init(TINY_VPL, nav_dataset)),
        "linear_bayes": (A.make_belief(LINEAR_BAYES, 8), init(LINEAR_BAYES, nav_dataset)),
        "btl_ensemble": (A.make_belief(TINY_ENSEMBLE), init(TINY_ENSEMBLE, nav_dataset)),
    }


_score = jax.jit(A.score_candidates, static_argnums=(0, 1))


def scores(belief, criterion, params, cands, context, seed=3):
    """f32[Q]: the criterion's scores, the context's last slot being the free one."""
    key = jax.random.PRNGKey(seed)
    available = jnp.ones(cands.num_candidates, bool)
    acq = A.Acquisition(criterion)
    return _score(belief, acq, params, cands, context, context.num_pairs - 1, available, key)[0]


# --- invariants of the scores, at the model level ------------------------------------------------
SWAP_CASES = [
    ("vpl", "info_gain"),
    ("vpl", "entropy"),
    ("linear_bayes", "mutual_info_theta"),
    ("linear_bayes", "volume_removal"),
    ("linear_bayes", "entropy"),
    ("btl_ensemble", "disagreement"),
]


@pytest.mark.parametrize(
    ("model", "criterion"), SWAP_CASES, ids=[f"{m}-{c}" for m, c in SWAP_CASES]
)
@pytest.mark.slow
def test_scores_are_invariant_to_swapping_a_and_b(nav_dataset, models, model, criterion):
    belief, params = models[model]
    cands = pool(nav_dataset, belief.model)
    context = first_pairs(nav_dataset, belief.model, 4).replace(
        mask=jnp.array([True, True, True, False])  # the last slot is the free one
    )
    s = scores(belief, criterion, params, cands, context)
    swapped = scores(belief, criterion, params, cands.swapped(), context)
    chex.assert_shape(s, (NUM_CANDIDATES,))
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s, swapped, atol=1e-5, rtol=1e-4)


def test_model_level_scores_are_non_negative(nav_dataset, models):
    belief, params = models["vpl"]
    cands = pool(nav_dataset, TINY_VPL)
    for k in (1, 3, 6):  # the posterior after 0, 2 and 5 answers (the last slot is free)
        context = first_pairs(nav_dataset, TINY_VPL, k)
        context = context.replace(mask=jnp.arange(k) < k - 1)
        for criterion in ("info_gain", "disagreement", "volume_removal"):
            s = scores(belief, criterion, params, cands, context, seed=k)
            assert np.all(np.asarray(s) >= 0.0), (k, criterion)
            assert np.any(np.asarray(s) > 0.0), (k, criterion)  # the prior is not a point mass


def test_information_gain_is_zero_for_identical_segments(nav_dataset, models):
    belief, params = models["vpl"]
    cands = pool(nav_dataset, TINY_VPL)
    same = cands.replace(pairs=jnp.stack([cands.pairs[:, 0], cands.pairs[:, 0]], axis=-1))
    context = first_pairs(nav_dataset, TINY_VPL, 4)
    for criterion in ("info_gain", "disagreement"):
        np.testing.assert_allclose(scores(belief, criterion, params, same, context), 0.0, atol=1e-7)
    assert np.any(np.asarray(scores(belief, "info_gain", params, cands, context)) > 1e-3)


def test_information_gain_is_zero_for_a_point_mass_posterior(nav_dataset, models):
    cands = pool(nav_dataset, LINEAR_BAYES)
    # A LinearBayes prior of width 1e-6 around a user's theta: every sample is that user.
    _, test = nav_dataset.split()
    point = R.LinearBayes(prior_std=1e-6, learn_prior=False)
    params = init(point, nav_dataset)
    params["prior"]["mean"] = test.users.theta[0]
    context = first_pairs(nav_dataset, point, 2).replace(mask=jnp.array([False, False]))
    belief = A.make_belief(point, 8)
    p, _, _ = A.particle_probs(belief, params, context, cands, jax.random.PRNGKey(0))
    assert np.ptp(np.asarray(p), axis=0).max() < 1e-3  # samples agree ...
    assert np.abs(np.asarray(p) - 0.5).max() > 0.1  # ... and are confident
    np.testing.assert_allclose(
        scores(belief, "mutual_info_theta", params, cands, context), 0.0, atol=1e-6
    )
    # An ensemble of identical members is a point mass too, exactly.
    ens_belief, ens_params = models["btl_ensemble"]
    same = jax.tree.map(lambda x: jnp.broadcast_to(x[:1], x.shape), ens_params)
    cands = pool(nav_dataset, TINY_ENSEMBLE)
    context = first_pairs(nav_dataset, TINY_ENSEMBLE, 2)
    for criterion in ("info_gain", "disagreement"):
        np.testing.assert_allclose(
            scores(ens_belief, criterion, same, cands, context), 0.0, atol=1e-6
        )


def test_ensemble_weights_follow_the_likelihood_of_the_answers(nav_dataset, models):
    belief, params = models["btl_ensemble"]
    context = first_pairs(nav_dataset, TINY_ENSEMBLE, 4)
    w = belief.weights(params, context)
    np.testing.assert_allclose(jnp.sum(w), 1.0, rtol=1e-6)
    logits = TINY_ENSEMBLE.member_logits(params, context)  # [E, K]
    loglik = jnp.sum(jax.nn.log_sigmoid(jnp.where(context.labels > 0.5, logits, -logits)), -1)
    np.testing.assert_allclose(w, jax.nn.softmax(loglik), rtol=1e-5)
    empty = context.replace(mask=jnp.zeros(4, bool))
    np.testing.assert_allclose(belief.weights(params, empty), 1.0 / 3.0, rtol=1e-6)


# --- the elicitation loop ------------------------------------------------------------------------
def reference_elicitation(model, params, cands, user, heldout, key, num_rounds, num_samples):
    """The loop written plainly: a Python loop over rounds, the context holding exactly the pairs
    asked so far (no fixed buffer), logits from ``pair_logits`` on every candidate pair."""
    q = cands.num_candidates
    every = cands.batch(jnp.arange(q), jnp.zeros(q), jnp.ones(q, bool))
    asked, labels, answered, accuracy, means = [], [], [], [], []
    for t in range(num_rounds + 1):
        k_score, k_answer = jax.random.split(jax.random.fold_in(key, t))
        if asked:
            context = cands.batch(jnp.array(asked), jnp.array(labels), jnp.array(answered))
        else:  # no pairs yet: one masked pair (the posterior is the prior)
            context = cands.batch(jnp.zeros(1, jnp.int32), jnp.zeros(1), jnp.zeros(1, bool))
        logits = np.asarray(model.predict(params, context, heldout))
        strict = np.asarray(heldout.mask & (heldout.labels != 0.5))
        correct = (logits > 0) == (np.asarray(heldout.labels) > 0.5)
        accuracy.append(correct[strict].mean())
        means.append(np.asarray(model.posterior(params, context).mean()))
        if t == num_rounds:
            break
        z = model.posterior(params, context).sample(seed=k_score, sample_shape=(num_samples,))
        p = jax.nn.sigmoid(jnp.stack([model.pair_logits(params, every, zi) for zi in z]))
        gain = np.array(A.information_gain(p))
        gain[asked] = -np.inf
        best = int(np.argmax(gain))
        pair = cands.pairs[best]
        dist = pair_label_distribution(user, cands.features[pair[0]], cands.features[pair[1]])
        y, ok = sample_label(jax.random.split(k_answer, 1)[0], dist)
        asked.append(best)
        labels.append(float(y))
        answered.append(bool(ok))
    return np.array(asked), np.array(labels), np.array(accuracy), np.stack(means)


@pytest.mark.slow
def test_elicitation_loop_matches_a_python_loop(nav_dataset):
    """Every (seed, user) of the jitted, vmapped loop equals the plain loop with its key."""
    params = jax.tree.map(
        lambda *x: jnp.stack(x), init(TINY_VPL, nav_dataset, 0), init(TINY_VPL, nav_dataset, 1)
    )
    belief = A.make_belief(TINY_VPL, 8)
    cands = pool(nav_dataset, TINY_VPL)
    _, test = nav_dataset.split()
    users = jax.tree.map(lambda x: x[:2], test.users)
    heldout = jax.tree.map(lambda x: x[:2], R.user_pairs(test, "heldout").batch())
    key, num_rounds = jax.random.PRNGKey(7), 3
    trace = A.elicit_users(
        belief, "info_gain", params, cands, users, heldout, key,
        num_rounds=num_rounds, seeds=True, users_per_chunk=3,
    )  # fmt: skip
    chex.assert_shape(trace.accuracy, (2, 2, num_rounds + 1))
    chex.assert_shape(trace.heldout_probs, (2, 2, num_rounds + 1, heldout.num_pairs))
    chex.assert_shape(trace.queries, (2, 2, num_rounds))
    chex.assert_shape(trace.latent_mean, (2, 2, num_rounds + 1, TINY_VPL.latent_dim))
    keys = jax.random.split(key, 4)
    for s in range(2):
        for u in range(2):
            one = lambda x, u=u: x[u]  # noqa: E731
            asked, labels, accuracy, means = reference_elicitation(
                TINY_VPL, jax.tree.map(lambda x, s=s: x[s], params), cands,
                jax.tree.map(one, users), jax.tree.map(one, heldout), keys[2 * s + u],
                num_rounds, belief.num_samples,
            )  # fmt: skip
            np.testing.assert_array_equal(trace.queries[s, u], asked)
            np.testing.assert_array_equal(trace.labels[s, u], labels)
            np.testing.assert_allclose(trace.accuracy[s, u], accuracy, atol=1e-6)
            np.testing.assert_allclose(trace.latent_mean[s, u], means, atol=1e-5)


def test_batches_of_queries_are_distinct_and_the_spread_is_recorded(nav_dataset, models):
    belief, params = models["linear_bayes"]
    cands = pool(nav_dataset, LINEAR_BAYES)
    _, test = nav_dataset.split()
    heldout = R.user_pairs(test, "heldout", "features").batch()
    acq = A.Acquisition("volume_removal", batch_size=3, diversity=1.0)
    trace = A.elicit_users(
        belief, acq, params, cands, test.users, heldout, jax.random.PRNGKey(0), num_rounds=2
    )
    u = test.num_users
    chex.assert_shape(trace.queries, (u, 6))
    for queries in np.asarray(trace.queries):
        assert len(set(queries.tolist())) == 6
    chex.assert_shape(trace.alignment, (u, 3))
    assert np.all(np.abs(np.asarray(trace.alignment)) <= 1.0 + 1e-6)
    assert np.all(np.asarray(trace.spread) > 0)


@pytest.mark.parametrize("model", ["vpl", "linear_bayes"])
def test_a_latent_beliefs_spread_is_the_variance_of_its_predictions(nav_dataset, models, model):
    """The spread is the variance of P(a > b) over the posterior (as the ensemble's is over its
    members), by sigma points: close to a Monte Carlo estimate, the same for swapped targets,
    0 for a point posterior, and the posterior variance when there are no targets."""
    belief, params = models[model]
    context = first_pairs(nav_dataset, belief.model, 4)
    _, test = nav_dataset.split()
    targets = jax.tree.map(
        lambda x: x[0], R.user_pairs(test, "heldout", belief.model.inputs).batch()
    )
    spread = belief.spread(params, context, targets)
    q = belief.model.posterior(params, context)
    z = q.sample(seed=jax.random.PRNGKey(0), sample_shape=(20_000,))
    probs = jax.nn.sigmoid(belief.pair_logits(params, targets, z))
    mask = np.asarray(targets.mask)
    monte_carlo = np.asarray(jnp.var(probs, axis=0))[mask].mean()
    assert spread > 0
    np.testing.assert_allclose(spread, monte_carlo, rtol=0.25)
    swapped = targets.replace(
        inputs_a=targets.inputs_b,
        inputs_b=targets.inputs_a,
        alive_a=targets.alive_b,
        alive_b=targets.alive_a,
        labels=1.0 - targets.labels,
    )
    np.testing.assert_allclose(belief.spread(params, context, swapped), spread, rtol=1e-5)
    point = sigma_points(q.mean(), 1e-12 * jnp.eye(q.mean().shape[-1]))
    point_probs = jax.nn.sigmoid(belief.pair_logits(params, targets, point))
    np.testing.assert_allclose(np.asarray(jnp.var(point_probs, axis=0)), 0.0, atol=1e-6)
    no_targets = belief.spread(params, context, None)
    np.testing.assert_allclose(no_targets, np.mean(np.asarray(q.variance())), rtol=1e-6)


def test_sigma_points_match_the_mean_and_covariance():
    rng = np.random.default_rng(0)
    root = rng.normal(size=(4, 4))
    covariance = jnp.asarray(root @ root.T + 0.1 * np.eye(4), jnp.float32)
    mean = jnp.asarray(rng.normal(size=4), jnp.float32)
    points = np.asarray(sigma_points(mean, covariance))
    assert points.shape == (8, 4)
    np.testing.assert_allclose(points.mean(0), mean, atol=1e-5)
    np.testing.assert_allclose(np.cov(points.T, bias=True), covariance, rtol=1e-4, atol=1e-4)


def unordered(pairs) -> set:
    return {tuple(sorted(p)) for p in np.asarray(pairs).reshape(-1, 2).tolist()}


def test_candidates_keep_each_pair_once_and_know_their_dataset_segments(nav_dataset):
    pool = np.array([[5, 9], [9, 5], [3, 4], [5, 9], [4, 7]])
    cands = A.candidates(nav_dataset, "features", pool=pool)
    ids = np.asarray(cands.segment_ids)[np.asarray(cands.pairs)]
    np.testing.assert_array_equal(ids, [[5, 9], [3, 4], [4, 7]])  # first occurrences, in order
    np.testing.assert_array_equal(
        np.asarray(cands.features), np.asarray(nav_dataset.segments.features)[[3, 4, 5, 7, 9]]
    )


def test_excluded_pairs_are_never_asked(nav_dataset, models):
    """Held-out pairs that are also candidates: without ``exclude`` a random elicitation asks
    some of them (the answer is then scored as held-out); with it, none, in either order."""
    belief, params = models["linear_bayes"]
    _, test = nav_dataset.split()
    users = jax.tree.map(lambda x: x[:2], test.users)
    heldout_pairs = np.asarray(test.heldout.pairs[:2])
    swapped = heldout_pairs[0, :4, ::-1]  # user 0's first held-out pairs, reversed
    pool = np.concatenate(
        [np.asarray(nav_dataset.pool[:24]), heldout_pairs.reshape(-1, 2), swapped]
    )
    cands = A.candidates(nav_dataset, "features", pool=pool)
    heldout = jax.tree.map(lambda x: x[:2], R.user_pairs(test, "heldout", "features").batch())

    def asked(exclude, num_rounds=30):
        trace = A.elicit_users(
            belief, "random", params, cands, users, heldout, jax.random.PRNGKey(0),
            num_rounds=num_rounds, exclude=exclude,
        )  # fmt: skip
        ids = np.asarray(cands.segment_ids)[np.asarray(cands.pairs)[np.asarray(trace.queries)]]
        return [unordered(ids[u]) for u in range(2)]

    with pytest.raises(ValueError, match=r"a user has \d+ candidates left, fewer than the 50"):
        asked(heldout_pairs, num_rounds=50)
    leaked = [a & unordered(heldout_pairs[u]) for u, a in enumerate(asked(None))]
    assert all(leaked), "the pool was built so that random queries hit held-out pairs"
    for u, a in enumerate(asked(heldout_pairs)):
        assert len(a) == 30  # 30 distinct comparisons
        assert not a & unordered(heldout_pairs[u])


def test_bad_inputs_name_the_problem(nav_dataset, models):
    belief, params = models["vpl"]
    cands = pool(nav_dataset, TINY_VPL)
    _, test = nav_dataset.split()
    heldout = R.user_pairs(test, "heldout").batch()

    def run(acq="info_gain", c=cands, num_rounds=2):
        A.elicit_users(belief, acq, params, c, test.users, heldout, jax.random.PRNGKey(0),
                       num_rounds=num_rounds)  # fmt: skip

    with pytest.raises(ValueError, match=r"criterion='mutual_info_theta'.*VPL.*info_gain"):
        run("mutual_info_theta")
    with pytest.raises(ValueError, match=r"exceeds the pool of Q = 24"):
        run(num_rounds=25)
    with pytest.raises(ValueError, match=r"kind 'features' but the model consumes 'transition'"):
        run(c=pool(nav_dataset, LINEAR_BAYES))
    with pytest.raises(ValueError, match=r"shortlist=1: must be >= batch_size=2"):
        run(A.Acquisition("entropy", batch_size=2, shortlist=1))
    with pytest.raises(ValueError, match=r"belief \(VPL, LinearBayes, Ensemble\).*got BTL"):
        A.make_belief(R.BTL())
    pairs = test.heldout.pairs
    with pytest.raises(ValueError, match=r"exclude must be i32\[U, M, 2\].*U = 4 users"):
        A.elicit_users(belief, "info_gain", params, cands, test.users, heldout,
                       jax.random.PRNGKey(0), num_rounds=2, exclude=pairs[:3])  # fmt: skip
    with pytest.raises(ValueError, match=r"record their dataset segment indices"):
        A.elicit_users(belief, "info_gain", params, cands.replace(segment_ids=None), test.users,
                       heldout, jax.random.PRNGKey(0), num_rounds=2, exclude=pairs)  # fmt: skip
    regret = test.users.replace(human=test.users.human.replace(
        regret_weight=jnp.full(test.num_users, 0.5)))  # fmt: skip
    with pytest.raises(ValueError, match=r"elicitation labels by .*regret_weight up to 0.5"):
        A.elicit_users(belief, "info_gain", params, cands, regret, heldout,
                       jax.random.PRNGKey(0), num_rounds=2)  # fmt: skip


# --- uncertainty ---------------------------------------------------------------------------------
def test_ensemble_elicitation_runs_in_chunks_and_records_no_latent(nav_dataset, models):
    """An ensemble has no user latent: its trace holds none (a zero-size leaf would break the
    chunked map over users)."""
    belief, params = models["btl_ensemble"]
    cands = pool(nav_dataset, TINY_ENSEMBLE)
    _, test = nav_dataset.split()
    heldout = R.user_pairs(test, "heldout").batch()
    trace = A.elicit_users(
        belief, "disagreement", params, cands, test.users, heldout, jax.random.PRNGKey(0),
        num_rounds=2, users_per_chunk=3,
    )  # fmt: skip
    assert trace.latent_mean is None
    chex.assert_shape(trace.accuracy, (test.num_users, 3))


def test_calibration_curve_by_hand():
    probs = jnp.array([0.05, 0.15, 0.85, 0.95, 0.9, 0.3])
    labels = jnp.array([0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    mask = jnp.array([True, True, True, True, True, False])
    cal = A.calibration_curve(probs, labels, mask, num_bins=2)
    np.testing.assert_allclose(cal.count, [2, 3])
    np.testing.assert_allclose(cal.predicted, [0.1, 0.9], atol=1e-6)
    np.testing.assert_allclose(cal.frequency, [0.5, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(cal.ece, (2 * 0.4 + 3 * (0.9 - 2 / 3)) / 5, atol=1e-6)
    empty = A.calibration_curve(probs, labels, mask, num_bins=10)
    assert np.isnan(empty.frequency[5]) and empty.count[5] == 0


def curve_trace(accuracy):
    """A stand-in trace with only the accuracy ``[S, U, R+1]`` the curves read."""
    return types.SimpleNamespace(accuracy=np.asarray(accuracy, np.float32))


def test_queries_to_match_random_on_hand_made_curves():
    n_queries = np.array([0, 2, 4, 6])
    # Random with VPL: two users (and one without held-out pairs, NaN) whose mean reaches 0.75
    # after 4 queries, the reference budget.
    random = curve_trace([[[0.5, 0.625, 0.75, 0.875], [0.5, 0.625, 0.75, 0.875],
                           [np.nan] * 4]])  # fmt: skip
    np.testing.assert_array_equal(A.mean_curve(random), [0.5, 0.625, 0.75, 0.875])
    traces = {
        ("vpl", "random"): random,
        ("vpl", "info_gain"): curve_trace([[[0.5, 0.75, 0.875, 1.0]]]),  # 0.75 after 2
        ("vpl", "entropy"): curve_trace([[[0.5, 0.625, 0.625, 0.625]]]),  # never
        ("btl_ensemble", "disagreement"): curve_trace([[[1.0] * 4]]),  # no random to match
    }
    found = A.queries_to_match(traces, n_queries, reference_queries=4)
    assert [(m["model"], m["criterion"], m["target"]) for m in found] == [
        ("vpl", "info_gain", 0.75),
        ("vpl", "entropy", 0.75),
    ]
    assert found[0]["needed"] == 2.0 and np.isnan(found[1]["needed"])
    # A smaller reference budget is met sooner; a curve already there needs no query at all.
    assert A.queries_to_match(traces, n_queries, 0)[0]["needed"] == 0.0
    assert A.queries_to_reach([0.5, 0.7], [0, 1], 0.7) == 1.0


def test_uncertainty_report_by_hand():
    # One seed, four users, after 0 and 1 queries; two held-out pairs per user, labels (1, 0),
    # user 3's second pair masked out.
    spread = jnp.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]])  # [S, U, R+1]
    # After 0 queries the error rises with the spread (rho = 1), after 1 it falls (rho = -1).
    accuracy = jnp.array([[[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]])
    probs = jnp.stack([jnp.array([0.9, 0.1]), jnp.array([0.6, 0.6])])  # [R+1, M], every user
    heldout_probs = jnp.broadcast_to(probs, (1, 4, 2, 2))
    trace = types.SimpleNamespace(spread=spread, accuracy=accuracy, heldout_probs=heldout_probs)
    heldout = types.SimpleNamespace(
        labels=jnp.tile(jnp.array([1.0, 0.0]), (4, 1)),
        mask=jnp.array([[True, True]] * 3 + [[True, False]]),
    )
    report = A.uncertainty_report(trace, heldout, num_bins=2)
    np.testing.assert_allclose(report.correlation, [1.0, -1.0], atol=1e-6)
    cal = report.calibration  # leading axis: number of queries
    # After 0 queries: 0.1 on three unmasked pairs labelled 0, 0.9 on four labelled 1.
    np.testing.assert_allclose(cal.count, [[3, 4], [0, 7]])
    np.testing.assert_allclose(cal.predicted[0], [0.1, 0.9], atol=1e-6)
    np.testing.assert_allclose(cal.frequency[0], [0.0, 1.0])
    # After 1 query: 0.6 everywhere, of which 4 of 7 labelled 1; the low bin is empty.
    assert np.isnan(cal.frequency[1, 0]) and np.isnan(cal.predicted[1, 0])
    np.testing.assert_allclose(cal.frequency[1, 1], 4 / 7, atol=1e-6)
    np.testing.assert_allclose(cal.ece, [0.1, 0.6 - 4 / 7], atol=1e-6)


def test_spread_error_correlation_is_a_rank_correlation():
    spread = jnp.array([0.1, 0.2, 0.3, 0.4, jnp.nan])
    accuracy = jnp.array([0.99, 0.9, 0.8, 0.1, 0.5])  # error rises with spread: rho = 1
    np.testing.assert_allclose(A.spread_error_correlation(spread, accuracy), 1.0, atol=1e-6)
    np.testing.assert_allclose(A.spread_error_correlation(spread, 1 - accuracy), -1.0, atol=1e-6)
    assert np.isnan(A.spread_error_correlation(spread[:2], accuracy[:2]))


def test_matches_as_rows_words_and_a_table():
    matches = [
        {"model": "vpl", "criterion": "info_gain", "target": 0.75, "needed": 2.0},
        {"model": "vpl", "criterion": "entropy", "target": 0.75, "needed": float("nan")},
    ]
    rows = A.match_rows(matches, reference_queries=4)
    assert rows[0] == {
        "method": "info_gain",
        "metric": "queries_to_match_random",
        "value": 2.0,
        "model": "vpl",
        "target": 0.75,
        "reference_queries": 4,
    }
    assert rows[1]["method"] == "entropy" and np.isnan(rows[1]["value"])
    assert A.needed_text(2.0) == "2" and A.needed_text(float("nan")) == "never"
    assert A.match_text(matches[1], 4) == (
        "entropy (vpl) reaches random's accuracy after 4 queries (0.750) with never queries"
    )
    table = A.match_table([{**m, "task": "navigation"} for m in matches], 4)
    assert table[0] == "## Queries needed to reach random's accuracy after 4"
    assert table[-2:] == [
        "| navigation | vpl | info_gain | 0.750 | 2 |",
        "| navigation | vpl | entropy | 0.750 | never |",
    ]


def test_curve_metrics_and_the_accuracy_table():
    trace = types.SimpleNamespace(
        accuracy=np.array([[[0.5, 1.0], [np.nan, np.nan]]]),  # [S, U, R+1]; user 1: no pairs
        spread=np.array([[[0.2, 0.1], [0.3, 0.2]]]),
        alignment=np.array([[[0.0, 0.5], [0.1, 0.9]]]),
    )
    assert list(A.curve_metrics(trace)) == ["heldout_accuracy", "spread"]
    metrics = A.curve_metrics(trace, alignment=True)
    assert list(metrics) == ["heldout_accuracy", "spread", "theta_alignment"]
    assert metrics["theta_alignment"] is trace.alignment
    table = A.accuracy_table({"highway": {("linear_bayes", "random"): trace}}, np.array([0, 2]))
    assert table[2:] == [
        "| task | model | criterion | 0 | 2 |",
        "|---|---|---|---|---|",
        "| highway | linear_bayes | random | 0.500 | 1.000 |",
    ]


def hand_report():
    """An :class:`~vpl_jax.active.UncertaintyReport` after 0 and 2 queries, two bins."""
    calibration = A.Calibration(
        predicted=np.array([[0.1, 0.9], [np.nan, 0.6]]),
        frequency=np.array([[0.0, 1.0], [np.nan, 0.5]]),
        count=np.array([[3.0, 4.0], [0.0, 7.0]]),
        ece=np.array([0.1, 0.1]),
    )
    return A.UncertaintyReport(correlation=np.array([1.0, -0.5]), calibration=calibration)


def test_uncertainty_report_as_rows_and_a_table():
    rows = A.uncertainty_rows(hand_report(), np.array([0, 2]))
    assert [(r["metric"], r["n_queries"], r["value"]) for r in rows[:4]] == [
        ("spread_error_correlation", 0, 1.0),
        ("calibration_ece", 0, 0.1),
        ("spread_error_correlation", 2, -0.5),
        ("calibration_ece", 2, 0.1),
    ]
    # The reliability diagram after all (2) queries, a row per bin, the empty one NaN.
    assert list(rows[5]) == ["metric", "value", "predicted", "count", "bin", "n_queries"]
    assert rows[5] == {"metric": "calibration_frequency", "value": 0.5, "predicted": 0.6,
                       "count": 7.0, "bin": 1, "n_queries": 2}  # fmt: skip
    assert rows[4]["bin"] == 0 and np.isnan(rows[4]["value"]) and len(rows) == 6
    table = A.uncertainty_table({("navigation", "vpl"): hand_report()})
    assert table[-1] == "| navigation | vpl | 1.00 -0.50 | 0.100 |"


@pytest.mark.slow  # two elicitations of the test users: about 15 s on 2 cores
def test_elicit_test_users_elicits_every_test_user_of_a_dataset(nav_dataset):
    """The dataset's wiring of :func:`elicit_users`: its query pool, its test users scored on
    their held-out pairs (never asked), every seed of the params."""
    params = jax.tree.map(lambda *x: jnp.stack(x), *[init(LINEAR_BAYES, nav_dataset, s)
                                                     for s in (0, 1)])  # fmt: skip
    acq, key = A.Acquisition("volume_removal", batch_size=2), jax.random.PRNGKey(3)
    trace = A.elicit_test_users(nav_dataset, LINEAR_BAYES, params, acq, key, num_rounds=2,
                                num_samples=8, users_per_chunk=None)  # fmt: skip
    _, test = nav_dataset.split()
    expected = A.elicit_users(
        A.make_belief(LINEAR_BAYES, 8), acq, params, A.candidates(nav_dataset, LINEAR_BAYES.inputs),
        test.users, R.user_pairs(test, "heldout", LINEAR_BAYES.inputs).batch(), key, num_rounds=2,
        seeds=True, users_per_chunk=None, exclude=test.heldout.pairs,
    )  # fmt: skip
    assert trace.accuracy.shape == (2, test.num_users, 3)
    chex.assert_trees_all_equal(trace, expected)


def test_figures_draw_each_criterion_against_the_queries():
    from vpl_jax.active import figures

    n_queries = np.array([0, 2, 4])
    rng = np.random.default_rng(0)

    def trace():  # [S, U, R+1] = [2, 5, 3]
        return types.SimpleNamespace(accuracy=rng.uniform(size=(2, 5, 3)),
                                     spread=rng.uniform(size=(2, 5, 3)))  # fmt: skip

    traces = {("vpl", "info_gain"): trace(), ("vpl", "random"): trace(),
              ("btl_ensemble", "random"): trace()}  # fmt: skip
    per_task = {"navigation": traces, "highway": dict(traces)}
    fig = figures.plot_accuracy(per_task, n_queries, reference_queries=2)
    axes = np.reshape(fig.axes, (2, 2))  # tasks x models, models in the order of the keys
    assert [ax.get_title() for ax in axes[0]] == ["navigation: vpl", "navigation: btl_ensemble"]
    labels = [t.get_text() for t in axes[0, 0].get_legend().get_texts()]
    assert labels == ["info_gain", "random"]
    target = A.mean_curve(traces["vpl", "random"])[1]  # random's accuracy after 2 queries
    assert any(np.allclose(line.get_ydata(), target) for line in axes[0, 0].get_lines())
    ev = types.SimpleNamespace(success=rng.uniform(size=(2, 3, 5)))  # [S, R+1, U]
    fig = figures.plot_policy_success({"navigation": {"info_gain": ev, "random": ev}}, n_queries)
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ev.success.mean((0, 2)))
    reports = {(t, m): hand_report() for t in per_task for m in ("vpl", "btl_ensemble")}
    fig = figures.plot_uncertainty(per_task, reports, round_index=1)
    assert len(fig.axes) == 4
    scatter_labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert scatter_labels == ["vpl (ρ=-0.50)", "btl_ensemble (ρ=-0.50)"]


# --- learning: information gain identifies a user with fewer queries -----------------------------
@pytest.fixture(scope="module")
def four_goal_vpl():
    """VPL trained on navigation users who each want one of four goals (64 training users,
    32 test users)."""
    from vpl_jax import envs

    env = envs.make("navigation", num_goals=4)
    types = ["goal_a", "goal_b", "goal_c", "goal_d"]
    population = Population.mixture("navigation", env.feature_names, types)
    config = DatasetConfig(
        num_users=96,
        test_fraction=1 / 3,
        context_size=8,
        heldout_size=32,
        pool_size=512,
        num_episodes=64,
    )
    dataset = build_dataset(jax.random.PRNGKey(0), env, population, config)
    model = R.VPL(latent_dim=8, max_context=4)
    train, _ = dataset.split()
    params, _ = R.fit(
        model, R.TrainConfig(num_epochs=150), jax.random.PRNGKey(1), R.user_pairs(train)
    )
    return dataset, model, params


@pytest.mark.slow
def test_information_gain_identifies_users_faster_than_random(four_goal_vpl):
    dataset, model, params = four_goal_vpl
    _, test = dataset.split()
    belief = A.make_belief(model, 32)
    args = (params, A.candidates(dataset, model.inputs), test.users,
            R.user_pairs(test, "heldout").batch(), jax.random.PRNGKey(2))  # fmt: skip
    curves = {
        criterion: np.nanmean(A.elicit_users(belief, criterion, *args, num_rounds=3).accuracy, 0)
        for criterion in ("info_gain", "random")
    }
    print({c: np.round(v, 3) for c, v in curves.items()})
    np.testing.assert_allclose(curves["info_gain"][0], curves["random"][0])  # the same prior
    gain = curves["info_gain"][1:] - curves["random"][1:]  # after 1, 2 and 3 queries
    # Two well-chosen answers tell four types apart; one answer (a split of the types in two)
    # leaves the posterior mean between two types, with either criterion (so after one query
    # the two may differ either way, by sampling noise).
    assert gain[1:].mean() >= 0.04, gain
    assert gain[0] >= -0.05, gain


def test_acquisition_settings_validate():  # bad ones: test_bad_inputs.py
    assert dataclasses.replace(A.Acquisition(), diversity=0.5).validate().diversity == 0.5


def test_belief_registry_follows_model_classes(monkeypatch):
    """make_belief dispatches through active.BELIEFS by class: a subclass inherits its base's
    belief, a registered family gets its own, and has_belief agrees with make_belief."""

    @dataclasses.dataclass(frozen=True)
    class MyVPL(R.VPL):
        pass

    sub = MyVPL(latent_dim=2, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
    assert isinstance(A.make_belief(sub, 3), A.LatentBelief) and A.has_belief(sub)
    assert A.make_belief(sub, 3).num_samples == 3
    assert not A.has_belief(R.BTL())

    monkeypatch.setitem(A.BELIEFS, R.BTL, None)  # restored (removed) after the test
    A.register_belief(R.BTL, lambda model, n: ("btl belief", model, n))
    assert A.has_belief(R.BTL())
    assert A.make_belief(R.BTL(), 5) == ("btl belief", R.BTL(), 5)
    with pytest.raises(TypeError, match="model_type must be a class"):
        A.register_belief(R.BTL(), A.LatentBelief)
