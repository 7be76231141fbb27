"""DPL: distributional preference learning (Siththaranjan et al., 2024) — a *distribution* of
utilities per state, which models disagreement between users without a user latent.

Two heads, both trained on the cross-entropy of ``P(a ≻ b)`` with (soft) labels:

* :class:`DPLMeanVariance` — each step's utility is ``N(mu(x), sigma(x)^2)``. The hidden context
  (who is labelling) is the same for every step of a segment, so the steps' deviations are taken
  as perfectly correlated: a segment's utility is ``N(sum mu_t, (sum sigma_t)^2)`` over its live
  steps. Segments a and b are independent, as in the paper:
  ``P(a ≻ b) = Phi((mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2))``.
* :class:`DPLCategorical` — each step's utility is categorical over ``num_atoms`` atoms evenly
  spaced in [0, 1]; a segment's utility distribution is the mixture of its live steps'
  distributions (the utility of a random step of the segment), so its mean is the mean of the
  per-step means. ``P(a ≻ b) = P(u_a > u_b) + P(u_a = u_b) / 2``, computed in log space. An
  entropy bonus on the segment distributions (the paper's regulariser) keeps them from
  collapsing to a point.

The per-state ``reward`` is the mean utility (what a policy maximises); ``reward_std`` /
``utility_probs`` expose the spread.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vpl_jax.checks import WIDTHS, Float, Int, check_config, checked
from vpl_jax.rewards.base import (
    INPUTS,
    Params,
    input_statistics,
    sum_over_steps,
)
from vpl_jax.rewards.batch import DEFAULT_INPUTS, Inputs, PairBatch
from vpl_jax.rewards.likelihood import (
    cross_entropy,
    logit_from_log_probs,
    masked_mean,
    pair_metrics,
    probit_log_probs,
)
from vpl_jax.rewards.networks import MLP, normalize


def _init_net(net: MLP, key: jax.Array, batch: PairBatch, normalize_inputs: bool) -> Params:
    params = {"net": net.init(key, batch.inputs_a.reshape(-1, batch.input_dim)[:1])}
    if normalize_inputs:
        params["input_norm"] = input_statistics(batch)
    return params


@dataclasses.dataclass(frozen=True)
class DPLMeanVariance:
    """Mean-variance DPL head.

    Attributes:
      hidden: hidden widths of the MLP giving ``(mu, sigma)`` per step.
      min_std: floor on sigma per step, for numerical stability.
      inputs: per-step input kind. normalize_inputs: standardise inputs.
      dtype: computation dtype of the network (params and likelihoods stay float32).
    """

    hidden: tuple[int, ...] = checked((64, 64), WIDTHS)
    min_std: float = checked(1e-3, Float(gt=0))
    inputs: Inputs = checked(DEFAULT_INPUTS, INPUTS)
    normalize_inputs: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        check_config(self)

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        return _init_net(
            MLP((*self.hidden, 2), dtype=self.dtype), key, batch, self.normalize_inputs
        )

    def _moments(self, params, x):
        out = MLP((*self.hidden, 2), dtype=self.dtype).apply(
            params["net"], normalize(params.get("input_norm"), x)
        )
        return out[..., 0], jax.nn.softplus(out[..., 1]) + self.min_std

    def reward(self, params: Params, x: jax.Array, z=None) -> jax.Array:
        """f32[...]: mean utility mu(x) of ``x: f32[..., D]``."""
        return self._moments(params, x)[0]

    def reward_std(self, params: Params, x: jax.Array) -> jax.Array:
        """f32[...]: sigma(x), the spread of the utility across hidden contexts."""
        return self._moments(params, x)[1]

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        return sum_over_steps(self.reward(params, x), alive)

    def segment_moments(self, params, x, alive) -> tuple[jax.Array, jax.Array]:
        """``(mean, std): f32[...]`` of a segment's utility for ``x: f32[..., H, D]``."""
        mu, sigma = self._moments(params, x)
        return sum_over_steps(mu, alive), sum_over_steps(sigma, alive) + self.min_std

    def pair_log_probs(self, params, batch: PairBatch) -> tuple[jax.Array, jax.Array]:
        """``(log P(a ≻ b), log P(b ≻ a)): f32[..., Q]``."""
        mu_a, sd_a = self.segment_moments(params, batch.inputs_a, batch.alive_a)
        mu_b, sd_b = self.segment_moments(params, batch.inputs_b, batch.alive_b)
        return probit_log_probs((mu_a - mu_b) / jnp.sqrt(sd_a**2 + sd_b**2))

    def pair_logits(self, params, batch: PairBatch, z=None) -> jax.Array:
        return logit_from_log_probs(*self.pair_log_probs(params, batch))

    def loss(self, params, batch: PairBatch, key, step):
        del key, step
        log_p_a, log_p_b = self.pair_log_probs(params, batch)
        nll = masked_mean(cross_entropy(log_p_a, log_p_b, batch.labels), batch.mask)
        metrics = pair_metrics(logit_from_log_probs(log_p_a, log_p_b), batch.labels, batch.mask)
        metrics.update(loss=nll, nll=nll)
        return nll, metrics

    def predict(self, params, context: PairBatch, targets: PairBatch) -> jax.Array:
        del context
        return self.pair_logits(params, targets)


