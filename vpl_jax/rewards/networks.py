"""Networks of the reward models: an MLP, input standardisation, and VPL's set encoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from vpl_jax.rewards.likelihood import masked_mean

Pooling = Literal["mean", "attention"]


class MLP(nn.Module):
    """Dense layers of sizes ``features``, with the activation between layers (not after the
    last).

    ``dtype`` is the computation dtype (e.g. bfloat16 to halve memory traffic on accelerators);
    params and the output stay float32, so sums over steps and likelihoods are full precision.
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.gelu
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width, dtype=self.dtype)(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x.astype(jnp.float32)


class BasisDecoder(nn.Module):
    """r(x, z) = g(x) · w(z): a per-step basis ``g(x): f32[..., B]`` shared by every user, and
    per-user weights ``w(z)`` on it — the structure of a linear reward ``theta · phi(x)`` over
    learned features, so every user's data teaches the basis and z only has to pick weights.

    ``x: f32[..., D]``, ``z: f32[..., Z]`` (same leading axes) -> ``f32[..., 1]`` (as an
    :class:`MLP` with one output).
    """

    hidden: Sequence[int] = (64, 64)
    basis_dim: int = 64
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
        basis = MLP((*self.hidden, self.basis_dim), dtype=self.dtype, name="basis")(x)
        weights = MLP((self.hidden[-1], self.basis_dim), dtype=self.dtype, name="weights")(z)
        return jnp.sum(basis * weights, axis=-1, keepdims=True) / jnp.sqrt(self.basis_dim)


# --- input standardisation -----------------------------------------------------------------------
def fit_normalizer(x: jax.Array, alive: jax.Array) -> dict[str, jax.Array]:
    """``{"mean", "inv_std"}: f32[D]`` over the live steps of ``x: f32[..., H, D]``.

    Stored in the params (and kept out of the gradient by :func:`normalize`) so that a trained
    model's ``reward(params, obs)`` standardises by itself wherever it is used, e.g. inside PPO.
    Inputs that are constant in the data get ``inv_std = 0``: they carry no information, and
    their rounding-level residuals ``x - mean`` would otherwise give gradients that Adam blows
    up to full-size, run-dependent updates.
    """
    flat = x.reshape(-1, x.shape[-1])
    w = alive.reshape(-1, 1).astype(x.dtype)
    n = jnp.maximum(w.sum(), 1.0)
    mean = (flat * w).sum(0) / n
    var = (jnp.square(flat - mean) * w).sum(0) / n
    constant = var <= 1e-6 * (1.0 + jnp.square(mean))
    return {
        "mean": mean,
        "inv_std": jnp.where(constant, 0.0, jax.lax.rsqrt(jnp.maximum(var, 1e-12))),
    }


def normalize(stats: dict[str, jax.Array] | None, x: jax.Array) -> jax.Array:
    """``(x - mean) / std`` with the statistics held fixed (no gradient); identity for None."""
    if stats is None:
        return x
    stats = jax.lax.stop_gradient(stats)
    return (x - stats["mean"]) * stats["inv_std"]


# --- VPL's set encoder ---------------------------------------------------------------------------
def _soft_clip(x: jax.Array, low: float, high: float) -> jax.Array:
    """Smoothly keeps ``x`` in ``(low, high)`` while keeping a gradient everywhere."""
    return low + jax.nn.softplus(x - low) - jax.nn.softplus(x - high)


class SetEncoder(nn.Module):
    """q(z | {(seg_a, seg_b, y)}_k): a permutation-invariant encoder of a set of labelled pairs.

    1. A per-step network embeds every step; a segment's embedding is the mean over its live
       steps (returns are sums over steps, so an additive summary is the natural inductive bias).
    2. A per-pair network reads ``[s (e_a - e_b), e_a + e_b, |s|]`` with ``s = 2y - 1``. These
       features are unchanged when a and b are swapped and y becomes 1 - y, so a pair and its
       mirror image encode identically; an "equal" answer (s = 0) keeps only ``e_a + e_b``.
    3. Optionally one pre-norm self-attention block over the set (masked pairs are neither
       attended to nor pooled), then the masked mean over the pairs and ``log(1 + k)``. The count
       lets the posterior sharpen as k grows, which a plain mean cannot express.
    4. A head gives the Gaussian's mean and log-variance (soft-clipped to [-12, 4]).

    ``dtype`` is the computation dtype of every layer (params and outputs stay float32).

    Never concatenating the K pairs keeps the encoder independent of K and of the pairs' order:
    masking a pair is exactly dropping it (attention gives masked keys zero weight).

    Shapes: ``inputs_a, inputs_b: f32[..., K, H, D]``, ``alive_*: bool[..., K, H]``,
    ``labels: f32[..., K]``, ``mask: bool[..., K]`` -> ``(mean, log_var): f32[..., Z]`` each.
    """

    latent_dim: int
    embed_dim: int = 64
    hidden: Sequence[int] = (64, 64)
    pooling: Pooling = "mean"
    num_heads: int = 4
    dtype: Any = None

    @nn.compact
    def __call__(self, inputs_a, inputs_b, alive_a, alive_b, labels, mask):
        step_net = MLP((*self.hidden, self.embed_dim), dtype=self.dtype, name="step")
        e_a = masked_mean(step_net(inputs_a), alive_a, axis=-2)
        e_b = masked_mean(step_net(inputs_b), alive_b, axis=-2)
        s = (2.0 * labels - 1.0)[..., None]
        pair_in = jnp.concatenate([s * (e_a - e_b), e_a + e_b, jnp.abs(s)], axis=-1)
        h = MLP((*self.hidden, self.embed_dim), dtype=self.dtype, name="pair")(pair_in)
        if self.pooling == "attention":
            attend = mask[..., None, :, None] & mask[..., None, None, :]  # [..., 1, K, K]
            attention = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype)
            y = nn.LayerNorm(dtype=self.dtype)(h)
            h = h + attention(y, y, mask=attend).astype(h.dtype)
            h = h + MLP((2 * self.embed_dim, self.embed_dim), dtype=self.dtype)(
                nn.LayerNorm(dtype=self.dtype)(h)
            )
        elif self.pooling != "mean":
            raise ValueError(f"pooling={self.pooling!r} is not one of ['mean', 'attention']")
        count = jnp.sum(mask, axis=-1, keepdims=True).astype(h.dtype)
        pooled = jnp.concatenate([masked_mean(h, mask, axis=-2), jnp.log1p(count)], axis=-1)
        out = MLP((*self.hidden, 2 * self.latent_dim), dtype=self.dtype, name="head")(pooled)
        mean, log_var = jnp.split(out, 2, axis=-1)
        return mean, _soft_clip(log_var, -12.0, 4.0)
