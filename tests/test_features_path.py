"""The path in from plain features (APReL's setting): candidates from a feature matrix, users from
a theta matrix, and elicitation with no task, no dataset and no held-out set — that it learns
(θ alignment), that information gain beats random queries, that the β-matched LinearBayes prior is
the calibrated one, and that bad inputs are named."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax import active as A
from vpl_jax.rewards import LinearBayes
from vpl_jax.users import HumanModel, User

N, F, U, BETA, ROUNDS = 200, 5, 8, 2.0, 10


@pytest.fixture(scope="module")
def problem():
    """(features f32[N, F], theta f32[U, F], candidates, users): β = 2 Boltzmann users."""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((N, F)).astype(np.float32)
    theta = rng.standard_normal((U, F)).astype(np.float32)
    cands = A.candidates_from_features(features)
    users = A.users_from_theta(theta, HumanModel.create(beta=BETA))
    return features, theta, cands, users


def elicit(model, criterion, cands, users, heldout=None, key=0, num_rounds=ROUNDS, params=None,
           **kwargs):  # fmt: skip
    """``elicit_users`` from ``model``'s untrained prior (or ``params``)."""
    params = model.prior_params(F) if params is None else params
    return A.elicit_users(
        A.make_belief(model), criterion, params, cands, users, heldout, jax.random.PRNGKey(key),
        num_rounds=num_rounds, **kwargs,
    )  # fmt: skip


def unordered(pairs) -> list:
    return [tuple(sorted(p)) for p in np.asarray(pairs).tolist()]


# --- candidates and users ------------------------------------------------------------------------
def test_every_unordered_pair_is_a_candidate_once():
    features = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    cands = A.candidates_from_features(features)
    ids = unordered(np.asarray(cands.segment_ids)[np.asarray(cands.pairs)])
    assert sorted(ids) == list(itertools.combinations(range(7), 2))  # 21 pairs, each once
    assert cands.bank.kind == "features" and bool(jnp.all(cands.bank.alive))
    np.testing.assert_array_equal(np.asarray(cands.features)[:, 0], features)  # one step each
    per_step = A.candidates_from_features(np.zeros((7, 4, 3)))
    assert per_step.features.shape == (7, 4, 3)


def test_given_pairs_are_kept_once_in_order_over_the_rows_they_use():
    features = np.random.default_rng(1).standard_normal((10, 2))
    pairs = np.array([[5, 9], [9, 5], [3, 4], [5, 9], [4, 7]])
    cands = A.candidates_from_features(features, pairs)
    ids = np.asarray(cands.segment_ids)[np.asarray(cands.pairs)]
    np.testing.assert_array_equal(ids, [[5, 9], [3, 4], [4, 7]])  # first occurrences, in order
    np.testing.assert_allclose(
        np.asarray(cands.features)[:, 0], features[[3, 4, 5, 7, 9]].astype(np.float32)
    )


def test_users_share_scalar_human_model_fields():
    theta = np.ones((3, F))
    users = A.users_from_theta(theta, HumanModel.create(beta=BETA, epsilon=0.1))
    assert users.human.beta.shape == (3,) and np.all(np.asarray(users.human.beta) == BETA)
    assert np.all(np.asarray(users.human.epsilon) == np.float32(0.1))
    assert np.all(np.isinf(np.asarray(A.users_from_theta(theta).human.beta)))  # rational
    kept = users.human.replace(beta=jnp.arange(3.0)).broadcast(3)
    np.testing.assert_array_equal(kept.beta, [0.0, 1.0, 2.0])  # f32[U] fields are kept


