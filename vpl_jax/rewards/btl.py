"""BTL: one reward r(s) for everyone, fit with the Bradley–Terry likelihood (Christiano et al.,
2017). The baseline that averages users: with users who want opposite things it learns their
compromise.

``P(a ≻ b) = sigmoid(R_a - R_b)`` with ``R = sum_t alive_t r(x_t)`` over the segment's live steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vpl_jax.checks import WIDTHS, check_config, checked
from vpl_jax.rewards.base import (
    DISCOUNT,
    INPUTS,
    Params,
    input_statistics,
    sum_over_steps,
)
from vpl_jax.rewards.batch import DEFAULT_INPUTS, Inputs, PairBatch
from vpl_jax.rewards.likelihood import bradley_terry_nll, masked_mean, strict_accuracy
from vpl_jax.rewards.networks import MLP, normalize


@dataclasses.dataclass(frozen=True)
class BTL:
    """Bradley–Terry reward model.

    Attributes:
      hidden: widths of the reward MLP's hidden layers.
      inputs: per-step input kind (:data:`~vpl_jax.rewards.batch.Inputs`; default
        ``"transition"``, from which every task feature is a function).
      normalize_inputs: standardise inputs with statistics of the first training batch.
      dtype: computation dtype of the networks ("float32", or "bfloat16" to halve memory
        traffic on accelerators); params, returns and likelihoods stay float32.
      discount: the myopic discount the likelihood assumes the labellers apply over a segment
        (B-Pref): a segment's return is ``sum_t discount^(H-1-t) r(x_t)``. 1 is the usual
        partial-return model; a known discount < 1 is the *correct* human model for myopic
        labellers. ``reward`` stays the undiscounted per-step reward a policy maximises.
    """

    hidden: tuple[int, ...] = checked((64, 64), WIDTHS)
    inputs: Inputs = checked(DEFAULT_INPUTS, INPUTS)
    normalize_inputs: bool = True
    dtype: str = "float32"
    discount: float = checked(1.0, DISCOUNT)

    def __post_init__(self):
        check_config(self)

    def _net(self) -> MLP:
        return MLP((*self.hidden, 1), dtype=self.dtype)

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        params = {"reward": self._net().init(key, batch.inputs_a.reshape(-1, batch.input_dim)[:1])}
        if self.normalize_inputs:
            params["input_norm"] = input_statistics(batch)
        return params

    def reward(self, params: Params, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        """f32[...]: r(x) for ``x: f32[..., D]`` (``z`` is ignored: BTL has no user latent)."""
        x = normalize(params.get("input_norm"), x)
        return self._net().apply(params["reward"], x)[..., 0]

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        """f32[...]: return of ``x: f32[..., H, D]`` over the live steps ``alive: bool[..., H]``
        (discounted by the assumed labeller ``discount``)."""
        return sum_over_steps(self.reward(params, x), alive, self.discount)

    def pair_logits(self, params: Params, batch: PairBatch, z: jax.Array | None = None):
        """f32[..., Q]: ``R_a - R_b``, the logit of ``P(a ≻ b)``."""
        r_a = self.segment_return(params, batch.inputs_a, batch.alive_a)
        r_b = self.segment_return(params, batch.inputs_b, batch.alive_b)
        return r_a - r_b

    def loss(self, params, batch: PairBatch, key, step, weights: jax.Array | None = None):
        """Mean Bradley–Terry NLL over the labelled pairs (optionally re-weighted per pair,
        as the ensemble's bootstrap does)."""
        del key, step
        logits = self.pair_logits(params, batch)
        w = batch.mask.astype(jnp.float32) if weights is None else weights * batch.mask
        nll = jnp.sum(bradley_terry_nll(logits, batch.labels) * w) / jnp.maximum(w.sum(), 1.0)
        metrics = {
            "loss": nll,
            "nll": masked_mean(bradley_terry_nll(logits, batch.labels), batch.mask),
            "accuracy": strict_accuracy(logits, batch.labels, batch.mask),
        }
        return nll, metrics

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[..., M]: logits of the target pairs; the context is ignored."""
        del context
        return self.pair_logits(params, targets)
