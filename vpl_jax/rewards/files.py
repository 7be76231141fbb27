"""A trained reward model on disk: saved to a folder, loaded back against a dataset.

Experiments save the reward models they train (seed 0; seed s >= 1 in ``seed_<s>/``) into their run
folder (:meth:`vpl_jax.harness.RunResults.save_reward_model`), and the labelling app serves them::

    params, _ = rewards.fit(model, config, key, user_pairs(fit_users), user_pairs(valid))
    save_model("models/nav_vpl", model, params)           # one seed's params (no seed axis)
    # python -m vpl_jax.label --dataset nav.npz --model models/nav_vpl

A model folder holds ``model.json`` (the model's class and its dataclass fields; a nested model,
such as an ensemble's member, the same way) and ``params.msgpack`` (flax's serialisation of the
params). Loading rebuilds the model, initialises params of the right structure on the dataset's
segments and restores the saved values into them, so a model saved for another task (other input
sizes) is refused with a clear message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import serialization

from vpl_jax.atomic import atomic_write
from vpl_jax.data.dataset import PreferenceDataset
from vpl_jax.rewards.base import Params, RewardModel
from vpl_jax.rewards.batch import user_pairs
from vpl_jax.rewards.btl import BTL
from vpl_jax.rewards.dpl import DPLCategorical, DPLMeanVariance
from vpl_jax.rewards.ensemble import Ensemble
from vpl_jax.rewards.linear_bayes import LinearBayes
from vpl_jax.rewards.vpl import VPL

#: The model classes a folder may hold, by the name ``model.json`` records.
MODEL_CLASSES = {
    cls.__name__: cls for cls in (BTL, DPLCategorical, DPLMeanVariance, Ensemble, LinearBayes, VPL)
}


class ModelFileError(ValueError):
    """A model folder is missing, malformed, or does not fit the dataset."""


def _describe(model: RewardModel) -> dict[str, Any]:
    name = type(model).__name__
    if MODEL_CLASSES.get(name) is not type(model):
        raise ModelFileError(f"save_model supports {sorted(MODEL_CLASSES)}, got {name}")
    fields = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        fields[f.name] = _describe(value) if dataclasses.is_dataclass(value) else value
    return {"class": name, "fields": fields}


def save_model(folder: str | Path, model: RewardModel, params: Params) -> Path:
    """Writes ``model`` and its trained ``params`` (one seed: no leading seed axis) to
    ``folder`` (created; both files written atomically). Returns the folder."""
    folder = Path(folder)
    description = _describe(model)
    with atomic_write(folder / "model.json") as f:
        json.dump(description, f, indent=1)
    write_params(folder, params)
    return folder


def _model_from_json(description: Any) -> RewardModel:
    name = description.get("class") if isinstance(description, dict) else None
    cls = MODEL_CLASSES.get(name)
    if cls is None:
        raise ModelFileError(f"model class {name!r} is not one of {sorted(MODEL_CLASSES)}")
    known = {f.name for f in dataclasses.fields(cls)}
    fields = description.get("fields", {})
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelFileError(f"{cls.__name__} has no fields {unknown}")

    def value(v):
        if isinstance(v, dict) and "class" in v:
            return _model_from_json(v)
        return tuple(v) if isinstance(v, list) else v  # JSON has no tuples (hidden widths)

    return cls(**{k: value(v) for k, v in fields.items()})


def load_model(folder: str | Path, dataset: PreferenceDataset) -> tuple[RewardModel, Params]:
    """``(model, params)`` saved by :func:`save_model`, checked against ``dataset``'s segments.

    Raises :class:`ModelFileError` when a file is missing or malformed, or the params do not
    have the structure and shapes a model of that kind has on this dataset.
    """
    folder = Path(folder)
    try:
        description = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        data = (folder / "params.msgpack").read_bytes()
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"cannot read the model folder {folder}: {e}") from e
    model = _model_from_json(description)
    batch = user_pairs(dataset, "context", model.inputs).batch(jnp.arange(1))
    template = model.init(jax.random.PRNGKey(0), batch)
    try:
        return model, read_params(data, template)
    except ValueError as e:
        raise ModelFileError(
            f"{folder}: params do not fit a {type(model).__name__} on this dataset (a model of "
            f"another task or size?): {e}"
        ) from e


def write_params(folder: str | Path, params: Params) -> Path:
    """Writes ``params`` (a pytree of arrays) to ``folder/params.msgpack`` (flax's msgpack
    serialisation), atomically; the one format of trained reward models and policies
    (:mod:`vpl_jax.policies.files`). Returns the file."""
    path = Path(folder) / "params.msgpack"
    with atomic_write(path, "wb") as f:
        f.write(serialization.to_bytes(jax.device_get(params)))
    return path


def read_params(data: bytes, template: Any) -> Any:
    """The params in ``data`` (a ``params.msgpack`` file's bytes) as arrays with ``template``'s
    structure (an init, or its ``jax.eval_shape``). Raises ``ValueError`` saying what does not
    fit when the structure or any leaf's shape differs from ``template``'s."""
    try:
        params = serialization.from_state_dict(template, serialization.msgpack_restore(data))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"the saved params do not have the expected structure: {e}") from e
    expected, got = jax.tree.map(jnp.shape, template), jax.tree.map(jnp.shape, params)
    if expected != got:
        raise ValueError(f"the saved params' shapes do not fit: expected {expected}, got {got}")
    return jax.tree.map(jnp.asarray, params)
