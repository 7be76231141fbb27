"""The closed forms behind Nash learning: geometric mixtures, Nash-MD, DPO and IPO losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax.nash.direct import dpo_loss, ipo_loss, log_ratio_margin
from vpl_jax.nash.gaussian import geometric_mixture
from vpl_jax.nash.matrix_game import exploitability, nash_md, win_probability
from vpl_jax.nash.policy import noise_nodes, on_circle, reference_goal

CYCLIC = jnp.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])  # 0 ≻ 1 ≻ 2 ≻ 0


def test_geometric_mixture_matches_the_normalised_product():
    u = np.linspace(-12, 12, 200_001)
    du = u[1] - u[0]
    for m1, s1, m2, s2, beta in [(0.3, 0.5, -1.0, 2.0, 0.3), (2.0, 1.0, 0.0, 0.2, 0.8)]:
        log_p = (1 - beta) * (-0.5 * ((u - m1) / s1) ** 2 - np.log(s1)) + beta * (
            -0.5 * ((u - m2) / s2) ** 2 - np.log(s2)
        )
        p = np.exp(log_p - log_p.max())
        p /= p.sum() * du
        mean = (u * p).sum() * du
        std = np.sqrt(((u - mean) ** 2 * p).sum() * du)
        got_mean, got_std = geometric_mixture(m1, s1, m2, s2, beta)
        np.testing.assert_allclose([got_mean, got_std], [mean, std], rtol=1e-4, atol=1e-6)


def test_geometric_mixture_endpoints():
    mean, std = geometric_mixture(jnp.array(1.0), jnp.array(2.0), jnp.array(-3.0), 0.5, 0.0)
    np.testing.assert_allclose([mean, std], [1.0, 2.0], rtol=1e-6)
    mean, std = geometric_mixture(jnp.array(1.0), jnp.array(2.0), jnp.array(-3.0), 0.5, 1.0)
    np.testing.assert_allclose([mean, std], [-3.0, 0.5], rtol=1e-6)


def test_nash_md_converges_to_the_uniform_mixture_on_a_cyclic_game():
    start = jnp.array([0.7, 0.2, 0.1])
    final, _ = nash_md(CYCLIC, jnp.full(3, 1 / 3), 2000, eta=0.5, tau=0.1, init=start)
    np.testing.assert_allclose(final, jnp.full(3, 1 / 3), atol=1e-3)
    assert float(exploitability(CYCLIC, final)) < 1e-3
    assert float(exploitability(CYCLIC, start)) > 0.3


def test_self_play_without_regularisation_keeps_cycling():
    start = jnp.array([0.7, 0.2, 0.1])
    _, pis = nash_md(CYCLIC, jnp.full(3, 1 / 3), 2000, eta=0.5, tau=0.0, init=start)
    late_exploitability = jax.vmap(exploitability, (None, 0))(CYCLIC, pis[-200:])
    assert float(late_exploitability.max()) > 0.3


def test_win_probability_and_exploitability_by_hand():
    pure_0 = jnp.array([1.0, 0.0, 0.0])
    assert float(win_probability(CYCLIC, pure_0, jnp.array([0.0, 1.0, 0.0]))) == 1.0
    assert float(exploitability(CYCLIC, pure_0)) == 1.0  # action 2 always beats it


def test_dpo_and_ipo_losses_by_hand():
    h = log_ratio_margin(jnp.array(-1.0), jnp.array(-2.0), jnp.array(-3.0), jnp.array(-2.5))
    np.testing.assert_allclose(h, 1.5)  # (−1 + 2) − (−3 + 2.5)
    np.testing.assert_allclose(dpo_loss(h, 1.0, beta=0.5), np.log1p(np.exp(-0.75)), rtol=1e-6)
    np.testing.assert_allclose(dpo_loss(h, 0.0, beta=0.5), np.log1p(np.exp(0.75)), rtol=1e-6)
    np.testing.assert_allclose(ipo_loss(h, 1.0, tau=0.25), (1.5 - 2.0) ** 2, rtol=1e-6)
    np.testing.assert_allclose(ipo_loss(h, 0.0, tau=0.25), (1.5 + 2.0) ** 2, rtol=1e-6)
    np.testing.assert_allclose(ipo_loss(h, 0.5, tau=0.25), 0.5 * 0.25 + 0.5 * 12.25, rtol=1e-6)


def test_reference_goal_is_the_goal_of_each_equal_arc_of_the_noise_circle():
    arc_goals = (0, 0, 0, 0, 1, 2)  # the experiment's default reference_goals "aaaabc"
    # The midpoint of each of six arcs, then just past 0 and just short of 2π (the first and the
    # last arc), then a quarter and three quarters of the way round with two arcs.
    np.testing.assert_array_equal(reference_goal(arc_goals, noise_nodes(6)), arc_goals)
    near_ends = on_circle(jnp.array([1e-4, 2 * jnp.pi - 1e-4]))
    np.testing.assert_array_equal(reference_goal(arc_goals, near_ends), [0, 2])
    halves = on_circle(jnp.array([[jnp.pi / 2], [3 * jnp.pi / 2]]))  # leading axes kept
    np.testing.assert_array_equal(reference_goal((0, 2), halves), [[0], [2]])


@pytest.mark.slow
def test_preference_model_names_bad_fields_and_averages_kl_over_real_users():
    import pytest

    from vpl_jax.nash.preference import PreferenceModel
    from vpl_jax.rewards import PairBatch

    with pytest.raises(ValueError, match=r"PreferenceModel.hidden=\(64, 0\).*integer >= 1"):
        PreferenceModel(hidden=(64, 0))
    model = PreferenceModel(hidden=(8,), embed_dim=4, latent_dim=2, inputs="features")
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    batch = PairBatch(
        inputs_a=jax.random.normal(k[0], (3, 4, 5, 2)),
        inputs_b=jax.random.normal(k[1], (3, 4, 5, 2)),
        alive_a=jnp.ones((3, 4, 5), bool),
        alive_b=jnp.ones((3, 4, 5), bool),
        labels=jax.random.bernoulli(k[2], 0.5, (3, 4)).astype(jnp.float32),
        mask=jnp.ones((3, 4), bool),
    )
    params = model.init(jax.random.PRNGKey(1), batch)
    padded = jax.tree.map(lambda x: jnp.concatenate([x, jnp.zeros_like(x[:2])]), batch)
    key, step = jax.random.PRNGKey(2), jnp.int32(0)
    _, real = model.loss(params, batch, key, step)
    _, with_padding = model.loss(params, padded, key, step)
    assert float(real["kl"]) > 0
    np.testing.assert_allclose(with_padding["kl"], real["kl"], rtol=1e-5)
