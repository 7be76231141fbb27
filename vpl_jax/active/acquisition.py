"""Acquisition scores for choosing the next comparison to ask a user.

Every score here is written for ONE user and a pool of Q candidate pairs, from Monte-Carlo samples
of what the model believes about that user: ``p: f32[N, Q]`` is ``P(y = 1 | sample n, pair q)``
— the probability that the user prefers segment a of pair q if their latent (VPL ``z``, a
LinearBayes particle ``θ``, or an ensemble member) were sample n, with optional sample weights
``w: f32[N]`` (particles). Batch over users with ``vmap``. Higher is better for every score.

* :func:`information_gain` — the mutual information between the answer and the latent,
  ``I(y; z | C, q) = H[E_z p] - E_z H[p]`` (BALD; Houlsby et al. 2011). It is 0 when the
  posterior is a point mass (all samples agree) and when both segments are identical (every
  ``p = 0.5``).
* :func:`volume_removal` — ``1 - max(E_z p, 1 - E_z p)``, the expected share of posterior mass an
  answer removes under a deterministic-answer approximation (Sadigh et al. 2017).
* :func:`disagreement` — the variance of ``p`` across samples/members (query-by-committee).

Swapping a and b maps ``p`` to ``1 - p``, which leaves every score unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def binary_entropy(p: jax.Array) -> jax.Array:
    """Entropy in nats of a Bernoulli(p), elementwise; 0 at p in {0, 1}."""
    p = jnp.clip(p, 0.0, 1.0)
    return -(jax.scipy.special.xlogy(p, p) + jax.scipy.special.xlogy(1.0 - p, 1.0 - p))


def _weights(p: jax.Array, w: jax.Array | None) -> jax.Array:
    n = p.shape[0]
    w = jnp.full((n,), 1.0 / n) if w is None else w / jnp.sum(w)
    return w


def information_gain(p: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """f32[Q]: ``H[E_z p] - E_z H[p]`` from ``p: f32[N, Q]`` (sample weights ``w: f32[N]``).

    Clipped at 0 to remove floating-point noise (the exact quantity is non-negative by
    Jensen's inequality).
    """
    w = _weights(p, w)
    mean = jnp.einsum("n,nq->q", w, p)
    expected_entropy = jnp.einsum("n,nq->q", w, binary_entropy(p))
    return jnp.maximum(binary_entropy(mean) - expected_entropy, 0.0)


def volume_removal(p: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """f32[Q]: ``1 - max(E p, 1 - E p)``: largest when the samples split evenly."""
    mean = jnp.einsum("n,nq->q", _weights(p, w), p)
    return 1.0 - jnp.maximum(mean, 1.0 - mean)


def disagreement(p: jax.Array, w: jax.Array | None = None) -> jax.Array:
    """f32[Q]: weighted variance of ``p`` across samples/members."""
    w = _weights(p, w)
    mean = jnp.einsum("n,nq->q", w, p)
    return jnp.einsum("n,nq->q", w, jnp.square(p - mean))


def random_scores(key: jax.Array, num_candidates: int) -> jax.Array:
    """f32[Q]: i.i.d. uniform scores — picking the top one is a uniformly random query."""
    return jax.random.uniform(key, (num_candidates,))


def select_batch(
    scores: jax.Array,
    embeddings: jax.Array,
    batch_size: int,
    diversity: float = 1.0,
    available: jax.Array | None = None,
) -> jax.Array:
    """i32[b]: greedy batch selection of ``batch_size`` candidates that are not near-duplicates.

    Picks, one at a time, the candidate maximising ``score - diversity * max_j sim(c, picked_j)``,
    with ``sim`` the cosine similarity of ``embeddings: f32[Q, D]`` (e.g. the difference of the two
    segments' summed features). ``available: bool[Q]`` excludes candidates (already asked).
    Scores should be on a comparable scale to ``diversity``; normalise first if not.
    """
    num = scores.shape[0]
    unit = embeddings / (jnp.linalg.norm(embeddings, axis=-1, keepdims=True) + 1e-8)
    available = jnp.ones(num, bool) if available is None else available

    def pick(carry, _):
        avail, max_sim = carry
        value = jnp.where(avail, scores - diversity * max_sim, -jnp.inf)
        i = jnp.argmax(value)
        # |cos| so that the same pair with a and b swapped counts as a duplicate too.
        sim = jnp.abs(unit @ unit[i])
        return (avail.at[i].set(False), jnp.maximum(max_sim, sim)), i

    init = (available, jnp.zeros(num))
    _, picked = jax.lax.scan(pick, init, None, length=batch_size)
    return picked
