"""Labelled segment pairs in the two forms the reward models use, and the checks on them.

* :class:`UserPairs` — U users' labelled pairs as *indices* into a :class:`SegmentBank`. This is
  what the trainer and the evaluation functions hold: a segment that many users were asked about
  is stored once.
* :class:`PairBatch` — the gathered per-step inputs of both segments of every pair, which is what
  a model's ``loss``/``predict``/``posterior`` see. :func:`gather_pairs` builds it on device and is
  jittable, so the trainer gathers each minibatch inside its ``scan``.

A model's per-step input ``x: f32[D]`` is chosen by its ``inputs`` field (:data:`Inputs`):

* ``"transition"`` (the default of the learned models): the observation before the step, the
  action and the observation after it, D = 2 O + A. Every task feature is a function of it
  (``FeatureEnv.features_from_transition``), so ``theta · phi`` is learnable for every user;
* ``"obs"``: the observation after the step, D = O. Not every feature is a function of it
  (highway's jerk and navigation's control effort are not);
* ``"obs_action"``: the observation after the step and the action that led to it, D = O + A;
* ``"features"``: the task's own per-step features, D = F — the *known-features* baseline
  (LinearBayes always reads them; a learned model reading them is told the answer's basis).

:func:`step_inputs` builds it the same way for datasets and for a policy's reward wrapper.

Axes: U users, B users in a minibatch, Q pairs per user (K context, M held-out), S segments in
the bank, H steps per segment, D per-step input size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vpl_jax.data.dataset import stratified_holdout

if TYPE_CHECKING:
    from vpl_jax.data import PreferenceDataset, Queries, Segments

Inputs = Literal["transition", "obs", "obs_action", "features"]
#: What a learned reward model reads unless told otherwise.
DEFAULT_INPUTS: Inputs = "transition"
Part = Literal["all", "context", "heldout"]


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


def step_inputs(
    inputs: Inputs,
    obs: jax.Array | None = None,
    actions: jax.Array | None = None,
    features: jax.Array | None = None,
    prev_obs: jax.Array | None = None,
) -> jax.Array:
    """f32[..., D]: the per-step reward-model input of kind ``inputs``.

    Args:
      inputs: ``"transition"``, ``"obs"``, ``"obs_action"`` or ``"features"``.
      obs: f32[..., O] observation after the step.
      actions: f32[..., A] the action that led to it (``"transition"``, ``"obs_action"``).
      features: f32[..., F] the task's per-step features (``"features"`` only).
      prev_obs: f32[..., O] observation before the step (``"transition"`` only).
    """
    _check_choice("inputs", inputs, get_args(Inputs))
    needed = {
        "transition": ("prev_obs", "actions", "obs"),
        "obs": ("obs",),
        "obs_action": ("obs", "actions"),
        "features": ("features",),
    }
    given = {"obs": obs, "actions": actions, "features": features, "prev_obs": prev_obs}
    missing = [n for n in needed[inputs] if given[n] is None]
    if missing:
        raise ValueError(f"inputs={inputs!r} needs {missing}")
    if inputs == "transition":
        return jnp.concatenate([prev_obs, actions, obs], axis=-1)
    if inputs == "obs":
        return obs
    if inputs == "obs_action":
        return jnp.concatenate([obs, actions], axis=-1)
    return features


@struct.dataclass
class SegmentBank:
    """Per-step model inputs of S segments: ``inputs: f32[S, H, D]``, ``alive: bool[S, H]``."""

    inputs: jax.Array
    alive: jax.Array
    kind: str = struct.field(pytree_node=False, default=DEFAULT_INPUTS)  # an :data:`Inputs` value

    @property
    def num_segments(self) -> int:
        return self.inputs.shape[0]

    @property
    def horizon(self) -> int:
        return self.inputs.shape[1]

    @property
    def input_dim(self) -> int:
        return self.inputs.shape[2]


@struct.dataclass
class PairBatch:
    """Labelled pairs with both segments gathered.

    ``inputs_a, inputs_b: f32[..., Q, H, D]`` per-step inputs, ``alive_a, alive_b: bool[..., Q, H]``
    (dead steps after a termination contribute nothing), ``labels: f32[..., Q]`` (1 = a
    preferred, 0 = b, 0.5 = equal, anything between is a soft target) and ``mask: bool[..., Q]``
    (False: no label — skipped, padding, or left out of a context).
    """

    inputs_a: jax.Array
    inputs_b: jax.Array
    alive_a: jax.Array
    alive_b: jax.Array
    labels: jax.Array
    mask: jax.Array

    @property
    def num_pairs(self) -> int:
        return self.labels.shape[-1]

    @property
    def horizon(self) -> int:
        return self.inputs_a.shape[-2]

    @property
    def input_dim(self) -> int:
        return self.inputs_a.shape[-1]

    def swapped(self) -> PairBatch:
        """The same preferences with a and b exchanged (labels become ``1 - y``)."""
        return self.replace(
            inputs_a=self.inputs_b,
            inputs_b=self.inputs_a,
            alive_a=self.alive_b,
            alive_b=self.alive_a,
            labels=1.0 - self.labels,
        )


@struct.dataclass
class UserPairs:
    """Labelled pairs of U users as indices into a shared :class:`SegmentBank`.

    ``pairs: i32[U, Q, 2]`` segment indices (a, b), ``labels: f32[U, Q]``, ``mask: bool[U, Q]``,
    ``type_id: i32[U]`` each user's type (index into ``type_names``).
    """

    bank: SegmentBank
    pairs: jax.Array
    labels: jax.Array
    mask: jax.Array
    type_id: jax.Array
    type_names: tuple[str, ...] = struct.field(pytree_node=False, default=())

    @property
    def num_users(self) -> int:
        return self.pairs.shape[0]

    @property
    def num_pairs(self) -> int:
        return self.pairs.shape[1]

    def batch(self, users: jax.Array | None = None) -> PairBatch:
        """The :class:`PairBatch` of all users, or of ``users: i32[B]`` (jittable)."""
        if users is None:
            return gather_pairs(self.bank, self.pairs, self.labels, self.mask)
        return gather_pairs(self.bank, self.pairs[users], self.labels[users], self.mask[users])

    def select(self, users) -> UserPairs:
        """The same bank with a subset of users (any index)."""
        return self.replace(
            pairs=self.pairs[users],
            labels=self.labels[users],
            mask=self.mask[users],
            type_id=self.type_id[users],
        )

    def with_context_size(self, k: int | jax.Array) -> UserPairs:
        """Keeps only each user's first ``k`` pairs labelled (the rest masked): the context of
        size k that the first k of K answers give. Jittable in ``k``."""
        keep = jnp.arange(self.num_pairs) < k
        return self.replace(mask=self.mask & keep)


def untyped(data: UserPairs | None) -> UserPairs | None:
    """``data`` without its users' type names, which neither training nor scoring reads (scores
    per type need only their number): the names are static in the pytree, so keeping them
    would compile anew for every population's names, where one compilation serves every
    dataset of the same shapes."""
    return None if data is None else data.replace(type_names=())


def segment_bank(segments: Segments, inputs: Inputs = DEFAULT_INPUTS) -> SegmentBank:
    """The :class:`SegmentBank` of a dataset's segments with per-step inputs of kind ``inputs``."""
    x = step_inputs(
        inputs, segments.obs, segments.actions, segments.features, segments.previous_obs
    )
    return SegmentBank(inputs=jnp.asarray(x, jnp.float32), alive=segments.alive, kind=inputs)