def test_bad_inputs_name_the_argument(problem):
    features, theta, cands, _ = problem
    nan = features.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"features has 1 non-finite .* index \(3, 1\)"):
        A.candidates_from_features(nan)
    with pytest.raises(ValueError, match=r"features has N = 1 trajectories: need >= 2"):
        A.candidates_from_features(features[:1])
    with pytest.raises(ValueError, match=r"features must be f32\[N, F\] or f32\[N, H, F\]"):
        A.candidates_from_features(features[0])
    with pytest.raises(ValueError, match=r"pairs index trajectories 0\.\.200, outside the N = 200"):
        A.candidates_from_features(features, [[0, 200]])
    with pytest.raises(ValueError, match=r"pairs\[1\] = \[4, 4\] compares a trajectory with"):
        A.candidates_from_features(features, [[0, 1], [4, 4]])
    with pytest.raises(ValueError, match=r"pairs must hold integer trajectory indices"):
        A.candidates_from_features(features, [[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"theta has 1 non-finite"):
        A.users_from_theta(np.where(theta == theta[2, 2], np.inf, theta))
    with pytest.raises(ValueError, match=r"theta must be f32\[U, F\]"):
        A.users_from_theta(theta[0])
    with pytest.raises(ValueError, match=r"human model field beta has shape \(3,\).*U = 8"):
        A.users_from_theta(theta, HumanModel.create().replace(beta=jnp.ones(3)))
    with pytest.raises(ValueError, match=r"users' theta has 4 weights but .* have 5 features"):
        elicit(LinearBayes(), "random", cands, A.users_from_theta(theta[:, :4]), num_rounds=1)
    with pytest.raises(ValueError, match=r"for_beta beta=inf: must be finite and > 0"):
        LinearBayes.for_beta(math.inf)
    with pytest.raises(ValueError, match=r"for_beta sets prior_std"):
        LinearBayes.for_beta(BETA, prior_std=1.0)
    with pytest.raises(ValueError, match=r"num_features=0: must be an integer >= 1"):
        LinearBayes().prior_params(0)


def test_for_beta_scales_the_prior_and_keeps_the_defaults():
    model = LinearBayes.for_beta(BETA, theta_std=0.5, newton_steps=5)
    assert (model.prior_std, model.newton_steps) == (1.0, 5)
    assert LinearBayes.for_beta(BETA).prior_std == BETA
    assert LinearBayes().prior_std == 1.0  # the default is unchanged
    params = LinearBayes(prior_std=3.0).prior_params(F)
    np.testing.assert_allclose(np.exp(params["prior"]["log_std"]), np.full(F, 3.0))


# --- learning ------------------------------------------------------------------------------------
@pytest.mark.slow  # 12 s in the fast tier on 2 cores (2026-12-07)
def test_elicitation_without_heldout_recovers_theta_and_information_gain_beats_random(problem):
    _, _, cands, users = problem
    model = LinearBayes.for_beta(BETA)
    traces = {c: elicit(model, c, cands, users) for c in ("mutual_info_theta", "random")}
    alignment = {c: np.asarray(t.alignment).mean(0) for c, t in traces.items()}
    print({c: np.round(a, 3) for c, a in alignment.items()})
    for trace in traces.values():
        assert trace.heldout_probs is None and np.all(np.isnan(np.asarray(trace.accuracy)))
        assert trace.alignment.shape == (U, ROUNDS + 1)
        assert np.all(np.asarray(trace.spread) > 0)
    info, rand = alignment["mutual_info_theta"], alignment["random"]
    np.testing.assert_array_equal(info[0], 0.0)  # the prior mean is 0: no direction yet
    assert info[-1] > 0.8, info
    assert info[-1] >= rand[-1], (info, rand)
    # A User with scalar human-model fields is broadcast over its U users by elicit_users.
    scalar = User(users.theta, HumanModel.create(beta=BETA), jnp.zeros(U, jnp.int32))
    same = elicit(model, "mutual_info_theta", cands, scalar)
    np.testing.assert_array_equal(same.queries, traces["mutual_info_theta"].queries)


@pytest.mark.slow  # 10 s in the fast tier on 2 cores (2026-12-07)
def test_per_step_features_and_their_sums_are_the_same_problem():
    """For a non-myopic user (γ = 1) and LinearBayes (discount 1) only a trajectory's feature sum
    matters, so per-step features and their sums give the same elicitation."""
    steps = np.random.default_rng(2).standard_normal((30, 4, F)).astype(np.float32)
    users = A.users_from_theta(np.ones((2, F)), HumanModel.create(beta=BETA))
    model = LinearBayes.for_beta(BETA)
    by_step = elicit(model, "mutual_info_theta", A.candidates_from_features(steps), users,
                     num_rounds=3)  # fmt: skip
    summed = A.candidates_from_features(steps.sum(1))
    by_sum = elicit(model, "mutual_info_theta", summed, users, num_rounds=3)
    np.testing.assert_array_equal(by_step.queries, by_sum.queries)
    np.testing.assert_array_equal(by_step.labels, by_sum.labels)
    np.testing.assert_allclose(by_step.alignment, by_sum.alignment, atol=1e-5)


def test_the_beta_matched_prior_is_the_best_calibrated(problem):
    """β = 2 users: after 10 random queries, LinearBayes.for_beta(2)'s predictive P(a ≻ b) on
    held-out pairs is closer (KL) to the users' true answer probabilities than a prior 4x too
    narrow or 4x too wide. The held-out pairs are row indices, excluded from what is asked."""
    features, _, cands, _ = problem
    rng = np.random.default_rng(3)
    num_users, m = 16, 100
    theta = rng.standard_normal((num_users, F)).astype(np.float32)
    users = A.users_from_theta(theta, HumanModel.create(beta=BETA))
    index = rng.integers(0, cands.num_candidates, (num_users, m))
    pairs = np.asarray(cands.segment_ids)[np.asarray(cands.pairs)[index]]  # [U, M, 2] rows
    delta = features[pairs[..., 0]] - features[pairs[..., 1]]
    logits = BETA * np.einsum("umf,uf->um", delta, theta).astype(np.float64)
    p = np.clip(1.0 / (1.0 + np.exp(-logits)), 1e-9, 1 - 1e-9)  # the users' true P(a ≻ b)
    heldout = cands.batch(jnp.asarray(index), jnp.asarray(p), jnp.ones((num_users, m), bool))

    def kl(model):
        # The prior lives in the params: one compiled loop (of LinearBayes()) serves every prior.
        trace = elicit(LinearBayes(), "random", cands, users, heldout, key=1, exclude=pairs,
                       params=model.prior_params(F))  # fmt: skip
        q = np.clip(np.asarray(trace.heldout_probs)[:, -1], 1e-6, 1 - 1e-6)
        return np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)))

    matched = kl(LinearBayes.for_beta(BETA))
    narrow, wide = kl(LinearBayes(prior_std=BETA / 4)), kl(LinearBayes(prior_std=BETA * 4))
    print(f"KL after {ROUNDS} queries: matched {matched:.3f}, narrow {narrow:.3f}, wide {wide:.3f}")
    assert matched < min(narrow, wide), (matched, narrow, wide)
