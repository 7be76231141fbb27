"""The human-model fit (vpl_jax.users.fit_human_model) recovers simulated labellers' β, ε, γ.

Stated tolerances, for 2000 strict answers to pairs whose return differences span the range
where σ(β Δ) saturates (so that mistakes show): β within a factor e^0.35 ≈ 1.42 (|log β̂ - log β|
< 0.35; the largest error over 5 seeds of each case below was 0.22) and ε within ±0.05 (largest
seen: 0.03). With a few dozen answers, as from a real person, the fit is far less precise.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax.users import HumanModel, User, fit_human_model, pair_label_distribution, sample_label


def simulate(key, beta, epsilon, gamma=1.0, n=2000, horizon=10, num_features=5):
    """A unit-norm θ, n random pairs of segments and a simulated user's answers to them."""
    k_a, k_b, k_theta, k_y = jax.random.split(key, 4)
    fa = jax.random.normal(k_a, (n, horizon, num_features))
    fb = jax.random.normal(k_b, (n, horizon, num_features))
    theta = jax.random.normal(k_theta, (num_features,))
    theta = theta / jnp.linalg.norm(theta)
    human = HumanModel.create(beta=beta, epsilon=epsilon, gamma=gamma)
    user = User(theta=theta, human=human, type_id=jnp.int32(0))

    def answer(k, a, b):
        return sample_label(k, pair_label_distribution(user, a, b))

    y, mask = jax.vmap(answer)(jax.random.split(k_y, n), fa, fb)
    return theta, fa, fb, y, mask


@pytest.mark.parametrize("beta, epsilon", [(1.0, 0.0), (2.0, 0.1), (5.0, 0.2), (1.0, 0.3)])
def test_the_fit_recovers_beta_and_epsilon_of_simulated_users(beta, epsilon):
    theta, fa, fb, y, mask = simulate(jax.random.PRNGKey(0), beta, epsilon)
    fit = fit_human_model(theta, fa, fb, y, mask)
    assert abs(np.log(fit.beta / beta)) < 0.35, fit
    assert abs(fit.epsilon - epsilon) < 0.05, fit
    assert fit.num_labels == 2000 and fit.log_likelihood_ratio >= 0 and not fit.beta_unbounded
    if epsilon == 0:  # a rational user is not mistaken for a mistaken one
        assert fit.log_likelihood_ratio < 2.0, fit
    else:
        assert fit.log_likelihood_ratio > 5.0, fit


def test_the_fit_finds_a_myopic_users_discount():
    theta, fa, fb, y, mask = simulate(jax.random.PRNGKey(1), 2.0, 0.1, gamma=0.8)
    fit = fit_human_model(theta, fa, fb, y, mask, gammas=(1.0, 0.9, 0.8, 0.7, 0.6))
    assert fit.gamma == pytest.approx(0.8) and abs(np.log(fit.beta / 2.0)) < 0.35, fit


def test_a_deterministic_labellers_beta_is_a_lower_bound():
    theta, fa, fb, y, mask = simulate(jax.random.PRNGKey(3), float("inf"), 0.0, n=50)
    fit = fit_human_model(theta, fa, fb, y, mask)
    assert fit.beta_unbounded and fit.epsilon == 0.0, fit


def test_equal_and_skipped_answers_are_left_out():
    theta, fa, fb, y, mask = simulate(jax.random.PRNGKey(2), 2.0, 0.1, n=50)
    y = y.at[:10].set(0.5)
    mask = mask.at[10:20].set(False)
    assert fit_human_model(theta, fa, fb, y, mask).num_labels == 30
    empty = fit_human_model(theta, fa, fb, y, jnp.zeros(50, bool))
    assert empty.num_labels == 0 and np.isnan(empty.beta)
    with pytest.raises(ValueError, match=r"must include 1\.0"):
        fit_human_model(theta, fa, fb, y, mask, gammas=(0.9,))