def gather_pairs(
    bank: SegmentBank, pairs: jax.Array, labels: jax.Array, mask: jax.Array
) -> PairBatch:
    """Gathers both segments of each pair from the bank, on device (jittable).

    Args:
      bank: the segment bank.
      pairs: i32[..., Q, 2] indices into the bank.
      labels: f32[..., Q]; mask: bool[..., Q].
    """
    chex.assert_shape(pairs, (*labels.shape, 2))
    chex.assert_equal_shape([labels, mask])
    a, b = pairs[..., 0], pairs[..., 1]
    return PairBatch(
        inputs_a=bank.inputs[a],
        inputs_b=bank.inputs[b],
        alive_a=bank.alive[a],
        alive_b=bank.alive[b],
        labels=labels.astype(jnp.float32),
        mask=mask.astype(bool),
    )


def pair_batch(
    dataset: PreferenceDataset, queries: Queries, inputs: Inputs = DEFAULT_INPUTS
) -> PairBatch:
    """The :class:`PairBatch` of ``queries`` (e.g. ``dataset.context``) over the dataset's
    segments."""
    bank = segment_bank(dataset.segments, inputs)
    return gather_pairs(bank, queries.pairs, queries.labels, queries.mask)


def user_pairs(
    dataset: PreferenceDataset, part: Part = "all", inputs: Inputs = DEFAULT_INPUTS
) -> UserPairs:
    """Every user's labelled pairs of ``dataset`` as :class:`UserPairs`.

    Args:
      dataset: a (possibly user-selected) preference dataset.
      part: ``"context"`` (the K context pairs), ``"heldout"`` (the M held-out pairs) or
        ``"all"`` (both, Q = K + M — what training users are trained on).
      inputs: the per-step input kind of the model that will consume the data.
    """
    _check_choice("part", part, get_args(Part))
    if part == "all":
        queries = jax.tree.map(
            lambda c, h: jnp.concatenate([c, h], axis=1), dataset.context, dataset.heldout
        )
    else:
        queries = dataset.context if part == "context" else dataset.heldout
    return UserPairs(
        bank=segment_bank(dataset.segments, inputs),
        pairs=jnp.asarray(queries.pairs, jnp.int32),
        labels=jnp.asarray(queries.labels, jnp.float32),
        mask=jnp.asarray(queries.mask, bool),
        type_id=jnp.asarray(dataset.users.type_id, jnp.int32),
        type_names=tuple(dataset.meta.type_names),
    )


