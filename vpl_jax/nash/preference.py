"""A preference model P(τ ≻ τ′) that is not a reward: antisymmetric by construction, and able to
represent intransitive (cyclic) preferences.

Bradley–Terry writes ``P(τ ≻ τ′) = sigmoid(R(τ) - R(τ′))``; any such model is transitive
(``R`` orders every trajectory), so a population that prefers a to b, b to c and c to a in the
majority has no Bradley–Terry fit better than "all equal". Nash learning from human feedback
(Munos et al., 2023) learns the preference itself:

    P(τ ≻ τ′) = sigmoid(g(τ, τ′) - g(τ′, τ)),

with ``g`` a network of *both* trajectories. The logit is antisymmetric for every ``g``, so
``P(τ ≻ τ′) + P(τ′ ≻ τ) = 1`` and ``P(τ ≻ τ) = 1/2`` hold exactly, whatever the params; and
because ``g`` sees the pair, ``P`` need not factor through a score. If ``g(τ, τ′)`` ignored τ′
this would be Bradley–Terry with ``R = g``.

Network: a per-step MLP embeds every step of a segment, the segment's embedding ``e`` is the
mean over its live steps (as in VPL's set encoder), and ``g(τ, τ′) = h(e(τ) - e(τ′))`` with
``h`` an MLP (given ``z`` too for a latent model), so the logit is the odd part of ``h``:
``h(d) - h(-d)``. Why the difference: a population of users with additive utilities prefers by
``sum_k w_k sigmoid(θ_k · (Φ(τ) - Φ(τ′)))``, a function of the difference of summed statistics
only, and intransitive whenever the majority is (an odd but non-linear ``h`` can be positive on
``d_ab``, ``d_bc`` and ``d_ca = -(d_ab + d_bc)`` at once; a linear ``h`` is Bradley–Terry). On
the cyclic navigation population this learns the cycle from a few thousand labels where an MLP
on the concatenation ``[e, e′]`` did not. Embeddings are computed once per segment, so scoring
B trajectories against N opponents costs ``B + N`` segment passes and ``B * N`` small pair passes
(:meth:`win_probability`).

Optionally conditioned on a user latent (``latent_dim > 0``): ``g(τ, τ′, z)`` with ``z`` from a
VPL-style set encoder of the user's labelled pairs, trained with the same ELBO as
:class:`~vpl_jax.rewards.VPL` (a random context subset encodes, every labelled pair is
predicted, a ``kl_weight``-weighted KL to N(0, I)).

The model trains with the reward-model trainer :func:`vpl_jax.rewards.fit` (it implements
``inputs``, ``init``, ``loss`` and ``predict``; see :mod:`vpl_jax.rewards.base`), and
:func:`vpl_jax.rewards.evaluate` scores it like any reward model. It has no per-state reward, so
it offers no ``reward``/``segment_return``: policies use :meth:`win_probability` instead.
"""

from __future__ import annotations

import dataclasses
from typing import get_args

import distrax
import jax
import jax.numpy as jnp

from vpl_jax.checks import Choice, ConfigError, Each, Float, Int, check_config, checked
from vpl_jax.rewards.base import (
    Params,
    input_statistics,
    sample_context,
)
from vpl_jax.rewards.batch import Inputs, PairBatch
from vpl_jax.rewards.likelihood import bradley_terry_nll, pair_metrics
from vpl_jax.rewards.likelihood import masked_mean as pooled_mean
from vpl_jax.rewards.networks import MLP, SetEncoder, normalize


