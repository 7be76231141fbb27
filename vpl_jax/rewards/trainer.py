"""One trainer for every reward model: the whole run is one pure, jittable, vmappable function.

``train_run(model, config, key, train, valid) -> (params, history)`` is the entire training run:
a ``lax.scan`` over epochs whose body is a ``lax.scan`` over minibatches of users (each user with
all their pairs), followed by a validation pass. Nothing in it is Python control flow on values,
so ``jax.vmap`` over keys trains S seeds in one compiled call (PureJaxRL's ``make_train``
pattern), and ``jax.jit`` compiles the whole run once.

Early stopping is pure as well: the carry tracks the best validation value, the params that
achieved it and the epochs since; once ``patience`` epochs pass without improvement the updates
are masked out (the scan keeps running, the params stop changing) and the best params are
returned. Under ``vmap`` every seed stops on its own.

Entry points:

* :func:`fit` — validates the inputs, then runs one seed (a single key) or S seeds (keys with a
  leading axis S, one ``vmap``) under ``jit``; compiled once per model, config and data shapes.
  Inside :func:`vpl_jax.runtime.sharding.use_devices` the S seeds are split across the devices
  (:func:`~vpl_jax.runtime.sharding.placement`).
* :func:`make_train` — validates the inputs and returns the pure ``train(key)`` for callers that
  compose it themselves (e.g. ``jax.jit(jax.vmap(train))``).
* :func:`train_run` — the pure function itself, with the data as explicit arguments.

Every input is checked before anything is traced (:func:`check_training_inputs`): a malformed
field raises ``ValueError`` naming it and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from vpl_jax.checks import (
    Choice,
    DataWarning,
    Float,
    Int,
    TrainingDivergedError,
    check_config,
    checked,
)
from vpl_jax.rewards.base import Params, RewardModel, is_latent, metric_weights
from vpl_jax.rewards.batch import (
    PairBatch,
    UserPairs,
    check_same_inputs,
    check_user_pairs,
    untyped,
)
from vpl_jax.runtime import sharding

#: Validation metrics early stopping may monitor: minimised, and reported by every model.
MONITORS = ("nll", "loss")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a reward model is trained.

    Attributes:
      num_epochs: passes over the training users.
      users_per_batch: B, users per minibatch (each with all their pairs); capped at the number
        of training users. An epoch is ``U // B`` minibatches of a fresh permutation (the
        remainder waits for the next epoch), so shapes never change.
      learning_rate: Adam's step size.
      weight_decay: decoupled weight decay (AdamW); input statistics and priors are exempt.
      max_grad_norm: clip the gradient's global norm to this (None: no clipping).
      patience: epochs without validation improvement before updates stop (None: never stop;
        requires validation data otherwise).
      min_delta: the smallest decrease of the monitored value that counts as improvement.
      monitor: validation metric to minimise for early stopping and for choosing the returned
        params — one of :data:`MONITORS`: ``"nll"`` (held-out negative log-likelihood per pair)
        or ``"loss"``, which every model reports and which are minimised (a metric such as
        accuracy, maximised, or one only some models report would pick the wrong params).
      restarts: R, independent runs per seed of a model with a user latent (VPL,
        LinearBayes), from keys split off the seed's key, in the same ``vmap``; the one with the
        best validation value of ``monitor`` is returned (its params and history). 1: one run.
        Needs validation data when R > 1. A latent model can settle in a local optimum that
        merges a small user type into a larger one (every user of that type then gets the larger
        type's reward); restarts are the standard cure for such optima of mixture models. The
        validation likelihood weighs users by their share, though, so it may prefer a run that
        fits a larger type at a smaller one's cost (measured in the README: VPL on driving
        populations; off by default). Costs R times the training compute. Models without a
        user latent (BTL, DPL, ensembles) fit one reward for everyone, have no type to merge,
        and train once.
    """

    num_epochs: int = checked(100, Int(ge=1))
    users_per_batch: int = checked(16, Int(ge=1))
    learning_rate: float = checked(1e-3, Float(gt=0))
    weight_decay: float = checked(0.0, Float(ge=0))
    max_grad_norm: float | None = checked(1.0, Float(gt=0, optional=True))
    patience: int | None = checked(None, Int(ge=1, optional=True))
    min_delta: float = checked(0.0, Float(ge=0))
    monitor: str = checked("nll", Choice(MONITORS))
    restarts: int = checked(1, Int(ge=1))

    def validate(self) -> TrainConfig:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the first bad field and the
        allowed values; returns ``self``."""
        check_config(self)
        return self

    def optimizer(self) -> optax.GradientTransformation:
        """Gradient clipping, then AdamW (Adam when ``weight_decay`` is 0)."""
        clip = [] if self.max_grad_norm is None else [optax.clip_by_global_norm(self.max_grad_norm)]
        adam = optax.adamw(self.learning_rate, weight_decay=self.weight_decay, mask=_decay_mask)
        return optax.chain(*clip, adam)


def _decay_mask(params: Params) -> Params:
    """True for weights that may decay: not input statistics, not prior parameters."""

    def decays(path, _):
        names = {getattr(p, "key", None) for p in path}
        return not names & {"input_norm", "prior"}

    return jax.tree_util.tree_map_with_path(decays, params)


@struct.dataclass
class History:
    """Per-epoch record of a training run (with a leading seed axis S when vmapped).

    Attributes:
      train: metric name -> f32[E], the mean over the epoch's minibatches (before each update).
      valid: metric name -> f32[E], on the validation users after the epoch (empty without
        validation data).
      updating: bool[E], whether the epoch updated the params (False once early stopping froze
        them).
      best_epoch: i32[], the epoch whose params were returned (the last one without validation).
    """

    train: dict[str, jax.Array]
    valid: dict[str, jax.Array]
    updating: jax.Array
    best_epoch: jax.Array


def _where(cond: jax.Array, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def _validation_metrics(model, data: UserPairs, params, key, step, batch_size):
    """Validation metrics, in chunks of ``batch_size`` users (the last chunk padded with users
    that have no labelled pair), each averaged over the chunks with the weights of
    :func:`~vpl_jax.rewards.base.metric_weights` (strict pairs for accuracy, users with a
    labelled pair for per-user metrics, labelled pairs otherwise), so that every metric is the
    exact mean over the validation data whatever the chunk size (given the same draws)."""
    num_chunks = math.ceil(data.num_users / batch_size)
    index = jnp.arange(num_chunks * batch_size).reshape(num_chunks, batch_size)

    def chunk(args):
        users, k = args
        batch = data.batch(users % data.num_users)
        batch = batch.replace(mask=batch.mask & (users < data.num_users)[:, None])
        _, metrics = model.loss(params, batch, k, step)
        return metrics, metric_weights(model, batch, metrics)

    metrics, weights = jax.lax.map(chunk, (index, jax.random.split(key, num_chunks)))
    return jax.tree.map(
        lambda m, w: jnp.sum(m * w) / jnp.maximum(jnp.sum(w), 1.0), metrics, weights
    )


@struct.dataclass
class TrainState:
    """Everything a training run carries from epoch to epoch (a plain pytree).

    ``best`` is ``(params, value, epoch, epochs_since)`` of the best validation value so far.
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array  # i32[]: optimiser steps taken
    updating: jax.Array  # bool[]: False once early stopping froze the params
    best: tuple
    epoch: jax.Array  # i32[]: epochs done
    key: jax.Array  # the run's key (epoch keys are folded from it)
    valid_key: jax.Array  # fixed key of every validation pass


