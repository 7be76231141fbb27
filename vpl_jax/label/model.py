"""A trained reward model for the labelling app: saved to a folder, loaded against a dataset.

Experiment runs (``experiments/underspecification.py``, ``reward_accuracy.py``) do not keep their
trained reward params or their dataset — only metrics, figures and, optionally, orbax checkpoints
of the trainer's state mid-run — so the app loads a dataset file (:func:`~vpl_jax.data.
save_dataset`) and, optionally, a model saved here::

    params, _ = rewards.fit(model, config, key, user_pairs(fit_users), user_pairs(valid))
    save_model("models/nav_vpl", model, params)           # one seed's params (no seed axis)
    # python -m vpl_jax.label --dataset nav.npz --model models/nav_vpl

A model folder holds ``model.json`` (the model's class and its dataclass fields) and
``params.msgpack`` (flax's serialisation of the params). Loading rebuilds the model, initialises
params of the right structure on the dataset's segments and restores the saved values into them,
so a model saved for another task (other input sizes) is refused with a clear message.
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
from vpl_jax.rewards import VPL, LinearBayes, user_pairs
from vpl_jax.rewards.base import Params

#: The model classes a folder may hold, by the name ``model.json`` records: those with a belief
#: about one person (what query selection and the person's latent need).
MODEL_CLASSES = {"VPL": VPL, "LinearBayes": LinearBayes}


class ModelFileError(ValueError):
    """A model folder is missing, malformed, or does not fit the dataset."""


def save_model(folder: str | Path, model: VPL | LinearBayes, params: Params) -> Path:
    """Writes ``model`` and its trained ``params`` (one seed: no leading seed axis) to
    ``folder`` (created; both files written atomically). Returns the folder."""
    name = type(model).__name__
    if MODEL_CLASSES.get(name) is not type(model):
        raise ModelFileError(f"save_model supports {sorted(MODEL_CLASSES)}, got {name}")
    folder = Path(folder)
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    with atomic_write(folder / "model.json") as f:
        json.dump({"class": name, "fields": fields}, f, indent=1)
    with atomic_write(folder / "params.msgpack", "wb") as f:
        f.write(serialization.to_bytes(jax.device_get(params)))
    return folder


def _model_from_json(description: dict[str, Any]) -> VPL | LinearBayes:
    cls = MODEL_CLASSES.get(description.get("class"))
    if cls is None:
        raise ModelFileError(
            f"model class {description.get('class')!r} is not one of {sorted(MODEL_CLASSES)}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    fields = description.get("fields", {})
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelFileError(f"{cls.__name__} has no fields {unknown}")
    # JSON has no tuples: hidden widths come back as lists.
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return cls(**fields)


def load_model(folder: str | Path, dataset: PreferenceDataset) -> tuple[VPL | LinearBayes, Params]:
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
        restored = serialization.msgpack_restore(data)
        params = serialization.from_state_dict(template, restored)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{folder}: params do not fit a {type(model).__name__}: {e}") from e
    shapes = jax.tree.map(jnp.shape, template), jax.tree.map(jnp.shape, params)
    if shapes[0] != shapes[1]:
        raise ModelFileError(
            f"{folder}: the saved params' shapes do not fit this dataset (a model of another "
            f"task or size?): expected {shapes[0]}, got {shapes[1]}"
        )
    return model, jax.tree.map(jnp.asarray, params)
