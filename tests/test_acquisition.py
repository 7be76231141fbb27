"""Acquisition scores: the information-theoretic invariants they must satisfy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpl_jax.active.acquisition import (
    binary_entropy,
    disagreement,
    information_gain,
    select_batch,
    volume_removal,
)

SCORES = (information_gain, volume_removal, disagreement)


class TestInformationGain(chex.TestCase):
    @chex.all_variants(with_pmap=False)
    def test_hand_computed_value(self):
        # two equally likely latents: one is sure of "a", the other of "b" -> 1 bit = log 2 nats
        p = jnp.array([[1.0, 0.9], [0.0, 0.9]])
        ig = self.variant(information_gain)(p)
        np.testing.assert_allclose(ig, [np.log(2.0), 0.0], atol=1e-6)

    @chex.all_variants(with_pmap=False)
    def test_zero_for_a_point_mass_posterior(self):
        p = jnp.tile(jax.random.uniform(jax.random.PRNGKey(0), (1, 7)), (16, 1))
        np.testing.assert_allclose(self.variant(information_gain)(p), 0.0, atol=1e-6)

    def test_zero_for_identical_segments(self):
        # identical segments have equal returns under every latent: p = sigmoid(0) = 0.5
        p = jnp.full((32, 5), 0.5)
        np.testing.assert_allclose(information_gain(p), 0.0, atol=1e-7)

    def test_weights_act_like_repeated_samples(self):
        p = jax.random.uniform(jax.random.PRNGKey(1), (3, 4))
        repeated = jnp.concatenate([p[:1], p[:1], p[1:]])
        np.testing.assert_allclose(
            information_gain(p, jnp.array([2.0, 1.0, 1.0])), information_gain(repeated), rtol=1e-5
        )


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 20), q=st.integers(1, 10))
@pytest.mark.slow
def test_scores_are_non_negative_and_swap_invariant(seed, n, q):
    p = jax.random.uniform(jax.random.PRNGKey(seed), (n, q))
    for score in SCORES:
        s = score(p)
        assert np.all(np.asarray(s) >= 0.0)
        np.testing.assert_allclose(s, score(1.0 - p), atol=1e-6)
    assert np.all(information_gain(p) <= np.log(2.0) + 1e-6)


def test_binary_entropy_endpoints():
    np.testing.assert_allclose(binary_entropy(jnp.array([0.0, 0.5, 1.0])), [0, np.log(2), 0])


def test_batch_selection_skips_near_duplicates():
    scores = jnp.array([1.0, 0.99, 0.5, 0.1])
    embeddings = jnp.array([[1.0, 0.0], [-1.0, 0.01], [0.0, 1.0], [1.0, 1.0]])  # 1 ~ 0 swapped
    picked = select_batch(scores, embeddings, 2, diversity=1.0)
    np.testing.assert_array_equal(picked, [0, 2])
    greedy = select_batch(scores, embeddings, 2, diversity=0.0)
    np.testing.assert_array_equal(greedy, [0, 1])
    excluded = select_batch(scores, embeddings, 1, available=jnp.array([False, True, True, True]))
    np.testing.assert_array_equal(excluded, [1])