def _sizes(config: TrainConfig, train: UserPairs) -> tuple[int, int]:
    batch_size = min(config.users_per_batch, train.num_users)
    return batch_size, train.num_users // batch_size


def init_state(model: RewardModel, config: TrainConfig, key: jax.Array, train: UserPairs):
    """The state before the first epoch (pure; see :func:`train_run`)."""
    batch_size, _ = _sizes(config, train)
    k_perm, k_init, k_run, k_valid = jax.random.split(key, 4)
    users = jax.random.permutation(k_perm, train.num_users)[:batch_size]
    params = model.init(k_init, train.batch(users))
    best = (params, jnp.asarray(jnp.inf), jnp.asarray(0), jnp.asarray(0))
    return TrainState(
        params=params,
        opt_state=config.optimizer().init(params),
        step=jnp.asarray(0, jnp.int32),
        updating=jnp.asarray(True),
        best=best,
        epoch=jnp.asarray(0, jnp.int32),
        key=k_run,
        valid_key=k_valid,
    )


def optimizer_step(
    model: RewardModel,
    tx: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: PairBatch,
    key: jax.Array,
    step: jax.Array,
) -> tuple[Params, optax.OptState, dict]:
    """One optimiser step on a minibatch: ``(params, opt_state, metrics)`` after it (pure; the
    metrics are the model's, before the update)."""
    grad_fn = jax.value_and_grad(model.loss, has_aux=True)
    (_, metrics), grads = grad_fn(params, batch, key, step)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics


def train_epochs(
    model: RewardModel,
    config: TrainConfig,
    state: TrainState,
    train: UserPairs,
    valid: UserPairs | None,
    num_epochs: int,
) -> tuple[TrainState, tuple[dict, dict, jax.Array]]:
    """Runs ``num_epochs`` (static) more epochs; returns the state and the per-epoch records
    ``(train_metrics, valid_metrics, updating)``, each with a leading axis ``num_epochs``.

    Epoch e's randomness is ``fold_in(key, e)``, so chunks of any size give the same run.
    """
    batch_size, num_batches = _sizes(config, train)
    num_users = train.num_users
    tx = config.optimizer()
    # Validation is scored as at the end of training (e.g. VPL's KL weight fully annealed), so
    # values are comparable across epochs; its key is fixed so the only change is the params.
    final_step = jnp.asarray(config.num_epochs * num_batches, jnp.int32)

    def update(carry, xs):
        params, opt_state, step, updating = carry
        users, k = xs
        new_params, new_opt_state, metrics = optimizer_step(
            model, tx, params, opt_state, train.batch(users), k, step
        )
        params, opt_state = _where(updating, (new_params, new_opt_state), (params, opt_state))
        return (params, opt_state, step + updating.astype(jnp.int32), updating), metrics

    def epoch(state: TrainState, _):
        k_order, k_steps = jax.random.split(jax.random.fold_in(state.key, state.epoch))
        order = jax.random.permutation(k_order, num_users)[: num_batches * batch_size]
        (params, opt_state, step, _), metrics = jax.lax.scan(
            update,
            (state.params, state.opt_state, state.step, state.updating),
            (order.reshape(num_batches, batch_size), jax.random.split(k_steps, num_batches)),
        )
        train_metrics = jax.tree.map(jnp.mean, metrics)
        updating = state.updating
        new = state.replace(params=params, opt_state=opt_state, step=step, epoch=state.epoch + 1)
        if valid is None:
            return new, (train_metrics, {}, updating)
        valid_metrics = _validation_metrics(
            model, valid, params, state.valid_key, final_step, min(batch_size, valid.num_users)
        )
        value = valid_metrics[config.monitor]
        best_params, best_value, best_epoch, since = state.best
        improved = updating & (value < best_value - config.min_delta)
        best = (
            _where(improved, params, best_params),
            jnp.where(improved, value, best_value),
            jnp.where(improved, state.epoch, best_epoch),
            jnp.where(improved, 0, since + 1),
        )
        if config.patience is not None:
            new = new.replace(updating=updating & (best[3] < config.patience))
        return new.replace(best=best), (train_metrics, valid_metrics, updating)

    return jax.lax.scan(epoch, state, None, length=num_epochs)


