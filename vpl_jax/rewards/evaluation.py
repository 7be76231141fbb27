"""Evaluating reward models on test users: each user's K context pairs -> predictions of that
user's M held-out pairs.

For a latent model the context is encoded (accuracy — VPL: the posterior mean of z;
LinearBayes: the posterior predictive; log-likelihood — the posterior predictive for both), for
the others it is ignored. Metrics per user, averaged per user type
(each user of a type weighs the same), plus the latent-space views: posterior moments per user
and a 2-D PCA projection of the posterior means with the users' type ids (the data of the
latent-space figure).

All functions take :class:`~vpl_jax.rewards.batch.UserPairs` for the context and the held-out
pairs of the same users, in the same order (``user_pairs(test, "context")`` and
``user_pairs(test, "heldout")``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vpl_jax.rewards.base import Params, RewardModel, is_latent
from vpl_jax.rewards.batch import UserPairs, check_same_inputs, check_user_pairs, untyped
from vpl_jax.rewards.likelihood import bradley_terry_nll, masked_mean, strict_accuracy


@struct.dataclass
class Evaluation:
    """Held-out metrics (with leading axes for seeds or context sizes where asked for).

    Attributes:
      accuracy: f32[U], share of each user's strict held-out labels predicted (NaN if none).
      log_likelihood: f32[U], mean posterior-predictive ``log p(y | context)`` per labelled
        held-out pair (:func:`heldout_log_probs`: comparable across methods; NaN if
        none).
      type_accuracy: f32[T], mean of ``accuracy`` over each type's users that have a value
        (NaN: none has). Column t is type id t, i.e. ``UserPairs.type_names[t]`` — the
        population's ``type_names`` order (``dataset.meta.type_names``); with seeds or context
        sizes asked for, those axes lead: f32[S, T] or f32[K + 1, T].
      type_log_likelihood: f32[T], likewise.
      type_id: i32[U], each user's type.
    """

    accuracy: jax.Array
    log_likelihood: jax.Array
    type_accuracy: jax.Array
    type_log_likelihood: jax.Array
    type_id: jax.Array


def heldout_logits(
    model: RewardModel,
    params: Params,
    context: UserPairs,
    heldout: UserPairs,
    users_per_chunk: int | None = 256,
) -> jax.Array:
    """f32[U, M]: each user's held-out logits of ``P(a ≻ b)`` given their context (jittable).

    Users are processed ``users_per_chunk`` at a time (None: all at once) to bound memory.
    """

    def one_user(u):
        return model.predict(params, context.batch(u[None]), heldout.batch(u[None]))[0]

    return jax.lax.map(one_user, jnp.arange(context.num_users), batch_size=users_per_chunk)


#: Samples of q(z | context) in the Monte-Carlo posterior predictive of a latent model.
PREDICTIVE_SAMPLES = 64
#: Users per chunk of that predictive: each user's pairs are scored under every sample at once,
#: so a chunk holds PREDICTIVE_SAMPLES times the activations of a plug-in chunk (256 users of
#: highway with M = 64 needed 30 GB; 16 need 2 GB).
PREDICTIVE_USERS_PER_CHUNK = 16


def heldout_log_probs(
    model: RewardModel,
    params: Params,
    context: UserPairs,
    heldout: UserPairs,
    users_per_chunk: int | None = 256,
    logits: jax.Array | None = None,
) -> jax.Array:
    """f32[U, M]: each held-out answer's posterior-predictive log-probability given the user's
    context, ``log p(y | context) = log E_{z ~ q(z | context)} p(y | z)``, the same quantity for
    every model so that log-likelihoods compare across methods:

    * LinearBayes: its probit-approximated predictive (``predict``);
    * other latent models (VPL): a Monte-Carlo estimate over :data:`PREDICTIVE_SAMPLES` samples
      of q(z | context), with a fixed key per user (evaluation stays deterministic) — not the
      plug-in ``p(y | E[z])``, which ignores the posterior's spread;
    * models without a user latent: ``p(y)`` (an ensemble's is its members' mean).

    For those last two the predictive is the model's own prediction: ``logits`` (f32[U, M], from
    :func:`heldout_logits`), if given, are used instead of computing it again. The Monte-Carlo
    predictive takes at most :data:`PREDICTIVE_USERS_PER_CHUNK` users at a time (its memory
    grows with the samples).
    """
    if not is_latent(model) or hasattr(model, "predictive_logits"):
        if logits is None:
            logits = heldout_logits(model, params, context, heldout, users_per_chunk)
        return -bradley_terry_nll(logits, heldout.labels)

    def one_user(u):
        ctx, targets = context.batch(u[None]), heldout.batch(u[None])
        q = model.posterior(params, ctx)
        key = jax.random.fold_in(jax.random.PRNGKey(0), u)
        z = q.sample(seed=key, sample_shape=(PREDICTIVE_SAMPLES,))  # [N, 1, Z]
        logits = jax.vmap(lambda zi: model.pair_logits(params, targets, zi))(z)  # [N, 1, M]
        log_p = -bradley_terry_nll(logits, targets.labels[None])
        return (jax.nn.logsumexp(log_p, axis=0) - jnp.log(PREDICTIVE_SAMPLES))[0]

    chunk = PREDICTIVE_USERS_PER_CHUNK
    chunk = chunk if users_per_chunk is None else min(chunk, users_per_chunk)
    return jax.lax.map(one_user, jnp.arange(context.num_users), batch_size=chunk)


def _per_type(values: jax.Array, type_id: jax.Array, num_types: int) -> jax.Array:
    one_hot = jax.nn.one_hot(type_id, num_types) * ~jnp.isnan(values)[:, None]
    total = jnp.sum(one_hot * jnp.nan_to_num(values)[:, None], axis=0)
    count = jnp.sum(one_hot, axis=0)
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


def evaluation_metrics(
    model: RewardModel,
    params: Params,
    context: UserPairs,
    heldout: UserPairs,
    num_types: int | None = None,
) -> Evaluation:
    """The :class:`Evaluation` of one set of params (pure and jittable; see :func:`evaluate`).

    ``num_types`` (static) defaults to the number of ``heldout.type_names``.
    """
    logits = heldout_logits(model, params, context, heldout)
    labels, mask = heldout.labels, heldout.mask
    accuracy = strict_accuracy(logits, labels, mask, axis=-1, empty=jnp.nan)
    num_labelled = jnp.sum(mask, axis=-1)
    log_p = heldout_log_probs(model, params, context, heldout, logits=logits)
    log_lik = jnp.where(num_labelled > 0, masked_mean(log_p, mask, axis=-1), jnp.nan)
    num_types = len(heldout.type_names) if num_types is None else num_types
    return Evaluation(
        accuracy=accuracy,
        log_likelihood=log_lik,
        type_accuracy=_per_type(accuracy, heldout.type_id, num_types),
        type_log_likelihood=_per_type(log_lik, heldout.type_id, num_types),
        type_id=heldout.type_id,
    )


def _num_types(data: UserPairs) -> int:
    return max(len(data.type_names), int(np.max(np.asarray(data.type_id), initial=0)) + 1)


@functools.partial(jax.jit, static_argnames=("model", "seeds", "num_types"))
def _evaluate(model, params, context, heldout, seeds, num_types):
    def metrics(p):
        return evaluation_metrics(model, p, context, heldout, num_types)

    return jax.vmap(metrics)(params) if seeds else metrics(params)


def check_params_fit(model: RewardModel, params: Params, data: UserPairs) -> None:
    """Raises ``ValueError`` unless ``params`` have the structure and shapes that ``model``
    initialises on ``data`` (params of another size, or of another model, would otherwise fail
    deep inside flax). Abstract: nothing is computed."""
    users = jnp.arange(min(2, data.num_users))
    expected = jax.eval_shape(lambda k: model.init(k, data.batch(users)), jax.random.PRNGKey(0))
    got_paths = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    want_paths = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    name = type(model).__name__
    if set(got_paths) != set(want_paths):
        missing = sorted(jax.tree_util.keystr(p) for p in set(want_paths) - set(got_paths))
        extra = sorted(jax.tree_util.keystr(p) for p in set(got_paths) - set(want_paths))
        raise ValueError(
            f"params do not belong to this {name}: missing {missing[:4]}, unexpected "
            f"{extra[:4]} (params of another model or configuration?)"
        )
    for path, want in want_paths.items():
        got = np.shape(got_paths[path])
        if tuple(got) != tuple(want.shape):
            raise ValueError(
                f"params{jax.tree_util.keystr(path)} has shape {tuple(got)} but this {name} "
                f"expects {tuple(want.shape)} on these inputs (D={data.bank.input_dim}); params "
                "of another size (hidden widths, latent_dim) or trained on other data?"
            )


def check_evaluation_inputs(
    model: RewardModel, params: Params, context: UserPairs, heldout: UserPairs, seeds: bool
) -> None:
    """Raises ``ValueError`` naming the malformed or mismatched field (before compiling)."""
    check_user_pairs(context, "context", model.inputs)
    check_user_pairs(heldout, "heldout", model.inputs)
    check_same_inputs(context, heldout, "context", "heldout")
    if context.num_users != heldout.num_users or not np.array_equal(
        np.asarray(context.type_id), np.asarray(heldout.type_id)
    ):
        raise ValueError(
            f"context ({context.num_users} users) and heldout ({heldout.num_users} users) must "
            "hold the same users in the same order"
        )
    one = jax.tree.map(lambda x: x[0], params) if seeds else params
    check_params_fit(model, one, context)
    try:
        jax.eval_shape(lambda p, c, h: heldout_logits(model, p, c, h), one, context, heldout)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"context/heldout inputs (D={context.bank.input_dim} per step, H="
            f"{context.bank.horizon}) do not fit the params of this {type(model).__name__} "
            f"(trained on data of another shape?): {e}"
        ) from e


def evaluate(
    model: RewardModel,
    params: Params,
    context: UserPairs,
    heldout: UserPairs,
    *,
    seeds: bool = False,
) -> Evaluation:
    """Held-out accuracy and log-likelihood per user and per user type.

    Args:
      model, params: a trained model (``params`` with a leading seed axis S if ``seeds``; the
        result then leads with S too).
      context: the users' K context pairs. heldout: the same users' M held-out pairs.
    """
    check_evaluation_inputs(model, params, context, heldout, seeds)
    num_types = _num_types(heldout)
    return _evaluate(model, params, untyped(context), untyped(heldout), seeds, num_types)


def context_size_curve(
    model: RewardModel,
    params: Params,
    context: UserPairs,
    heldout: UserPairs,
    sizes=None,
) -> Evaluation:
    """:class:`Evaluation` with a leading axis over context sizes ``sizes`` (default 0..K): each
    user's first k context pairs only. k = 0 is the prior's prediction."""
    check_evaluation_inputs(model, params, context, heldout, seeds=False)
    sizes = jnp.arange(context.num_pairs + 1) if sizes is None else jnp.asarray(sizes)
    return _context_size_curve(model, params, context, heldout, sizes, _num_types(heldout))


@functools.partial(jax.jit, static_argnames=("model", "num_types"))
def _context_size_curve(model, params, context, heldout, sizes, num_types):
    def at_size(k):
        return evaluation_metrics(model, params, context.with_context_size(k), heldout, num_types)

    return jax.lax.map(at_size, sizes)


# --- the latent space ---------------------------------------------------------------------------
def posterior_moments(
    model: RewardModel, params: Params, context: UserPairs
) -> tuple[jax.Array, jax.Array]:
    """``(mean, variance): f32[U, Z]`` of each user's posterior given their context."""
    if not is_latent(model):
        raise ValueError(f"{type(model).__name__} has no user latent (no posterior)")
    check_user_pairs(context, "context", model.inputs)
    return _posterior_moments(model, params, context)


