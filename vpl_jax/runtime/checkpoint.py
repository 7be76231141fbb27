"""Checkpoints and resume for long, chunked training runs (orbax).

A trainer exposes ``init() -> state`` and a jitted ``chunk(state, n) -> (state, metrics)`` that
runs ``n`` updates (metrics with a leading axis ``n``). :func:`run_chunked` drives it: it advances
a progress bar between chunks, saves the state and the metrics history every ``every`` updates,
and — when the checkpoint folder already holds a checkpoint of the same run — resumes from the
latest one. Because the state carries its PRNG keys and chunk boundaries are the same, a resumed
run ends with exactly the metrics of an uninterrupted one.

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact. A checkpoint written by a different config, or one
that cannot be read, raises :class:`CheckpointError`; a run never silently starts over. When the
newest step is damaged but an older one is intact, the run resumes from that one and warns.

On several processes (``jax.distributed``) every process calls :meth:`Checkpointer.save` and
:meth:`~Checkpointer.restore` at the same points; only process 0 touches the folder. A save
gathers the state whole onto process 0 (:func:`vpl_jax.runtime.sharding.whole`), which writes it;
a restore is read by process 0 and broadcast to the others, each placing it as its template is
placed. A checkpoint therefore holds whole arrays and resumes on any layout of devices and
processes.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vpl_jax.runtime import sharding
from vpl_jax.runtime.progress import chunks, progress

State = Any


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt or belongs to a different run configuration."""


class _Unreadable(CheckpointError):
    """One saved step cannot be restored (damaged, or of another state); an older may be."""