def finish(
    config: TrainConfig, state: TrainState, records, validated: bool
) -> tuple[Params, History]:
    """``(params, history)`` of a finished run: the best-validation params (the last ones
    without validation data) and the per-epoch records."""
    train_hist, valid_hist, updating = records
    if validated:
        params, best_epoch = state.best[0], state.best[2]
    else:
        params, best_epoch = state.params, jnp.asarray(config.num_epochs - 1)
    return params, History(
        train=train_hist, valid=valid_hist, updating=updating, best_epoch=best_epoch
    )


def num_restarts(model: RewardModel, config: TrainConfig) -> int:
    """Runs per seed: ``config.restarts`` for a model with a user latent, else 1."""
    return config.restarts if is_latent(model) else 1


def restart_keys(runs: int, key: jax.Array) -> jax.Array:
    """The keys of one seed's ``runs`` restarts (``[R, ...]``, split from ``key``)."""
    return jax.random.split(key, runs)


def best_restart(config: TrainConfig, params: Params, history: History) -> tuple[Params, History]:
    """Of R runs (params and history leading with R), the one whose best validation value of
    ``config.monitor`` is lowest (a run whose value is NaN loses to any finite one)."""
    curve = history.valid[config.monitor]  # [R, E]
    value = jnp.take_along_axis(curve, history.best_epoch[:, None], axis=1)[:, 0]
    best = jnp.argmin(jnp.where(jnp.isnan(value), jnp.inf, value))
    return jax.tree.map(lambda x: x[best], (params, history))


def _check_restarts(model: RewardModel, config: TrainConfig, validated: bool) -> None:
    if num_restarts(model, config) > 1 and not validated:
        raise ValueError(
            f"TrainConfig.restarts={config.restarts} needs validation data (valid=...) to "
            "choose among the runs; use restarts=1 without it"
        )


def train_run(
    model: RewardModel,
    config: TrainConfig,
    key: jax.Array,
    train: UserPairs,
    valid: UserPairs | None = None,
) -> tuple[Params, History]:
    """The whole training run as a pure function (see the module docstring); with
    ``config.restarts`` R > 1, R runs in one ``vmap`` and the best on validation
    (:func:`best_restart`).

    Args:
      model: any reward model (static).
      config: the training configuration (static).
      key: PRNG key; the only source of randomness (init, minibatch order, the model's sampling).
      train: the training users' pairs.
      valid: validation users' pairs, for early stopping and choosing the returned params.

    Returns:
      ``(params, history)``: the params of ``history.best_epoch`` and a :class:`History`.
    """
    _check_restarts(model, config, valid is not None)

    def once(k):
        state = init_state(model, config, k, train)
        state, records = train_epochs(model, config, state, train, valid, config.num_epochs)
        return finish(config, state, records, validated=valid is not None)

    runs = num_restarts(model, config)
    if runs == 1:
        return once(key)
    return best_restart(config, *jax.vmap(once)(restart_keys(runs, key)))


# --- validation before compiling, and the entry points -------------------------------------------
def check_training_inputs(
    model: RewardModel, config: TrainConfig, train: UserPairs, valid: UserPairs | None = None
) -> None:
    """Raises ``ValueError`` for a bad config, malformed or mismatched data, or an unknown
    monitored metric. Traces the model abstractly (``eval_shape``); compiles nothing."""
    config.validate()
    check_user_pairs(train, "train", model.inputs)
    if valid is not None:
        check_user_pairs(valid, "valid", model.inputs)
        check_same_inputs(train, valid, "train", "valid")
    elif config.patience is not None:
        raise ValueError(
            f"TrainConfig.patience={config.patience} needs validation data (valid=...); "
            "use patience=None to train without early stopping"
        )
    _check_restarts(model, config, valid is not None)
    check_labelled(train, "train")
    if valid is not None:
        check_labelled(valid, "valid")
    users = jnp.arange(min(config.users_per_batch, train.num_users))

    def metric_names(key, data):
        batch = data.batch(users)
        params = model.init(key, batch)
        return model.loss(params, batch, key, jnp.asarray(0))[1]

    names = jax.eval_shape(metric_names, jax.random.PRNGKey(0), train)
    if valid is not None and config.monitor not in names:
        raise ValueError(
            f"TrainConfig.monitor={config.monitor!r} is not a metric of "
            f"{type(model).__name__}; allowed: {sorted(names)}"
        )