@dataclasses.dataclass(frozen=True)
class PreferenceModel:
    """Antisymmetric pairwise preference model (see the module docstring).

    Attributes:
      hidden: hidden widths of the per-step embedding MLP and of the pair MLP ``h``.
      embed_dim: E, width of a segment's embedding.
      latent_dim: Z; 0 is the population model ``g(τ, τ′)``, > 0 conditions ``g`` on a user
        latent inferred from the user's labelled pairs.
      kl_weight: weight of the KL term of the ELBO (``latent_dim > 0`` only).
      min_context, max_context: range of the context size drawn per user in training
        (``latent_dim > 0`` only; ``max_context`` None: all the user's pairs).
      inputs: per-step input kind (``"obs"``, ``"obs_action"`` or ``"features"``).
      normalize_inputs: standardise inputs with statistics of the first training batch.
    """

    hidden: tuple[int, ...] = checked((64, 64), Each(Int(ge=1)))
    embed_dim: int = checked(32, Int(ge=1))
    latent_dim: int = checked(0, Int(ge=0))
    kl_weight: float = checked(1.0, Float(ge=0))
    min_context: int = checked(1, Int(ge=1))
    max_context: int | None = checked(None, Int(ge=1, optional=True))
    inputs: Inputs = checked("obs", Choice(get_args(Inputs)))
    normalize_inputs: bool = True

    #: Metrics that are means over users (validation averages them per user, not per pair).
    user_metrics = ("kl",)

    def __post_init__(self):
        check_config(self)
        if self.max_context is not None and self.max_context < self.min_context:
            raise ConfigError(
                f"PreferenceModel.max_context={self.max_context}: must be None or >= "
                f"min_context={self.min_context}"
            )

    # --- networks ----------------------------------------------------------------------------
    def _step_net(self) -> MLP:
        return MLP((*self.hidden, self.embed_dim))

    def _pair_net(self) -> MLP:
        return MLP((*self.hidden, 1))

    def _encoder(self) -> SetEncoder:
        return SetEncoder(latent_dim=self.latent_dim, embed_dim=self.embed_dim, hidden=self.hidden)

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        k_step, k_pair, k_enc = jax.random.split(key, 3)
        params = {
            "step": self._step_net().init(k_step, jnp.zeros((1, batch.input_dim))),
            "pair": self._pair_net().init(k_pair, jnp.zeros((1, self.embed_dim + self.latent_dim))),
        }
        if self.latent_dim:
            b = batch
            params["encoder"] = self._encoder().init(
                k_enc, b.inputs_a, b.inputs_b, b.alive_a, b.alive_b, b.labels, b.mask
            )
        if self.normalize_inputs:
            params["input_norm"] = input_statistics(batch)
        return params

    # --- the preference ------------------------------------------------------------------------
    def embed(self, params: Params, x: jax.Array, alive: jax.Array) -> jax.Array:
        """f32[..., E]: segment embeddings of ``x: f32[..., H, D]`` over ``alive: bool[..., H]``."""
        h = self._step_net().apply(params["step"], normalize(params.get("input_norm"), x))
        return pooled_mean(h, alive, axis=-2)

    def _h(self, params: Params, d: jax.Array, z: jax.Array | None):
        parts = [d]
        if self.latent_dim:
            if z is None:
                raise ValueError("this PreferenceModel is conditioned on a user latent; pass z")
            parts.append(jnp.broadcast_to(z, (*d.shape[:-1], self.latent_dim)))
        return self._pair_net().apply(params["pair"], jnp.concatenate(parts, -1))[..., 0]

    def embedding_logit(
        self, params: Params, e_a: jax.Array, e_b: jax.Array, z: jax.Array | None = None
    ) -> jax.Array:
        """f32[...]: the logit ``h(e_a - e_b) - h(e_b - e_a)`` of ``P(a ≻ b)`` from embeddings
        ``e_a, e_b: f32[..., E]`` (broadcast; ``z: f32[..., Z]`` for a latent model)."""
        d = e_a - e_b
        return self._h(params, d, z) - self._h(params, -d, z)

    def logit(
        self,
        params: Params,
        x_a: jax.Array,
        alive_a: jax.Array,
        x_b: jax.Array,
        alive_b: jax.Array,
        z: jax.Array | None = None,
    ) -> jax.Array:
        """f32[...]: the logit of ``P(a ≻ b)`` for segments ``x_a, x_b: f32[..., H, D]``."""
        e_a, e_b = self.embed(params, x_a, alive_a), self.embed(params, x_b, alive_b)
        return self.embedding_logit(params, e_a, e_b, z)

    def win_probability(
        self,
        params: Params,
        x: jax.Array,
        alive: jax.Array,
        x_opponents: jax.Array,
        alive_opponents: jax.Array,
        z: jax.Array | None = None,
        weights: jax.Array | None = None,
    ) -> jax.Array:
        """f32[B]: ``sum_j w_j P(τ_b ≻ τ′_j)`` of B trajectories against N opponents.

        ``x: f32[B, H, D]``, ``alive: bool[B, H]``, ``x_opponents: f32[N, H', D]``,
        ``alive_opponents: bool[N, H']``; ``z: f32[Z]`` (one user) for a latent model;
        ``weights: f32[N]`` summing to 1 (default ``1/N``: the mean).
        """
        e = self.embed(params, x, alive)[:, None]  # [B, 1, E]
        e_opp = self.embed(params, x_opponents, alive_opponents)[None]  # [1, N, E]
        p = jax.nn.sigmoid(self.embedding_logit(params, e, e_opp, z))
        return p.mean(-1) if weights is None else p @ weights

    def pair_logits(
        self, params: Params, batch: PairBatch, z: jax.Array | None = None
    ) -> jax.Array:
        """f32[..., Q]: logits of a batch of pairs (``z: f32[..., Z]``, one per user)."""
        if z is not None:
            z = z[..., None, :]
        return self.logit(params, batch.inputs_a, batch.alive_a, batch.inputs_b, batch.alive_b, z)

    # --- the user latent -----------------------------------------------------------------------
    def prior(self, params: Params) -> distrax.MultivariateNormalDiag:
        del params
        return distrax.MultivariateNormalDiag(jnp.zeros(self.latent_dim), jnp.ones(self.latent_dim))

    def posterior(self, params: Params, context: PairBatch) -> distrax.MultivariateNormalDiag:
        """q(z | context) for ``context: PairBatch[..., K]`` (the prior where nothing is
        labelled); only for ``latent_dim > 0``."""
        if not self.latent_dim:
            raise ValueError("PreferenceModel with latent_dim=0 has no user latent")
        c = context
        x_a = normalize(params.get("input_norm"), c.inputs_a)
        x_b = normalize(params.get("input_norm"), c.inputs_b)
        mean, log_var = self._encoder().apply(
            params["encoder"], x_a, x_b, c.alive_a, c.alive_b, c.labels, c.mask
        )
        empty = ~jnp.any(c.mask, axis=-1, keepdims=True)
        mean = jnp.where(empty, 0.0, mean)
        scale = jnp.where(empty, 1.0, jnp.exp(0.5 * log_var))
        return distrax.MultivariateNormalDiag(mean, scale)

    # --- training ------------------------------------------------------------------------------
    def loss(self, params: Params, batch: PairBatch, key: jax.Array, step: jax.Array):
        """Mean NLL per labelled pair (population model), or the -ELBO per labelled pair (latent
        model, as :meth:`vpl_jax.rewards.VPL.loss`) of ``batch: PairBatch[B, Q]``."""
        del step
        if not self.latent_dim:
            logits = self.pair_logits(params, batch)
            metrics = pair_metrics(logits, batch.labels, batch.mask)
            return metrics["nll"], {**metrics, "loss": metrics["nll"]}
        k_context, k_z = jax.random.split(key)
        context = sample_context(k_context, batch, self.min_context, self.max_context)
        q = self.posterior(params, context)
        logits = self.pair_logits(params, batch, q.sample(seed=k_z))
        nll = jnp.where(batch.mask, bradley_terry_nll(logits, batch.labels), 0.0)
        num_pairs = jnp.maximum(jnp.sum(batch.mask), 1.0)
        kl = q.kl_divergence(self.prior(params))
        loss = (jnp.sum(nll) + self.kl_weight * jnp.sum(kl)) / num_pairs
        metrics = pair_metrics(self.pair_logits(params, batch, q.mean()), batch.labels, batch.mask)
        # KL per user with a labelled pair (a padding user has an empty context and KL 0).
        has_pairs = jnp.any(batch.mask, axis=-1)
        kl_mean = jnp.sum(jnp.where(has_pairs, kl, 0.0)) / jnp.maximum(jnp.sum(has_pairs), 1.0)
        return loss, {**metrics, "loss": loss, "kl": kl_mean}

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[..., M]: logits of each user's target pairs (given the user's context for a
        latent model; the population model ignores it)."""
        if not self.latent_dim:
            return self.pair_logits(params, targets)
        return self.pair_logits(params, targets, self.posterior(params, context).mean())
