"""VPL: variational preference learning (Poddar et al., 2024) — a reward r(s, z) conditioned on a
user latent z inferred from that user's labelled pairs.

Generative model of one user's labelled pairs: ``z ~ p(z)`` (N(0, I) or a learned diagonal
Gaussian), ``P(a ≻ b | z) = sigmoid(R_a(z) - R_b(z))`` with ``R(z) = sum_t alive_t r(x_t, z)``.
The encoder q(z | C) reads a *set* C of labelled pairs (:class:`~vpl_jax.rewards.networks.
SetEncoder`), so it takes any number of pairs k <= K in any order; an empty context gives the
prior exactly.

Training objective, -ELBO per labelled pair, for a user with labelled pairs D (Q of them):

    loss = ( -E_{q(z|C)}[ sum_{q in D} log p(y_q | z) ] + beta_t KL(q(z|C) || p(z)) ) / |D|

where the context C is a random subset of D of random size k ~ U{min_context .. max_context},
drawn per user (not one k per minibatch: the same compute covers many context sizes) and per
step; the expectation uses ``num_samples`` reparameterised samples of z.

Why encode a subset but predict *all* of D: the ELBO ``log p(D) >= E_q[log p(D|z)] - KL(q || p)``
holds for any q, including one that sees only part of D, so this is still a proper bound on the
user's whole data; and because most of D is not in C, the encoder must produce a z that
generalises to pairs it has not seen, which is what it has to do at test time (K context pairs ->
predict M held-out pairs). Predicting only D \\ C would no longer bound log p(D), and predicting
only C would reward memorising the context.

A minibatch's loss sums the users' numerators and divides by their total number of labelled
pairs. Being normalised per labelled pair, ``kl_weight = 1`` is the true ELBO whatever Q is;
beta < 1 gives the beta-VAE trade-off. beta is annealed linearly from 0 over
``kl_warmup_steps`` optimiser steps (Bowman et al., 2016) so that the encoder learns to use z
before the KL pulls it to the prior.
"""

from __future__ import annotations

import dataclasses
from typing import get_args

import distrax
import jax
import jax.numpy as jnp
import optax

from vpl_jax.checks import WIDTHS, Choice, ConfigError, Float, Int, check_config, checked
from vpl_jax.rewards.base import (
    DISCOUNT,
    INPUTS,
    Params,
    input_statistics,
    sample_context,
    sum_over_steps,
)
from vpl_jax.rewards.batch import DEFAULT_INPUTS, Inputs, PairBatch
from vpl_jax.rewards.likelihood import bradley_terry_nll, strict_accuracy
from vpl_jax.rewards.networks import MLP, BasisDecoder, Pooling, SetEncoder, normalize

#: VPL's decoders r(x, z).
DECODERS = ("mlp", "basis")