def check_labelled(data: UserPairs, name: str) -> None:
    """Raises ``ValueError`` when ``data`` has no labelled pair at all (every pair skipped or
    masked: the loss would be exactly 0 and nothing would train); warns when every labelled pair
    is an "equal" answer (0.5), which trains but leaves strict accuracy undefined (NaN)."""
    mask = np.asarray(data.mask)
    if not mask.any():
        raise ValueError(
            f"{name} has no labelled pair: all {mask.size} pairs are skipped or masked "
            "(nothing to train on; check the users' skip_threshold, or the data)"
        )
    labels = np.asarray(data.labels)[mask]
    if np.all(labels == 0.5):
        warnings.warn(
            f"{name}: every one of its {labels.size} labelled pairs is an 'equal' answer (0.5); "
            "the model learns only that returns tie, and strict accuracy is undefined (NaN)",
            DataWarning,
            stacklevel=3,
        )


def check_converged(history: History) -> None:
    """Raises :class:`TrainingDivergedError` when a training loss (of any seed, in any epoch)
    is NaN or inf. One host read after training; nothing inside the jitted loop waits for it."""
    loss = np.asarray(history.train["loss"])
    bad = ~np.isfinite(loss)
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    seed = f"seed {where[0]}, " if loss.ndim == 2 else ""
    epoch = where[-1]
    raise TrainingDivergedError(
        f"reward training diverged: the loss is {loss[tuple(where)]} from {seed}epoch {epoch} "
        "on; lower train.learning_rate, set train.max_grad_norm, or check the data"
    )


def make_train(
    model: RewardModel, config: TrainConfig, train: UserPairs, valid: UserPairs | None = None
) -> Callable[[jax.Array], tuple[Params, History]]:
    """Checks the inputs and returns the pure ``train(key) -> (params, history)``.

    ``jax.jit(jax.vmap(make_train(...)))(keys)`` trains many seeds in one compiled call; for
    large datasets prefer :func:`fit`, which passes the data to ``jit`` as arguments instead of
    closing over them.
    """
    check_training_inputs(model, config, train, valid)
    return functools.partial(train_run, model, config, train=train, valid=valid)


@functools.partial(jax.jit, static_argnames=("model", "config", "seeds"))
def _fit(model, config, key, train, valid, seeds: bool):
    if seeds:
        return jax.vmap(lambda k: train_run(model, config, k, train, valid))(key)
    return train_run(model, config, key, train, valid)


def as_raw_keys(key: jax.Array) -> jax.Array:
    """Typed PRNG keys of the default implementation as their raw ``uint32`` data, which draws
    the same streams: training then compiles one program for either kind of key. Raw keys, and
    typed keys of another implementation, pass through unchanged."""
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if jax.random.key_impl(key) != jax.random.key_impl(jax.random.key(0)):
        return key
    return jax.random.key_data(key)


