"""The interface every reward model implements, and the pieces several models share.

A model is a frozen dataclass of hyperparameters (hashable, so it can be a static argument of
``jit``) whose methods are pure functions of a params pytree:

* ``init(key, batch) -> params`` — ``batch`` is an example :class:`PairBatch` (shapes, and the
  statistics for input standardisation);
* ``loss(params, batch, key, step) -> (loss, metrics)`` — scalar loss to minimise and a dict of
  scalar metrics that always holds ``"loss"``, ``"nll"`` (mean negative log-likelihood per
  labelled pair) and ``"accuracy"`` (share of the strict, y != 0.5, labelled pairs predicted);
  ``step`` is the optimiser step (for schedules). Every metric is a mean: ``"accuracy"`` over
  the strict labelled pairs, those the model names in its ``user_metrics`` class attribute over
  the users with at least one labelled pair, all others over the labelled pairs
  (:func:`metric_weights`; the trainer combines chunks of validation users with these weights);
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

from typing import Any, Protocol, get_args

import distrax
import jax
import jax.numpy as jnp

from vpl_jax.checks import Choice, Float
from vpl_jax.rewards.batch import Inputs, PairBatch
from vpl_jax.rewards.networks import fit_normalizer

#: The myopic discount a model's likelihood assumes its labellers apply (1: partial return).
DISCOUNT = Float(gt=0, le=1)
#: What a learned reward network reads per step, one of :data:`~vpl_jax.rewards.batch.Inputs`.
INPUTS = Choice(get_args(Inputs))

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
    """Whether ``model`` infers a per-user latent from context pairs (a model with a
    ``posterior`` and a ``latent_dim`` of 0, e.g. Nash's population preference model, has none)."""
    return callable(getattr(model, "posterior", None)) and getattr(model, "latent_dim", None) != 0


def step_weights(horizon: int, discount: float) -> jax.Array:
    """f32[H]: ``discount^(H-1-t)``, the weight a myopic labeller gives step t of a segment.

    B-Pref's myopic teacher (Lee et al., 2021; :func:`vpl_jax.users.segment_return`) discounts
    *earlier* steps, so the last step weighs 1.
    """
    return jnp.power(jnp.float32(discount), jnp.arange(horizon - 1, -1, -1, dtype=jnp.float32))


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


def metric_weights(model: RewardModel, batch: PairBatch, names) -> dict[str, jax.Array]:
    """``{name: f32[]}``: how many items metric ``name`` of ``model.loss`` on ``batch`` is a mean
    over — strict labelled pairs for ``"accuracy"``, users with a labelled pair for the metrics
    in ``model.user_metrics`` (if the model has that attribute), labelled pairs otherwise.

    A mean over several batches is then ``sum(metric * weight) / sum(weight)``.
    """
    per_user = getattr(model, "user_metrics", ())
    pairs = jnp.sum(batch.mask).astype(jnp.float32)
    strict = jnp.sum(batch.mask & (batch.labels != 0.5)).astype(jnp.float32)
    users = jnp.sum(jnp.any(batch.mask, axis=-1)).astype(jnp.float32)
    return {
        name: strict if name == "accuracy" else users if name in per_user else pairs
        for name in names
    }


def sample_context(
    key: jax.Array, batch: PairBatch, min_size: int, max_size: int | None
) -> PairBatch:
    """A random context per user: ``PairBatch[..., K']`` with ``K' = min(max_size, Q)``.

    For each user (leading axes of ``batch: PairBatch[..., Q]``) draws ``k`` uniformly from
    ``min_size .. min(K', n)`` (n = the user's labelled pairs; ``max_size`` None means Q; a user
    with ``n < min_size`` gets all n), then a uniformly random subset of k labelled pairs. The
    chosen pairs are gathered first and the other K' - k masked out, so an encoder only reads K'
    pairs, not all Q (masking a pair is dropping it for a set encoder). Every user gets its own
    k, so one minibatch trains the encoder on many context sizes at once.

    ``key`` may be a raw ``uint32[2]`` key or a typed one (``jax.random.key``).
    """
    q = batch.num_pairs
    width = q if max_size is None else min(max_size, q)
    lead = batch.mask.shape[:-1]
    keys = jax.random.split(key, lead)  # one key per user (a single key when lead is ())

    def choose(k, mask):
        k_size, k_order = jax.random.split(k)
        n = jnp.sum(mask)
        # randint returns min_size when the upper bound is below it; clipping to n then gives
        # such a user all n pairs. A user with n >= K' draws exactly as from min_size..K'.
        largest = jnp.minimum(width, n)
        size = jnp.minimum(jax.random.randint(k_size, (), min_size, largest + 1), n)
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
    """Standardisation statistics ``{"mean", "inv_std"}: f32[D]`` over the live steps of both
    segments of the labelled pairs (``batch.mask``): skipped and padding pairs, whatever they
    point at, do not shape the normaliser. A batch with no labelled pair uses all of its pairs."""
    labelled = jnp.where(jnp.any(batch.mask), batch.mask, True)[..., None]  # bool[..., Q, 1]
    x = jnp.stack([batch.inputs_a, batch.inputs_b])
    alive = jnp.stack([batch.alive_a & labelled, batch.alive_b & labelled])
    return fit_normalizer(x, alive)
