"""Preference likelihoods shared by the reward models, written to stay finite for any logit.

Every model reduces a pair to ``log P(a ≻ b)`` and ``log P(b ≻ a)``; the loss for a (possibly
soft) label ``y`` is the cross-entropy ``-(y log P(a ≻ b) + (1 - y) log P(b ≻ a))``, so a label of
0.5 ("equal") is a soft target whose optimum is ``P = 0.5``. Masked pairs contribute nothing.

* Bradley–Terry: ``P(a ≻ b) = sigmoid(R_a - R_b)`` (log-sigmoid, never ``log(sigmoid)``).
* Thurstone/probit (DPL mean-variance): ``P(a ≻ b) = Phi(d)``, with ``log Phi`` from
  ``norm.logcdf``, which is accurate far into the tails.

Accuracy counts only strict labels (y != 0.5): an "equal" answer has no side to get right.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def bradley_terry_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """f32[...]: per-pair ``-log p(y | logit)`` with ``P(a ≻ b) = sigmoid(logit)``."""
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def cross_entropy(log_p_a: jax.Array, log_p_b: jax.Array, labels: jax.Array) -> jax.Array:
    """f32[...]: ``-(y log P(a ≻ b) + (1 - y) log P(b ≻ a))`` from the two log-probabilities."""
    return -(labels * log_p_a + (1.0 - labels) * log_p_b)


_PROBIT_TAIL = 1e3


def _log_normal_cdf(d: jax.Array) -> jax.Array:
    """``log Phi(d)``, continued linearly (tangent line) beyond ``|d| = 1000``.

    The exact tail ``-d^2 / 2`` overflows float32 near ``|d| = 1e19`` and its gradient becomes
    NaN; the tangent keeps value and gradient finite and still points the right way.
    """
    norm = jax.scipy.stats.norm
    inner = jnp.clip(d, -_PROBIT_TAIL, _PROBIT_TAIL)
    slope = jnp.exp(norm.logpdf(inner) - norm.logcdf(inner))
    return norm.logcdf(inner) + (d - inner) * slope


def probit_log_probs(d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log Phi(d), log Phi(-d))``: the Thurstone log-probabilities of a ≻ b and b ≻ a."""
    return _log_normal_cdf(d), _log_normal_cdf(-d)


def logit_from_log_probs(log_p_a: jax.Array, log_p_b: jax.Array) -> jax.Array:
    """f32[...]: the logit of ``P(a ≻ b)`` (so that ``sigmoid(logit) = P(a ≻ b)``)."""
    return log_p_a - log_p_b


def masked_mean(x: jax.Array, mask: jax.Array, axis: int | None = None) -> jax.Array:
    """Mean of ``x`` over ``axis`` (None: every entry) where ``mask`` is True; 0 where nothing is.

    ``mask`` has the shape of ``x`` or one axis less, broadcast over the trailing axis of ``x``
    (e.g. ``x: f32[..., N, E]`` pooled over N with ``mask: bool[..., N]`` and ``axis=-2``).
    """
    m = mask.astype(x.dtype)
    if x.ndim == mask.ndim + 1:
        m = m[..., None]
    return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)


def strict_accuracy(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    axis: int | None = None,
    empty: float = 0.0,
) -> jax.Array:
    """Share of the masked, strict (y != 0.5) pairs whose predicted side matches the label, over
    ``axis`` (None: all pairs; -1: per user of ``[U, M]`` pairs); ``empty`` where there is none
    (0 for training metrics, NaN for evaluation)."""
    strict = mask & (labels != 0.5)
    correct = ((logits > 0) == (labels > 0.5)) & strict
    num = jnp.sum(strict, axis=axis)
    return jnp.where(num > 0, jnp.sum(correct, axis=axis) / jnp.maximum(num, 1), empty)


def pair_metrics(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """``{"nll", "accuracy"}`` of Bradley–Terry logits over the masked pairs."""
    return {
        "nll": masked_mean(bradley_terry_nll(logits, labels), mask),
        "accuracy": strict_accuracy(logits, labels, mask),
    }
