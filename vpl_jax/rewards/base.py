"""The interface every reward model implements, and the pieces several models share.

A model is a frozen dataclass of hyperparameters (hashable, so it can be a static argument of
``jit``) whose methods are pure functions of a params pytree:

* ``init(key, batch) -> params`` — ``batch`` is an example :class:`PairBatch` (shapes, and the
  statistics for input standardisation);
* ``loss(params, batch, key, step) -> (loss, metrics)`` — scalar loss to minimise and a dict of
  scalar metrics that always holds ``"loss"``, ``"nll"`` (mean negative log-likelihood per
  labelled pair) and ``"accuracy"``; ``step`` is the optimiser step (for schedules);
* ``reward(params, x, z=None) -> f32[...]`` — per-state reward of ``x: f32[..., D]`` (for
  latent models ``z: f32[..., Z]`` broadcasts against x's leading axes by numpy rules); pure
  and jittable, with input standardisation inside, so a policy can call it on raw observations;
* ``segment_return(params, x, alive, z=None) -> f32[...]`` — sum of per-step rewards of
  ``x: f32[..., H, D]`` over the live steps;
* ``predict(params, context, targets) -> f32[..., M]`` — the logit of ``P(a ≻ b)`` for each
  target pair of each user given that user's context pairs (models without a user latent ignore
  the context).

Latent models (VPL, LinearBayes) add ``prior(params)`` and ``posterior(params, context)``
(distrax distributions over ``z: f32[..., Z]``; Z is their event size — VPL's ``latent_dim``,
LinearBayes' number of features; a context with no labelled pair gives the prior) and
``pair_logits(params, batch, z)``: the logits of a batch of pairs for given latents, which is
what acquisition functions evaluate for many posterior samples.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import distrax
import jax
import jax.numpy as jnp

from vpl_jax.rewards.batch import Inputs, PairBatch
from vpl_jax.rewards.networks import fit_normalizer

Params = Any


class RewardModel(Protocol):
    inputs: Inputs

    def init(self, key: jax.Array, batch: PairBatch) -> Params: ...

    def loss(
        self, params: Params, batch: PairBatch, key: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    def reward(self, params: Params, x: jax.Array, z: jax.Array | None = None) -> jax.Array: ...

    def segment_return(
        self, params: Params, x: jax.Array, alive: jax.Array, z: jax.Array | None = None
    ) -> jax.Array: ...

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array: ...


class LatentRewardModel(RewardModel, Protocol):
    def prior(self, params: Params) -> distrax.Distribution: ...

    def posterior(self, params: Params, context: PairBatch) -> distrax.Distribution: ...

    def pair_logits(self, params: Params, batch: PairBatch, z: jax.Array) -> jax.Array: ...


def is_latent(model: RewardModel) -> bool:
    """Whether ``model`` infers a per-user latent from context pairs."""
    return callable(getattr(model, "posterior", None))


def step_weights(horizon: int, discount: float) -> jax.Array:
    """f32[H]: ``discount^(H-1-t)``, the weight a myopic labeller gives step t of a segment.

    B-Pref's myopic teacher (Lee et al., 2021; :func:`vpl_jax.users.segment_return`) discounts
    *earlier* steps, so the last step weighs 1.
    """
    return jnp.power(jnp.float32(discount), jnp.arange(horizon - 1, -1, -1, dtype=jnp.float32))


def check_discount(model_name: str, discount: float) -> None:
    """Raises ``ValueError`` unless the assumed labeller discount is in (0, 1]."""
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"{model_name} discount={discount}: must be in (0, 1] (1: partial return)")


def sum_over_steps(per_step: jax.Array, alive: jax.Array, discount: float = 1.0) -> jax.Array:
    """f32[...]: ``sum_t alive_t * discount^(H-1-t) * per_step_t`` of ``per_step: f32[..., H]``.

    ``discount`` (static) is the myopic discount the model assumes its labellers apply over a
    segment (:func:`step_weights`); 1 is the partial-return model and skips the weighting, so
    the result is bit-for-bit the plain sum.
    """
    per_step = jnp.where(alive, per_step, 0.0)
    if discount != 1.0:
        per_step = per_step * step_weights(per_step.shape[-1], discount)
    return jnp.sum(per_step, axis=-1)


def sample_context(
    key: jax.Array, batch: PairBatch, min_size: int, max_size: int | None
) -> PairBatch:
    """A random context per user: ``PairBatch[..., K']`` with ``K' = min(max_size, Q)``.

    For each user (leading axes of ``batch: PairBatch[..., Q]``) draws ``k`` uniformly from
    ``min_size .. min(max_size, n)`` (n = the user's labelled pairs; ``max_size`` None means Q),
    then a uniformly random subset of k labelled pairs. The chosen pairs are gathered first and
    the other K' - k masked out, so an encoder only reads K' pairs, not all Q (masking a pair is
    dropping it for a set encoder). Every user gets its own k, so one minibatch trains the
    encoder on many context sizes at once.
    """
    q = batch.num_pairs
    width = q if max_size is None else min(max_size, q)
    lead = batch.mask.shape[:-1]
    keys = jax.random.split(key, max(1, math.prod(lead))).reshape(*lead, -1)

    def choose(k, mask):
        k_size, k_order = jax.random.split(k)
        size = jnp.minimum(jax.random.randint(k_size, (), min_size, width + 1), jnp.sum(mask))
        # Unlabelled pairs get scores above every labelled one, so the first k are labelled.
        scores = jnp.where(mask, jax.random.uniform(k_order, (q,)), 2.0)
        return jnp.argsort(scores)[:width], jnp.arange(width) < size

    for _ in lead:
        choose = jax.vmap(choose)
    index, keep = choose(keys, batch.mask)

    def take(x):
        idx = index.reshape(index.shape + (1,) * (x.ndim - index.ndim))
        return jnp.take_along_axis(x, idx, axis=len(lead))

    return jax.tree.map(take, batch).replace(mask=keep)


def input_statistics(batch: PairBatch) -> dict[str, jax.Array]:
    """Standardisation statistics ``{"mean", "inv_std"}: f32[D]`` over both segments' live steps."""
    x = jnp.stack([batch.inputs_a, batch.inputs_b])
    alive = jnp.stack([batch.alive_a, batch.alive_b])
    return fit_normalizer(x, alive)