def validation_split(
    dataset: PreferenceDataset, fraction: float = 0.2
) -> tuple[PreferenceDataset, PreferenceDataset]:
    """Splits a dataset's *training* users into ``(fit_users, validation_users)``.

    The last ``round(fraction * n_t)`` training users of each type (at least one where the type
    has two or more) validate, so early stopping never looks at the test users. Test users are
    dropped from both parts.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction={fraction} must be in (0, 1)")
    train, _ = dataset.split()
    is_valid = stratified_holdout(np.asarray(train.users.type_id), fraction, False)
    if not is_valid.any():
        names = dataset.meta.type_names
        counts = np.bincount(np.asarray(train.users.type_id), minlength=len(names)).tolist()
        raise ValueError(
            "validation_split: no user type has two or more training users (one to fit, one "
            f"to validate; training users per type {dict(zip(names, counts, strict=True))}); "
            "build the dataset with more users (DatasetConfig.num_users; "
            "vpl_jax.data.dataset.check_users_per_type checks it before any data is made)"
        )
    return train.select_users(~is_valid), train.select_users(is_valid)


# --- host-side checks (run before anything is compiled) ------------------------------------------
def check_user_pairs(data: UserPairs, name: str, inputs: str | None = None) -> None:
    """Raises ``ValueError`` naming the field of ``data`` that is malformed.

    Checks: at least one user and one pair per user (K or Q >= 1), consistent shapes, pair
    indices inside the bank, finite inputs, labels in [0, 1], type ids >= 0 (and below the number
    of type names, when named), and (when given) that the bank holds the ``inputs`` kind the
    model consumes. Needs concrete arrays; call it outside ``jit``.
    """
    if not isinstance(data, UserPairs):
        raise ValueError(f"{name} must be UserPairs (see user_pairs()), got {type(data).__name__}")
    bank = data.bank
    if inputs is not None and bank.kind != inputs:
        raise ValueError(
            f"{name}.bank holds inputs of kind {bank.kind!r} but the model consumes "
            f"{inputs!r}; build it with user_pairs(..., inputs={inputs!r})"
        )
    if bank.inputs.ndim != 3:
        raise ValueError(f"{name}.bank.inputs must be f32[S, H, D], got shape {bank.inputs.shape}")
    if bank.alive.shape != bank.inputs.shape[:2]:
        raise ValueError(
            f"{name}.bank.alive has shape {bank.alive.shape}, expected {bank.inputs.shape[:2]}"
        )
    if data.pairs.ndim != 3 or data.pairs.shape[-1] != 2:
        raise ValueError(f"{name}.pairs must be i32[U, Q, 2], got shape {data.pairs.shape}")
    u, q = data.pairs.shape[:2]
    if u < 1:
        raise ValueError(f"{name} has U=0 users; need at least 1")
    if q < 1:
        raise ValueError(f"{name} has 0 pairs per user (K or Q = 0); need at least 1")
    for field in ("labels", "mask"):
        shape = getattr(data, field).shape
        if shape != (u, q):
            raise ValueError(f"{name}.{field} has shape {shape}, expected (U, Q) = {(u, q)}")
    if data.type_id.shape != (u,):
        raise ValueError(f"{name}.type_id has shape {data.type_id.shape}, expected ({u},)")
    pairs = np.asarray(data.pairs)
    if pairs.min() < 0 or pairs.max() >= bank.num_segments:
        raise ValueError(
            f"{name}.pairs index segments outside 0..{bank.num_segments - 1} (the bank's size)"
        )
    x = np.asarray(bank.inputs)
    if not np.all(np.isfinite(x)):
        seg, step, dim = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"{name}.bank.inputs contains NaN or inf (first at segment {seg}, step {step}, "
            f"input {dim}); inputs must be finite"
        )
    labels = np.asarray(data.labels)
    if not np.all(np.isfinite(labels) & (labels >= 0) & (labels <= 1)):
        raise ValueError(
            f"{name}.labels must be finite and in [0, 1] (1 = a preferred, 0 = b, 0.5 = equal)"
        )
    type_id = np.asarray(data.type_id)
    if type_id.min(initial=0) < 0:
        raise ValueError(
            f"{name}.type_id has a negative entry ({type_id.min()}); type ids must be >= 0 "
            "(indices into type_names)"
        )
    if data.type_names and type_id.max(initial=0) >= len(data.type_names):
        raise ValueError(f"{name}.type_id exceeds the number of type names {data.type_names}")


def check_same_inputs(a: UserPairs, b: UserPairs, name_a: str, name_b: str) -> None:
    """Raises ``ValueError`` unless two datasets have the same input kind, H and D."""
    if a.bank.kind != b.bank.kind:
        raise ValueError(
            f"{name_b}.bank holds inputs of kind {b.bank.kind!r} but {name_a}.bank holds "
            f"{a.bank.kind!r}"
        )
    for what, i in (("H (steps per segment)", 1), ("D (inputs per step)", 2)):
        if a.bank.inputs.shape[i] != b.bank.inputs.shape[i]:
            raise ValueError(
                f"{name_b}.bank.inputs has {what} = {b.bank.inputs.shape[i]} but {name_a} has "
                f"{a.bank.inputs.shape[i]}; both must come from the same task and inputs kind"
            )