@dataclasses.dataclass(frozen=True)
class VPL:
    """Variational preference learning with a set encoder.

    Attributes:
      latent_dim: Z, size of the user latent.
      embed_dim: width of the encoder's step, segment and pair embeddings.
      encoder_hidden: hidden widths of the encoder's per-step, per-pair and head MLPs.
      pooling: ``"mean"`` (masked mean of pair embeddings) or ``"attention"`` (one masked
        self-attention block over the set, then the masked mean).
      num_heads: attention heads (``pooling="attention"`` only).
      decoder_hidden: hidden widths of the reward network r(x, z).
      decoder: ``"mlp"`` (an MLP of the concatenation [x, z]) or ``"basis"`` (r = g(x) · w(z): a
        basis of per-step features shared by all users, weighted per user;
        :class:`~vpl_jax.rewards.networks.BasisDecoder`).
      learned_prior: learn the prior's mean and scale instead of N(0, I).
      kl_weight: beta, weight of the KL term at the end of the warm-up (1 = the ELBO).
      kl_warmup_steps: optimiser steps over which beta rises linearly from 0 (0: constant).
      min_context, max_context: range of the context size k drawn per user in training
        (``max_context`` None: up to all the user's labelled pairs). Set ``max_context`` to the
        test-time K.
      num_samples: samples of z per user for the expected log-likelihood.
      inputs: per-step input kind (:data:`~vpl_jax.rewards.batch.Inputs`; default
        ``"transition"``, from which every task feature is a function).
      normalize_inputs: standardise inputs with statistics of the first training batch.
      dtype: computation dtype of the networks ("float32", or "bfloat16" to halve memory
        traffic on accelerators); params, returns and likelihoods stay float32.
      discount: the myopic discount the likelihood assumes the labellers apply over a segment
        (as :class:`~vpl_jax.rewards.BTL`'s); 1 is the partial-return model.
    """

    latent_dim: int = checked(8, Int(ge=1))
    embed_dim: int = checked(64, Int(ge=1))
    encoder_hidden: tuple[int, ...] = checked((64, 64), WIDTHS)
    pooling: Pooling = checked("mean", Choice(get_args(Pooling)))
    num_heads: int = checked(4, Int(ge=1))
    decoder_hidden: tuple[int, ...] = checked((64, 64), WIDTHS)
    decoder: str = checked("mlp", Choice(DECODERS))
    learned_prior: bool = False
    kl_weight: float = checked(1.0, Float(ge=0))
    kl_warmup_steps: int = checked(0, Int(ge=0))
    min_context: int = checked(1, Int(ge=1))
    max_context: int | None = checked(None, Int(ge=1, optional=True))
    num_samples: int = checked(1, Int(ge=1))
    inputs: Inputs = checked(DEFAULT_INPUTS, INPUTS)
    normalize_inputs: bool = True
    dtype: str = "float32"
    discount: float = checked(1.0, DISCOUNT)

    #: Metrics of :meth:`loss` that are means over users (not pairs); see ``metric_weights``.
    user_metrics = ("kl", "context_size")

    def __post_init__(self):
        check_config(self)
        if self.pooling == "attention" and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"VPL.num_heads={self.num_heads}: must divide embed_dim={self.embed_dim} with "
                "pooling='attention'"
            )
        if self.max_context is not None and self.max_context < self.min_context:
            raise ConfigError(
                f"VPL.max_context={self.max_context}: must be None or >= min_context="
                f"{self.min_context}"
            )

    # --- networks ----------------------------------------------------------------------------
    def _encoder(self) -> SetEncoder:
        return SetEncoder(
            latent_dim=self.latent_dim,
            embed_dim=self.embed_dim,
            hidden=self.encoder_hidden,
            pooling=self.pooling,
            num_heads=self.num_heads,
            dtype=self.dtype,
        )

    def _decoder(self) -> MLP | BasisDecoder:
        if self.decoder == "basis":
            return BasisDecoder(
                self.decoder_hidden, basis_dim=self.decoder_hidden[-1], dtype=self.dtype
            )
        return MLP((*self.decoder_hidden, 1), dtype=self.dtype)

    def _decoder_inputs(self, x: jax.Array, z: jax.Array) -> tuple[jax.Array, ...]:
        """The decoder's arguments: ``(x, z)`` for the basis decoder, ``([x, z],)`` for the MLP."""
        return (x, z) if self.decoder == "basis" else (jnp.concatenate([x, z], -1),)

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        k_enc, k_dec = jax.random.split(key)
        b = batch
        params = {
            "encoder": self._encoder().init(
                k_enc, b.inputs_a, b.inputs_b, b.alive_a, b.alive_b, b.labels, b.mask
            ),
            "decoder": self._decoder().init(
                k_dec,
                *self._decoder_inputs(jnp.zeros((1, b.input_dim)), jnp.zeros((1, self.latent_dim))),
            ),
        }
        if self.learned_prior:
            zeros = jnp.zeros(self.latent_dim)
            params["prior"] = {"mean": zeros, "log_std": zeros}
        if self.normalize_inputs:
            params["input_norm"] = input_statistics(batch)
        return params

    # --- the reward ----------------------------------------------------------------------------
    def reward(self, params: Params, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        """f32[...]: r(x, z) for ``x: f32[..., D]`` and ``z: f32[..., Z]`` (broadcast against
        x's leading axes; e.g. one z per user for all of that user's states)."""
        if z is None:
            raise ValueError("VPL.reward needs a latent z: f32[..., Z] (e.g. a posterior mean)")
        x = normalize(params.get("input_norm"), x)
        z = jnp.broadcast_to(z, (*x.shape[:-1], self.latent_dim))
        return self._decoder().apply(params["decoder"], *self._decoder_inputs(x, z))[..., 0]

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        """f32[...]: ``sum_t alive_t r(x_t, z)`` for ``x: f32[..., H, D]``, ``z: f32[..., Z]``."""
        if z is None:
            raise ValueError(
                "VPL.segment_return needs a latent z: f32[..., Z] (e.g. a posterior mean)"
            )
        return sum_over_steps(self.reward(params, x, z[..., None, :]), alive, self.discount)

    def pair_logits(self, params: Params, batch: PairBatch, z: jax.Array) -> jax.Array:
        """f32[..., Q]: ``R_a(z) - R_b(z)`` for a batch ``[..., Q]`` and one ``z: f32[..., Z]``
        per user (broadcast over Q)."""
        z = z[..., None, :]
        r_a = self.segment_return(params, batch.inputs_a, batch.alive_a, z)
        r_b = self.segment_return(params, batch.inputs_b, batch.alive_b, z)
        return r_a - r_b

    # --- the latent ----------------------------------------------------------------------------
    def prior(self, params: Params) -> distrax.MultivariateNormalDiag:
        if self.learned_prior:
            p = params["prior"]
            return distrax.MultivariateNormalDiag(p["mean"], jnp.exp(p["log_std"]))
        return distrax.MultivariateNormalDiag(jnp.zeros(self.latent_dim), jnp.ones(self.latent_dim))

    def posterior(self, params: Params, context: PairBatch) -> distrax.MultivariateNormalDiag:
        """q(z | context) for ``context: PairBatch[..., K]``: batch shape [...], event [Z].

        Only pairs with ``mask`` True are read; a user with none gets the prior itself.
        """
        c = context
        x_a = normalize(params.get("input_norm"), c.inputs_a)
        x_b = normalize(params.get("input_norm"), c.inputs_b)
        mean, log_var = self._encoder().apply(
            params["encoder"], x_a, x_b, c.alive_a, c.alive_b, c.labels, c.mask
        )
        prior = self.prior(params)
        empty = ~jnp.any(c.mask, axis=-1, keepdims=True)
        mean = jnp.where(empty, prior.loc, mean)
        scale = jnp.where(empty, prior.scale_diag, jnp.exp(0.5 * log_var))
        return distrax.MultivariateNormalDiag(mean, scale)

    # --- training ------------------------------------------------------------------------------
    def kl_schedule(self, step: jax.Array) -> jax.Array:
        """beta at optimiser step ``step``: linear warm-up from 0 to ``kl_weight``."""
        if self.kl_warmup_steps == 0:
            return jnp.asarray(self.kl_weight, jnp.float32)
        return optax.linear_schedule(0.0, self.kl_weight, self.kl_warmup_steps)(step)

    def loss(self, params: Params, batch: PairBatch, key: jax.Array, step: jax.Array):
        """-ELBO per labelled pair of a minibatch of users ``batch: PairBatch[B, Q]``."""
        k_context, k_z = jax.random.split(key)
        context = sample_context(k_context, batch, self.min_context, self.max_context)
        q = self.posterior(params, context)
        z = q.sample(seed=k_z, sample_shape=(self.num_samples,))  # [N, B, Z]
        logits = jax.vmap(self.pair_logits, in_axes=(None, None, 0))(params, batch, z)
        nll = jnp.where(batch.mask, bradley_terry_nll(logits, batch.labels), 0.0)
        nll_per_user = jnp.mean(jnp.sum(nll, axis=-1), axis=0)  # [B]
        kl = q.kl_divergence(self.prior(params))  # [B]; 0 for users with an empty context
        beta = self.kl_schedule(step)
        num_pairs = jnp.maximum(jnp.sum(batch.mask), 1.0)
        loss = (jnp.sum(nll_per_user) + beta * jnp.sum(kl)) / num_pairs
        # Per-user metrics (``user_metrics``) average over the users with a labelled pair: a
        # user without one (e.g. padding) has an empty context, KL 0 and context size 0.
        has_pairs = jnp.any(batch.mask, axis=-1)  # [B]
        num_users = jnp.maximum(jnp.sum(has_pairs), 1.0)
        # Accuracy of the logits the loss already has (under the sampled z, averaged over the
        # samples): scoring the posterior mean here would cost a second decoder pass, a fifth of
        # a training step. ``evaluate``/``predict`` report accuracy under the posterior mean.
        metrics = dict(
            accuracy=strict_accuracy(
                logits,
                jnp.broadcast_to(batch.labels, logits.shape),
                jnp.broadcast_to(batch.mask, logits.shape),
            ),
            loss=loss,
            nll=jnp.sum(nll_per_user) / num_pairs,
            kl=jnp.sum(jnp.where(has_pairs, kl, 0.0)) / num_users,
            kl_weight=beta,
            context_size=jnp.sum(context.mask).astype(jnp.float32) / num_users,
        )
        return loss, metrics

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[..., M]: logits of each user's target pairs under the posterior mean of z."""
        return self.pair_logits(params, targets, self.posterior(params, context).mean())