@dataclasses.dataclass(frozen=True)
class DPLCategorical:
    """Categorical DPL head.

    Attributes:
      hidden: hidden widths of the MLP giving per-step atom logits.
      num_atoms: number of utility atoms, evenly spaced in [0, 1].
      entropy_coeff: weight of the entropy bonus on the segments' utility distributions.
      inputs: per-step input kind. normalize_inputs: standardise inputs.
      dtype: computation dtype of the network (params and likelihoods stay float32).
    """

    hidden: tuple[int, ...] = checked((64, 64), WIDTHS)
    num_atoms: int = checked(10, Int(ge=2))
    entropy_coeff: float = checked(0.01, Float(ge=0))
    inputs: Inputs = checked(DEFAULT_INPUTS, INPUTS)
    normalize_inputs: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        check_config(self)

    @property
    def atoms(self) -> jax.Array:
        """f32[A]: the utility values."""
        return jnp.linspace(0.0, 1.0, self.num_atoms)

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        return _init_net(
            MLP((*self.hidden, self.num_atoms), dtype=self.dtype), key, batch, self.normalize_inputs
        )

    def _log_probs(self, params, x) -> jax.Array:
        x = normalize(params.get("input_norm"), x)
        return jax.nn.log_softmax(
            MLP((*self.hidden, self.num_atoms), dtype=self.dtype).apply(params["net"], x)
        )

    def utility_probs(self, params: Params, x: jax.Array) -> jax.Array:
        """f32[..., A]: the utility distribution of each state ``x: f32[..., D]``."""
        return jnp.exp(self._log_probs(params, x))

    def reward(self, params: Params, x: jax.Array, z=None) -> jax.Array:
        """f32[...]: the mean utility of ``x: f32[..., D]``."""
        return self.utility_probs(params, x) @ self.atoms

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        return sum_over_steps(self.reward(params, x), alive)

    def segment_log_probs(self, params, x, alive) -> jax.Array:
        """f32[..., A]: log-probabilities of a segment's utility (mixture over live steps)."""
        log_p = self._log_probs(params, x)  # [..., H, A]
        # Large negative instead of -inf for dead steps keeps every gradient finite.
        log_p = jnp.where(alive[..., None], log_p, -1e30)
        n = jnp.maximum(jnp.sum(alive, axis=-1, keepdims=True), 1).astype(log_p.dtype)
        mixed = jax.nn.logsumexp(log_p, axis=-2) - jnp.log(n)
        uniform = -jnp.log(float(self.num_atoms))
        return jnp.where(jnp.any(alive, axis=-1, keepdims=True), mixed, uniform)

    def pair_log_probs(self, params, batch: PairBatch) -> tuple[jax.Array, jax.Array]:
        """``(log P(a ≻ b), log P(b ≻ a)): f32[..., Q]``, ties counted half to each side."""
        la = self.segment_log_probs(params, batch.inputs_a, batch.alive_a)
        lb = self.segment_log_probs(params, batch.inputs_b, batch.alive_b)
        joint = la[..., :, None] + lb[..., None, :]  # [..., A, A]: log P(u_a = i, u_b = j)
        i = jnp.arange(self.num_atoms)
        wins = (i[:, None] > i[None, :]) + 0.5 * (i[:, None] == i[None, :])
        log_p_a = jax.nn.logsumexp(joint, axis=(-2, -1), b=wins)
        log_p_b = jax.nn.logsumexp(joint, axis=(-2, -1), b=wins.T)
        return log_p_a, log_p_b

    def pair_logits(self, params, batch: PairBatch, z=None) -> jax.Array:
        return logit_from_log_probs(*self.pair_log_probs(params, batch))

    def loss(self, params, batch: PairBatch, key, step):
        del key, step
        log_p_a, log_p_b = self.pair_log_probs(params, batch)
        nll = masked_mean(cross_entropy(log_p_a, log_p_b, batch.labels), batch.mask)
        entropy = 0.0
        for x, alive in ((batch.inputs_a, batch.alive_a), (batch.inputs_b, batch.alive_b)):
            log_p = self.segment_log_probs(params, x, alive)
            entropy += 0.5 * masked_mean(-jnp.sum(jnp.exp(log_p) * log_p, axis=-1), batch.mask)
        loss = nll - self.entropy_coeff * entropy
        metrics = pair_metrics(logit_from_log_probs(log_p_a, log_p_b), batch.labels, batch.mask)
        metrics.update(loss=loss, nll=nll, entropy=entropy)
        return loss, metrics

    def predict(self, params, context: PairBatch, targets: PairBatch) -> jax.Array:
        del context
        return self.pair_logits(params, targets)