def is_key_batch(key: jax.Array) -> bool:
    """Whether ``key`` holds several PRNG keys (typed keys: rank 1; raw uint32 keys: rank 2)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


def fit(
    model: RewardModel,
    config: TrainConfig,
    key: jax.Array,
    train: UserPairs,
    valid: UserPairs | None = None,
) -> tuple[Params, History]:
    """Trains ``model`` on ``train`` under ``jit``: one seed for a single ``key``, S seeds in one
    ``vmap`` for keys with a leading axis S (params and history then lead with S).

    Raises ``ValueError`` before compiling if an input is malformed (see
    :func:`check_training_inputs`).
    """
    check_training_inputs(model, config, train, valid)
    key = as_raw_keys(key)
    seeds = is_key_batch(key)
    place = seed_placement(key, seeds)
    train, valid = untyped(train), untyped(valid)
    key, (train, valid) = place.split(key), place.replicate((train, valid))
    params, history = place.gather(_fit(model, config, key, train, valid, seeds=seeds))
    check_converged(history)
    return params, history


def seed_placement(key: jax.Array, seeds: bool) -> sharding.Placement:
    """Where S seeds train: split across the devices of an enclosing
    :func:`~vpl_jax.runtime.sharding.use_devices` (one seed stays where it is)."""
    return sharding.placement(key.shape[0]) if seeds else sharding.Placement()


@functools.partial(jax.jit, static_argnames=("model", "config", "seeds"))
def _chunked_init(model, config, key, train, seeds: bool):
    init = lambda k: init_state(model, config, k, train)  # noqa: E731
    return jax.vmap(init)(key) if seeds else init(key)


@functools.partial(jax.jit, static_argnames=("model", "config", "n", "seeds"))
def _chunked_epochs(model, config, state, train, valid, n: int, seeds: bool):
    """``n`` epochs of :func:`fit_chunked` (records lead with the epoch axis, then seeds)."""
    run = lambda s: train_epochs(model, config, s, train, valid, n)  # noqa: E731
    if not seeds:
        return run(state)
    state, records = jax.vmap(run)(state)
    # run_chunked concatenates along the leading axis: put epochs first
    return state, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), records)


def fit_chunked(
    model: RewardModel,
    config: TrainConfig,
    key: jax.Array,
    train: UserPairs,
    valid: UserPairs | None = None,
    *,
    chunk_epochs: int = 10,
    checkpointer=None,
    desc: str = "reward model",
) -> tuple[Params, History]:
    """:func:`fit` in jitted chunks of ``chunk_epochs`` epochs, with a progress bar between
    chunks and, given a :class:`~vpl_jax.runtime.checkpoint.Checkpointer`, checkpoints and
    resume. Gives exactly the result of :func:`fit` (epoch randomness does not depend on the
    chunking)."""
    from vpl_jax.runtime.checkpoint import run_chunked  # lazy: orbax is slow to import

    check_training_inputs(model, config, train, valid)
    key = as_raw_keys(key)
    given_seeds = is_key_batch(key)
    runs = num_restarts(model, config)
    if runs > 1:  # every seed's R runs side by side: [S * R] (or [R]) keys
        split = functools.partial(restart_keys, runs)
        key = jax.vmap(split)(key) if given_seeds else split(key)  # [S, R, ...] or [R, ...]
        key = key.reshape(-1, *key.shape[2 if given_seeds else 1 :])
    seeds = is_key_batch(key)
    vmap = jax.vmap if seeds else (lambda f: f)
    place = seed_placement(key, seeds)
    train, valid = untyped(train), untyped(valid)
    key, (train, valid) = place.split(key), place.replicate((train, valid))

    def chunk(state, n):
        state, records = _chunked_epochs(model, config, state, train, valid, n, seeds)
        return state, place.gather(records)

    # The datasets are arguments of the jitted functions, never constants captured by a closure:
    # one compilation serves every dataset of the same shapes, and no data is baked into the HLO.
    state, records = run_chunked(
        lambda: _chunked_init(model, config, key, train, seeds),
        chunk,
        config.num_epochs,
        chunk_epochs,
        checkpointer,
        desc,
    )
    state = place.gather(state)
    records = jax.tree.map(jnp.asarray, records)
    if seeds:
        records = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), records)
    params, history = vmap(lambda s, r: finish(config, s, r, validated=valid is not None))(
        state, records
    )
    if runs > 1:  # [S * R] -> the best of each seed's R runs
        both = jax.tree.map(lambda x: x.reshape(-1, runs, *x.shape[1:]), (params, history))
        params, history = jax.vmap(functools.partial(best_restart, config))(*both)
        if not given_seeds:
            params, history = jax.tree.map(lambda x: x[0], (params, history))
    check_converged(history)
    return params, history