def fingerprint(config: Any) -> str:
    """A short hash of a JSON-able description of what produced a run."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpointer:
    """Saves and restores ``(state, step, history)`` under ``directory``.

    Args:
      directory: folder of this training's checkpoints (one sub-folder per saved step).
      config: JSON-able description of the run (its config); a checkpoint written under a
        different description is refused on restore.
      every: save after every ``every`` updates (and at the end).
      keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | Path, config: Any, every: int, keep: int = 2):
        if every < 1:
            raise ValueError(f"checkpoint interval must be >= 1 update, got {every}")
        self.directory = Path(directory).absolute()
        self.every = every
        self.fingerprint = fingerprint(config)
        self._manager = None  # processes other than 0 never touch the folder
        if sharding.is_writer():
            alone = {}
            if jax.process_count() > 1:  # process 0 saves alone: no barrier with the others
                alone["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                    primary_host=0, active_processes={0}
                )
                self.directory.mkdir(parents=True, exist_ok=True)  # orbax's create=True refuses
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep,
                    create=not alone,
                    enable_async_checkpointing=False,
                    **alone,
                ),
            )

    def due(self, step: int, total: int) -> bool:
        return step % self.every == 0 or step == total

    def save(self, step: int, state: State, history: Any) -> None:
        state = _to_savable(sharding.whole(state))  # every process takes part; process 0 writes
        if jax.process_count() > 1:
            state = _host_leaves(state)  # orbax saves no process-local jax.Array
        if self._manager is None:
            return
        meta = {"fingerprint": self.fingerprint, "step": int(step)}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                history=ocp.args.StandardSave(history),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(
        self, template: State, history_template: Callable[[int], Any] | None = None
    ) -> tuple[State, int, Any] | None:
        """The latest ``(state, step, history)``, or None when there is no checkpoint yet.

        ``template`` is a state of the right structure (e.g. the initial one);
        ``history_template(step)`` gives the history's abstract structure after ``step`` updates
        (without it the history comes back as saved, with lists for tuples; several processes
        need it).
        """
        if jax.process_count() == 1:
            found = self._restore(_to_savable(template), history_template)
            return None if found is None else (_from_savable(found[0], template), *found[1:])
        if history_template is None:
            raise ValueError("restoring on several processes needs the history's structure")
        local = sharding.whole(template)
        saved = _host_leaves(_to_savable(local))  # read as saved: host arrays

        def history_zeros(step: int):
            return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), history_template(step))

        found = None if self._manager is None else self._restore(saved, history_zeros)
        step = -1 if found is None else found[1]
        step = int(multihost_utils.broadcast_one_to_all(np.int64(step)))
        if step < 0:
            return None
        # Process 0 sends what it read; the others send zeros of its shapes (ignored).
        sent = (saved, history_zeros(step)) if found is None else (found[0], found[2])
        saved, history = multihost_utils.broadcast_one_to_all(sent)
        saved = jax.tree.unflatten(jax.tree.structure(_to_savable(local)), saved)
        state = sharding.place_like(_from_savable(saved, local), template)
        return state, step, history

    def _restore(self, saved, history_template):
        """The latest readable ``(state, step, history)`` with the state as saved (like
        ``saved``, a :func:`_to_savable` template: host arrays are read as host arrays)."""
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return None
        failures, damaged = [], []
        for step in steps:
            try:
                state, saved_step, history = self._restore_step(step, saved, history_template)
            except _Unreadable as e:  # fall back to the newest intact step
                failures.append(str(e))
                damaged.append(step)
                continue
            if failures:
                for bad in damaged:  # the resumed run writes these steps again
                    self._manager.delete(bad)
                warnings.warn(
                    f"resumed from checkpoint step {saved_step}, the newest intact one "
                    f"(deleted the damaged steps {damaged}): " + "; ".join(failures),
                    stacklevel=2,
                )
            return state, saved_step, history
        raise CheckpointError(failures[0])

    def _restore_step(self, step, saved, history_template):
        where = self.directory / str(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta.meta
        except Exception as e:  # orbax raises many types for unreadable files
            raise _Unreadable(
                f"checkpoint {where} cannot be read ({type(e).__name__}: {e}); "
                "delete the folder to start over"
            ) from e
        if meta.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"checkpoint {where} was written by a different configuration; use another "
                "--run-name, or delete the folder to start over"
            )
        abstract = jax.tree.map(
            lambda x: x if isinstance(x, np.ndarray) else ocp.utils.to_shape_dtype_struct(x), saved
        )
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    history=ocp.args.StandardRestore(
                        None if history_template is None else history_template(int(meta["step"]))
                    ),
                ),
            )
        except Exception as e:
            raise _Unreadable(
                f"checkpoint {where} does not match this run's state or is damaged "
                f"({type(e).__name__}: {e}); delete the folder to start over"
            ) from e
        return restored.state, int(meta["step"]), restored.history


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_empty(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and 0 in tuple(x.shape)


def _to_savable(state: State) -> State:
    """Typed PRNG keys are stored as their raw data; zero-size arrays (which orbax refuses,
    e.g. PPO's ``hook_state`` without a hook or BTL's empty latent) as one placeholder element:
    they hold no data, and restore as the template's own empty array."""

    def savable(x):
        if _is_key(x):
            x = jax.random.key_data(x)
        if _is_empty(x):
            return np.zeros((1,), x.dtype)
        return x

    return jax.tree.map(savable, state)


def _host_leaves(state: State) -> list[np.ndarray]:
    """The state's leaves as host arrays, in a flat list: some pytree nodes (Brax's ``UInt64``)
    turn their fields back into device arrays when rebuilt."""
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _from_savable(saved: State, template: State) -> State:
    def back(x, t):
        if _is_empty(t):
            return t
        if _is_key(t):
            return jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        return x

    return jax.tree.map(back, saved, template)


def _concat(history: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *history)


def run_chunked(
    init: Callable[[], State],
    chunk: Callable[[State, int], tuple[State, Any]],
    total: int,
    chunk_size: int,
    checkpointer: Checkpointer | None = None,
    desc: str = "train",
) -> tuple[State, Any]:
    """Runs ``total`` updates in chunks of ``chunk_size``; returns ``(state, history)``.

    ``history`` is the metrics of every update, concatenated on the host (leading axis
    ``total``). With a ``checkpointer``, resumes from its latest checkpoint and saves as it goes.
    """
    if total < 1 or chunk_size < 1:
        raise ValueError(f"total ({total}) and chunk_size ({chunk_size}) must be >= 1")
    if checkpointer is not None and checkpointer.every % chunk_size:
        raise ValueError(
            f"checkpoint interval ({checkpointer.every}) must be a multiple of the chunk size "
            f"({chunk_size}) so that resumed runs use the same chunk boundaries"
        )
    state = init()
    done, history = 0, []
    if checkpointer is not None:

        def history_template(step: int):
            # The metrics' structure, from an abstract trace of one chunk (nothing runs).
            one = jax.eval_shape(lambda s: chunk(s, chunk_size)[1], state)
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct((step, *x.shape[1:]), x.dtype), one)

        restored = checkpointer.restore(state, history_template)
        if restored is not None:
            state, done, saved_history = restored
            history = [saved_history]
    with progress(total, desc, unit="upd") as bar:
        bar.update(done)
        for n in chunks(total - done, chunk_size):
            state, metrics = chunk(state, n)
            history.append(jax.device_get(metrics))
            done += n
            bar.update(n)
            if checkpointer is not None and checkpointer.due(done, total):
                checkpointer.save(done, state, _concat(history))
    return state, _concat(history)
