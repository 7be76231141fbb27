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
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from vpl_jax.rewards.base import Params, RewardModel
from vpl_jax.rewards.batch import UserPairs, check_same_inputs, check_user_pairs


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
        params — ``"nll"`` (held-out negative log-likelihood per pair; every model reports it)
        or ``"loss"``, or any other metric the model's loss returns.
    """

    num_epochs: int = 100
    users_per_batch: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    patience: int | None = None
    min_delta: float = 0.0
    monitor: str = "nll"

    def validate(self) -> TrainConfig:
        """Raises ``ValueError`` naming the first bad field and the allowed values."""
        checks = [
            ("num_epochs", isinstance(self.num_epochs, int) and self.num_epochs >= 1, "int >= 1"),
            (
                "users_per_batch",
                isinstance(self.users_per_batch, int) and self.users_per_batch >= 1,
                "int >= 1",
            ),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "> 0 or None"),
            (
                "patience",
                self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                "int >= 1 or None",
            ),
            ("min_delta", self.min_delta >= 0, ">= 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"train config field {name}={getattr(self, name)!r}: must be {allowed}"
                )
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
    """Validation metrics, in chunks of ``batch_size`` users (padding masked), averaged with
    weights = labelled pairs per chunk (so per-pair means are exact)."""
    num_chunks = math.ceil(data.num_users / batch_size)
    index = jnp.arange(num_chunks * batch_size).reshape(num_chunks, batch_size)

    def chunk(args):
        users, k = args
        batch = data.batch(users % data.num_users)
        batch = batch.replace(mask=batch.mask & (users < data.num_users)[:, None])
        _, metrics = model.loss(params, batch, k, step)
        return metrics, jnp.sum(batch.mask).astype(jnp.float32)

    metrics, weight = jax.lax.map(chunk, (index, jax.random.split(key, num_chunks)))
    total = jnp.maximum(jnp.sum(weight), 1.0)
    return jax.tree.map(lambda m: jnp.sum(m * weight) / total, metrics)


def train_run(
    model: RewardModel,
    config: TrainConfig,
    key: jax.Array,
    train: UserPairs,
    valid: UserPairs | None = None,
) -> tuple[Params, History]:
    """The whole training run as a pure function (see the module docstring).

    Args:
      model: any reward model (static).
      config: the training configuration (static).
      key: PRNG key; the only source of randomness (init, minibatch order, the model's sampling).
      train: the training users' pairs.
      valid: validation users' pairs, for early stopping and choosing the returned params.

    Returns:
      ``(params, history)``: the params of ``history.best_epoch`` and a :class:`History`.
    """
    num_users = train.num_users
    batch_size = min(config.users_per_batch, num_users)
    num_batches = num_users // batch_size
    tx = config.optimizer()
    k_perm, k_init, k_valid, k_epochs = jax.random.split(key, 4)
    params = model.init(k_init, train.batch(jax.random.permutation(k_perm, num_users)[:batch_size]))
    opt_state = tx.init(params)
    # Validation is scored as at the end of training (e.g. VPL's KL weight fully annealed), so
    # values are comparable across epochs; its key is fixed so the only change is the params.
    final_step = jnp.asarray(config.num_epochs * num_batches, jnp.int32)

    def update(carry, xs):
        params, opt_state, step, updating = carry
        users, k = xs
        grad_fn = jax.value_and_grad(model.loss, has_aux=True)
        (_, metrics), grads = grad_fn(params, train.batch(users), k, step)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        params, opt_state = _where(updating, (new_params, new_opt_state), (params, opt_state))
        return (params, opt_state, step + updating.astype(jnp.int32), updating), metrics

    def epoch(carry, xs):
        params, opt_state, step, updating, best = carry
        k, index = xs
        k_order, k_steps = jax.random.split(k)
        order = jax.random.permutation(k_order, num_users)[: num_batches * batch_size]
        (params, opt_state, step, _), metrics = jax.lax.scan(
            update,
            (params, opt_state, step, updating),
            (order.reshape(num_batches, batch_size), jax.random.split(k_steps, num_batches)),
        )
        train_metrics = jax.tree.map(jnp.mean, metrics)
        if valid is None:
            return (params, opt_state, step, updating, best), (train_metrics, {}, updating)
        valid_metrics = _validation_metrics(
            model, valid, params, k_valid, final_step, min(batch_size, valid.num_users)
        )
        value = valid_metrics[config.monitor]
        best_params, best_value, best_epoch, since = best
        improved = updating & (value < best_value - config.min_delta)
        best = (
            _where(improved, params, best_params),
            jnp.where(improved, value, best_value),
            jnp.where(improved, index, best_epoch),
            jnp.where(improved, 0, since + 1),
        )
        record = (train_metrics, valid_metrics, updating)
        if config.patience is not None:
            updating = updating & (best[3] < config.patience)
        return (params, opt_state, step, updating, best), record

    best = (params, jnp.asarray(jnp.inf), jnp.asarray(0), jnp.asarray(0))
    carry = (params, opt_state, jnp.asarray(0, jnp.int32), jnp.asarray(True), best)
    epochs = (jax.random.split(k_epochs, config.num_epochs), jnp.arange(config.num_epochs))
    (params, _, _, _, best), (train_hist, valid_hist, updating) = jax.lax.scan(epoch, carry, epochs)
    if valid is None:
        best_epoch = jnp.asarray(config.num_epochs - 1)
    else:
        params, best_epoch = best[0], best[2]
    return params, History(
        train=train_hist, valid=valid_hist, updating=updating, best_epoch=best_epoch
    )


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
            f"train config field patience={config.patience} needs validation data (valid=...); "
            "use patience=None to train without early stopping"
        )
    users = jnp.arange(min(config.users_per_batch, train.num_users))

    def metric_names(key, data):
        batch = data.batch(users)
        params = model.init(key, batch)
        return model.loss(params, batch, key, jnp.asarray(0))[1]

    names = jax.eval_shape(metric_names, jax.random.PRNGKey(0), train)
    if valid is not None and config.monitor not in names:
        raise ValueError(
            f"train config field monitor={config.monitor!r} is not a metric of "
            f"{type(model).__name__}; allowed: {sorted(names)}"
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
    return _fit(model, config, key, train, valid, seeds=is_key_batch(key))