@functools.partial(jax.jit, static_argnames=("model",))
def _posterior_moments(model, params, context):
    q = model.posterior(params, context.batch())
    return q.mean(), q.variance()


@struct.dataclass
class LatentProjection:
    """2-D PCA projection of users' posterior means (the data of the latent-space figure).

    Attributes:
      coords: f32[U, 2], each user's projected posterior mean.
      type_id: i32[U], each user's type (colour the points by it).
      explained_variance_ratio: f32[2], share of the means' variance along each axis.
      components: f32[2, Z], the projection axes; center: f32[Z], the means' average.
    """

    coords: jax.Array
    type_id: jax.Array
    explained_variance_ratio: jax.Array
    components: jax.Array
    center: jax.Array


def pca_2d(points: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(coords f32[N, 2], ratio f32[2], components f32[2, Z], center f32[Z])`` of
    ``points: f32[N, Z]`` (axes padded with zeros when Z < 2)."""
    center = jnp.mean(points, axis=0)
    centered = points - center
    _, s, vt = jnp.linalg.svd(centered, full_matrices=False)
    pad = max(0, 2 - vt.shape[0])
    components = jnp.pad(vt[:2], ((0, pad), (0, 0)))
    var = jnp.pad(jnp.square(s[:2]), (0, pad))
    ratio = var / jnp.maximum(jnp.sum(jnp.square(s)), 1e-12)
    return centered @ components.T, ratio, components, center


def latent_projection(model: RewardModel, params: Params, context: UserPairs) -> LatentProjection:
    """PCA of the users' posterior means given their context pairs."""
    mean, _ = posterior_moments(model, params, context)
    coords, ratio, components, center = pca_2d(mean)
    return LatentProjection(coords, context.type_id, ratio, components, center)


def theta_alignment(
    model: RewardModel, params: Params, context: UserPairs, true_theta: jax.Array
) -> jax.Array:
    """f32[U]: cosine similarity between each user's posterior mean and ``true_theta: f32[U, F]``
    (LinearBayes, whose latent is theta)."""
    mean, _ = posterior_moments(model, params, context)
    if mean.shape != true_theta.shape:
        raise ValueError(
            f"true_theta has shape {true_theta.shape} but the posterior means have {mean.shape}"
        )
    return cosine(mean, true_theta)


def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """f32[...]: cosine similarity of ``a`` and ``b`` along their last axis (0 if either is 0)."""
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, 1e-12)


