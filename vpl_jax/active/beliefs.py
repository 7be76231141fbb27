"""What a trained reward model believes about one user, as weighted particles over a candidate pool.

Acquisition needs, for one user with context C (their labelled pairs so far), samples of the
latent that explains them and the logits every sample gives each candidate pair. The three model
families expose that differently, so each gets a small adapter with one interface (a *belief*):

* :class:`LatentBelief` — VPL or LinearBayes: particles are N samples of the posterior q(z | C)
  (VPL's encoder; LinearBayes' Laplace posterior over theta), equally weighted.
* :class:`EnsembleBelief` — a BTL ensemble has no user latent; its particles are its E members,
  weighted by how well each explains the user's answers, ``w_e ∝ prod_k p_e(y_k | pair_k)``
  (Bayesian model averaging over the members). Without answers that is the plain ensemble; with
  them it is the only way an ensemble of population-level rewards can adapt to one user.

Interface (one unbatched user; ``vmap`` over users and seeds outside):

* ``particles(params, context, key) -> (z: f32[N, ...], w: f32[N])`` — samples and weights;
* ``returns(params, bank, z) -> f32[N, S]`` — every particle's return of every candidate segment;
* ``pair_logits(params, targets, z) -> f32[N, M]`` — every particle's logit of target pairs;
* ``predict(params, context, targets) -> f32[M]`` — the logit of ``P(a ≻ b)`` of target pairs;
* ``spread(params, context, targets) -> f32[]`` — the belief's uncertainty: the variance of the
  predicted ``P(a ≻ b)`` over its particles (the latent posterior's sigma points; the ensemble's
  weighted members), averaged over the targets;
* ``mean(params, context) -> f32[Z]`` — the posterior mean (latent models);
  ``latent_is_theta`` says whether it lives in the space of the users' true weights.

:class:`Candidates` holds the shared pool of candidate pairs, with the per-step inputs of only
the segments the pool uses: candidate logits are differences of per-segment returns, so each
segment's return is computed once per particle, not once per pair it appears in.

Axes: Q candidates, S segments the pool uses, H steps, D model inputs per step, F task features,
N particles, K context slots, M held-out pairs, Z latent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vpl_jax.checks import Int, check_config, checked
from vpl_jax.rewards import VPL, Ensemble, LinearBayes, PairBatch, SegmentBank, segment_bank
from vpl_jax.rewards.base import Params
from vpl_jax.rewards.likelihood import bradley_terry_nll


@struct.dataclass
class Candidates:
    """The candidate pairs of a pool, over the segments they use.

    Attributes:
      bank: the model's per-step inputs of the S segments the pool uses (kind ``bank.kind``).
      features: f32[S, H, F] the task features of the same segments — what a simulated user
        judges them by.
      pairs: i32[Q, 2] the candidate pairs (a, b) as indices into those S segments.
      segment_ids: i32[S] the index of each of those segments in the dataset's segments (what
        :func:`candidates` records) or in the rows of a feature matrix
        (:func:`~vpl_jax.active.features.candidates_from_features`), so that pairs given in
        those indices — e.g. held-out pairs to exclude — can be matched; None if unknown.
    """

    bank: SegmentBank
    features: jax.Array
    pairs: jax.Array
    segment_ids: jax.Array | None = None

    @property
    def num_candidates(self) -> int:
        return self.pairs.shape[0]

    def batch(self, index: jax.Array, labels: jax.Array, mask: jax.Array) -> PairBatch:
        """The :class:`PairBatch` of candidates ``index: i32[K]`` with ``labels``, ``mask``."""
        pairs = self.pairs[index]
        a, b = pairs[..., 0], pairs[..., 1]
        return PairBatch(
            inputs_a=self.bank.inputs[a],
            inputs_b=self.bank.inputs[b],
            alive_a=self.bank.alive[a],
            alive_b=self.bank.alive[b],
            labels=labels.astype(jnp.float32),
            mask=mask.astype(bool),
        )

    def swapped(self) -> Candidates:
        """The same candidates with a and b exchanged."""
        return self.replace(pairs=self.pairs[:, ::-1])


def candidates(dataset, inputs: str, pool=None) -> Candidates:
    """The :class:`Candidates` of ``dataset.pool`` (or ``pool: i32[Q, 2]`` into the dataset's
    segments) with per-step inputs of kind ``inputs`` (a model's ``inputs``). Host-side: keeps
    only the segments the pool uses and re-indexes the pairs into them.

    A pair that occurs more than once in the pool, in either order, is kept once (its first
    occurrence), so that "not asked yet" means a comparison the user has not answered.
    """
    pool = np.asarray(dataset.pool if pool is None else pool)
    if pool.ndim != 2 or pool.shape[1] != 2 or pool.shape[0] < 1:
        raise ValueError(f"candidate pool must be i32[Q, 2] with Q >= 1, got shape {pool.shape}")
    used, local = index_pool(pool)
    segments = jax.tree.map(lambda x: x[used], dataset.segments)
    return Candidates(
        bank=segment_bank(segments, inputs),
        features=jnp.asarray(segments.features, jnp.float32),
        pairs=jnp.asarray(local, jnp.int32),
        segment_ids=jnp.asarray(used, jnp.int32),
    )


def index_pool(pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(used: i64[S], local: i64[Q', 2])`` for a pool ``pool: i[Q, 2]`` of segment indices:
    the segments it uses (sorted) and its pairs re-indexed into them, each unordered pair once
    (its first occurrence, in pool order). Host-side."""
    _, first = np.unique(np.sort(pool, axis=1), axis=0, return_index=True)
    pool = pool[np.sort(first)]
    used, local = np.unique(pool, return_inverse=True)
    return used, local.reshape(pool.shape)


def excluded_candidates(cands: Candidates, pairs: jax.Array) -> jax.Array:
    """bool[Q]: the candidates that are one of ``pairs: i32[M, 2]`` (dataset segment indices),
    in either order — e.g. a user's held-out pairs, which must never be asked."""
    ids = cands.segment_ids[cands.pairs]  # [Q, 2]
    lo, hi = jnp.min(ids, -1)[:, None], jnp.max(ids, -1)[:, None]
    return jnp.any((lo == jnp.min(pairs, -1)) & (hi == jnp.max(pairs, -1)), axis=-1)


def candidate_logits(returns: jax.Array, pairs: jax.Array) -> jax.Array:
    """f32[N, Q]: ``R_a - R_b`` of every candidate under every particle, from the particles'
    segment returns ``returns: f32[N, S]`` and ``pairs: i32[Q, 2]``."""
    return returns[:, pairs[:, 0]] - returns[:, pairs[:, 1]]


@dataclasses.dataclass(frozen=True)
class LatentBelief:
    """Posterior samples of a latent model (VPL's z or LinearBayes' theta).

    Attributes:
      model: a :class:`~vpl_jax.rewards.VPL` or :class:`~vpl_jax.rewards.LinearBayes`.
      num_samples: N, posterior samples per user and round.
    """

    model: VPL | LinearBayes
    num_samples: int = checked(32, Int(ge=1))

    def __post_init__(self):
        if not isinstance(self.model, VPL | LinearBayes):
            raise ValueError(
                f"LatentBelief needs a VPL or LinearBayes model, got {type(self.model).__name__}"
            )
        check_config(self)

    @property
    def latent_is_theta(self) -> bool:
        """LinearBayes' latent is the users' reward weights themselves."""
        return isinstance(self.model, LinearBayes)

    def particles(self, params: Params, context: PairBatch, key: jax.Array):
        """``(z: f32[N, Z], w: f32[N])`` — N samples of q(z | context), equal weights."""
        q = self.model.posterior(params, context)
        z = q.sample(seed=key, sample_shape=(self.num_samples,))
        return z, jnp.full((self.num_samples,), 1.0 / self.num_samples)

    def returns(self, params: Params, bank: SegmentBank, z: jax.Array) -> jax.Array:
        """f32[N, S]: each sample's return of each segment of ``bank``."""
        return jax.vmap(lambda zi: self.model.segment_return(params, bank.inputs, bank.alive, zi))(
            z
        )

    def pair_logits(self, params: Params, targets: PairBatch, z: jax.Array) -> jax.Array:
        """f32[N, M]: each sample's logit of ``P(a ≻ b)`` of ``targets: PairBatch[M]``."""
        return jax.vmap(lambda zi: self.model.pair_logits(params, targets, zi))(z)

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[M]: the model's own prediction (VPL: posterior mean z; LinearBayes: the probit
        posterior predictive) — the same as :func:`~vpl_jax.rewards.evaluate` scores."""
        return self.model.predict(params, context, targets)

    def spread(self, params: Params, context: PairBatch, targets: PairBatch | None) -> jax.Array:
        """f32[]: the variance of the predicted ``P(a ≻ b)`` over the posterior, averaged over
        the (unmasked) targets — the ensemble's spread, over latents instead of members.

        The posterior is represented by its 2Z sigma points, ``mean ± sqrt(Z) L e_i`` with
        ``L L^T`` its covariance (equal weights; they match its mean and covariance exactly), so
        the number is deterministic and costs 2Z decoder passes. Measured in predictions, not
        in the latent: VPL's latent has no units and the decoder may ignore some of its dims,
        so its posterior variance said nothing about which users it gets wrong (Spearman
        correlation with held-out error −0.17 to +0.08 on navigation and highway; this spread:
        +0.16 to +0.56). Without targets (elicitation without a held-out set): the posterior
        variance averaged over the latent dims.
        """
        q = self.model.posterior(params, context)
        if targets is None:
            return jnp.mean(q.variance())
        z = sigma_points(q.mean(), q.covariance())
        probs = jax.nn.sigmoid(self.pair_logits(params, targets, z))  # [2Z, M]
        mask = targets.mask.astype(probs.dtype)
        return jnp.sum(jnp.var(probs, axis=0) * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def mean(self, params: Params, context: PairBatch) -> jax.Array:
        """f32[Z]: the posterior mean."""
        return self.model.posterior(params, context).mean()


def sigma_points(mean: jax.Array, covariance: jax.Array) -> jax.Array:
    """f32[2Z, Z]: ``mean ± sqrt(Z) L e_i`` for ``L`` the Cholesky factor of ``covariance``
    (``f32[Z]``, ``f32[Z, Z]``): 2Z equally weighted points whose mean and covariance are
    exactly ``mean`` and ``covariance`` (the unscented transform without a centre point)."""
    num = mean.shape[-1]
    jitter = 1e-9 * jnp.eye(num, dtype=covariance.dtype)
    scale = jnp.sqrt(jnp.float32(num)) * jnp.linalg.cholesky(covariance + jitter)
    return jnp.concatenate([mean + scale.T, mean - scale.T], axis=0)


@dataclasses.dataclass(frozen=True)
class EnsembleBelief:
    """The members of a BTL ensemble, weighted by the likelihood of the user's answers.

    Attributes:
      model: a trained :class:`~vpl_jax.rewards.Ensemble` (params stacked over E members).
    """

    model: Ensemble

    latent_is_theta = False

    def __post_init__(self):
        if not isinstance(self.model, Ensemble):
            raise ValueError(f"EnsembleBelief needs an Ensemble, got {type(self.model).__name__}")

    @property
    def num_samples(self) -> int:
        return self.model.size

    def weights(self, params: Params, context: PairBatch) -> jax.Array:
        """f32[E]: ``softmax_e sum_k log p_e(y_k)`` over the context's labelled pairs."""
        nll = bradley_terry_nll(self.model.member_logits(params, context), context.labels)
        return jax.nn.softmax(-jnp.sum(jnp.where(context.mask, nll, 0.0), axis=-1))

    def particles(self, params: Params, context: PairBatch, key: jax.Array):
        """``(member index: i32[E], w: f32[E])``; deterministic (``key`` unused)."""
        del key
        return jnp.arange(self.model.size), self.weights(params, context)

    def returns(self, params: Params, bank: SegmentBank, z: jax.Array) -> jax.Array:
        """f32[E, S]: member ``z[e]``'s return of each segment of ``bank``."""
        member = self.model.member
        every = jax.vmap(member.segment_return, in_axes=(0, None, None))(
            params, bank.inputs, bank.alive
        )
        return every[z]

    def pair_logits(self, params: Params, targets: PairBatch, z: jax.Array) -> jax.Array:
        """f32[N, M]: member ``z[n]``'s logit of ``P(a ≻ b)`` of ``targets: PairBatch[M]``."""
        return self.model.member_logits(params, targets)[z]

    def _member_probs(self, params, context, targets):
        w = self.weights(params, context)
        return w, jax.nn.sigmoid(self.model.member_logits(params, targets))  # [E], [E, M]

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[M]: the logit of the weighted members' mean ``P(a ≻ b)``."""
        w, p = self._member_probs(params, context, targets)
        mean = jnp.clip(w @ p, 1e-7, 1.0 - 1e-7)
        return jnp.log(mean) - jnp.log1p(-mean)

    def spread(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        """f32[]: weighted variance of the members' ``P(a ≻ b)``, averaged over the targets."""
        w, p = self._member_probs(params, context, targets)
        return jnp.mean(w @ jnp.square(p - w @ p))

    def mean(self, params: Params, context: PairBatch) -> jax.Array:
        raise ValueError("a BTL ensemble has no user latent (no posterior mean)")


Belief = LatentBelief | EnsembleBelief

#: Which belief adapter serves which reward-model class: ``model class -> factory(model,
#: num_samples) -> Belief``. A model's class and its bases are looked up in order, so a subclass
#: of VPL gets VPL's belief; :func:`register_belief` adds a new model family.
BELIEFS: dict[type, Callable[[Any, int], Belief]] = {
    VPL: LatentBelief,
    LinearBayes: LatentBelief,
    Ensemble: lambda model, num_samples: EnsembleBelief(model),
}


def register_belief(model_type: type, factory: Callable[[Any, int], Belief]) -> None:
    """Makes ``factory(model, num_samples)`` the belief adapter of ``model_type`` (and of its
    subclasses without an entry of their own)."""
    if not isinstance(model_type, type):
        raise TypeError(f"model_type must be a class, got {model_type!r}")
    BELIEFS[model_type] = factory


def belief_factory(model) -> Callable[[Any, int], Belief] | None:
    """The registered belief factory of ``model``'s class or nearest base (None: no belief)."""
    return next((BELIEFS[t] for t in type(model).__mro__ if t in BELIEFS), None)


def has_belief(model) -> bool:
    """Whether ``model`` has a belief about a user (so query criteria can rank candidates)."""
    return belief_factory(model) is not None


def make_belief(model, num_samples: int = 32) -> Belief:
    """The belief adapter of a trained ``model`` (a class in :data:`BELIEFS`: VPL, LinearBayes,
    Ensemble, or one added with :func:`register_belief`)."""
    factory = belief_factory(model)
    if factory is None:
        known = ", ".join(t.__name__ for t in BELIEFS)
        raise ValueError(
            f"active query selection needs a model with a belief ({known}), got "
            f"{type(model).__name__} (a model without uncertainty cannot rank queries)"
        )
    return factory(model, num_samples)


def particle_probs(belief: Belief, params: Params, context: PairBatch, cands: Candidates, key):
    """``(p: f32[N, Q], logits: f32[N, Q], w: f32[N])``: every particle's ``P(a ≻ b)`` of
    every candidate, given the user's ``context: PairBatch[K]``."""
    z, w = belief.particles(params, context, key)
    logits = candidate_logits(belief.returns(params, cands.bank, z), cands.pairs)
    chex.assert_shape(logits, (w.shape[0], cands.num_candidates))
    return jax.nn.sigmoid(logits), logits, w