@struct.dataclass
class LatentSeparation:
    """How far apart a model puts the user types in its latent space (the posterior means).

    A type whose users sit on another type's centre gets that type's reward: these numbers say
    whether a minority has a latent of its own or is absorbed into a larger type. Type axes are
    type ids (``type_names`` order); a type with no user has NaN everywhere.

    Attributes:
      centres: f32[T, Z], the mean of each type's users' posterior means.
      spread: f32[T], root-mean-square distance of a type's users to its centre.
      centre_distance: f32[T, T], distances between the centres.
      nearest: f32[T], distance from a type's centre to the nearest other type's centre.
      recovery: f32[T], share of a type's users whose nearest centre is their own type's.
    """

    centres: jax.Array
    spread: jax.Array
    centre_distance: jax.Array
    nearest: jax.Array
    recovery: jax.Array


def type_separation(points: jax.Array, type_id: jax.Array, num_types: int) -> LatentSeparation:
    """:class:`LatentSeparation` of ``points: f32[U, Z]`` (e.g. posterior means) grouped by
    ``type_id: i32[U]`` into ``num_types`` types (pure and jittable; ``num_types`` static)."""
    one_hot = jax.nn.one_hot(type_id, num_types)  # [U, T]
    count = jnp.sum(one_hot, axis=0)  # [T]
    present = count > 0
    centres = (one_hot.T @ points) / jnp.maximum(count, 1.0)[:, None]
    centres = jnp.where(present[:, None], centres, jnp.nan)
    own = centres[type_id]  # [U, Z]
    sq = jnp.sum(jnp.square(points - own), axis=-1)
    spread = jnp.sqrt(jnp.sum(one_hot * sq[:, None], axis=0) / jnp.maximum(count, 1.0))
    spread = jnp.where(present, spread, jnp.nan)
    diff = centres[:, None, :] - centres[None, :, :]
    centre_distance = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))
    others = jnp.where(jnp.eye(num_types, dtype=bool), jnp.inf, centre_distance)
    nearest = jnp.min(jnp.where(jnp.isnan(others), jnp.inf, others), axis=-1)
    nearest = jnp.where(present & jnp.isfinite(nearest), nearest, jnp.nan)
    to_centres = jnp.sum(jnp.square(points[:, None, :] - centres[None]), axis=-1)  # [U, T]
    closest = jnp.argmin(jnp.where(present[None], to_centres, jnp.inf), axis=-1)
    hit = (closest == type_id).astype(jnp.float32)
    recovery = jnp.where(present, (one_hot.T @ hit) / jnp.maximum(count, 1.0), jnp.nan)
    return LatentSeparation(centres, spread, centre_distance, nearest, recovery)


def latent_separation(
    model: RewardModel, params: Params, context: UserPairs, *, seeds: bool = False
) -> LatentSeparation:
    """:class:`LatentSeparation` of the users' posterior means given their context pairs
    (``params`` with a leading seed axis if ``seeds``; every field then leads with S)."""
    if not is_latent(model):
        raise ValueError(f"{type(model).__name__} has no user latent (no posterior)")
    check_user_pairs(context, "context", model.inputs)
    return _latent_separation(model, params, untyped(context), seeds, _num_types(context))


@functools.partial(jax.jit, static_argnames=("model", "seeds", "num_types"))
def _latent_separation(model, params, context, seeds, num_types):
    def one(p):
        mean = model.posterior(p, context.batch()).mean()
        return type_separation(mean, context.type_id, num_types)

    return jax.vmap(one)(params) if seeds else one(params)
