"""Reward scaling: make latent-conditioned rewards of different users comparable.

Pairwise labels fix a user's reward only up to a monotone transformation (exactly so for a
rational user, up to scale for a Boltzmann one), so the raw ``r(s, z)`` of two users can differ
wildly in scale and offset — and a policy trained on a mix of users then favours whoever has the
largest scale. Each method below turns ``r(s, z)`` into a number that depends only on how ``s``
ranks against a fixed set of reference states ``s'`` under the same z:

* ``"win_probability"`` (VPL-SPO, Poddar et al., 2024): ``E_{s'}[sigmoid(r(s, z) - r(s', z))]``
  in [0, 1] — the chance that ``s`` is preferred to a random reference state;
* ``"standardize"``: ``(r - mean_{s'} r) / std_{s'} r`` — invariant to scale and offset;
* ``"minmax"``: ``(r - min_{s'} r) / (max_{s'} r - min_{s'} r)``;
* ``"none"``: the raw reward.

Inside a policy's environment loop z is fixed for an episode, so compute
``reference_rewards(model, params, refs, z)`` once at reset and call
:func:`scale_rewards` on every step's raw reward: a step then costs one reward evaluation, not N.
"""

from __future__ import annotations

from typing import Literal, get_args

import jax
import jax.numpy as jnp

from vpl_jax.rewards.base import Params, RewardModel
from vpl_jax.rewards.batch import SegmentBank

ScaleMethod = Literal["win_probability", "standardize", "minmax", "none"]


def reference_inputs(key: jax.Array, bank: SegmentBank, num: int) -> jax.Array:
    """f32[N, D]: ``num`` live steps drawn uniformly (with replacement) from the bank."""
    alive = bank.alive.reshape(-1)
    logits = jnp.where(alive, 0.0, -jnp.inf)
    index = jax.random.categorical(key, logits, shape=(num,))
    return bank.inputs.reshape(-1, bank.input_dim)[index]


def reference_rewards(
    model: RewardModel, params: Params, reference: jax.Array, z: jax.Array | None = None
) -> jax.Array:
    """f32[..., N]: rewards of the reference states ``reference: f32[N, D]`` under each latent
    ``z: f32[..., Z]`` (f32[N] for a model without a latent and ``z=None``)."""
    if z is None:
        return model.reward(params, reference)
    x = jnp.broadcast_to(reference, (*z.shape[:-1], *reference.shape))
    return model.reward(params, x, z[..., None, :])


def scale_rewards(
    rewards: jax.Array, reference: jax.Array, method: ScaleMethod = "win_probability"
) -> jax.Array:
    """f32[...]: ``rewards: f32[...]`` rescaled against ``reference: f32[..., N]``, the same
    latents' rewards of the reference states (leading axes broadcast by numpy rules)."""
    if method not in get_args(ScaleMethod):
        raise ValueError(f"scaling method={method!r} is not one of {list(get_args(ScaleMethod))}")
    if method == "none":
        return rewards
    if method == "win_probability":
        return jnp.mean(jax.nn.sigmoid(rewards[..., None] - reference), axis=-1)
    if method == "standardize":
        mean, std = jnp.mean(reference, axis=-1), jnp.std(reference, axis=-1)
        return (rewards - mean) / jnp.maximum(std, 1e-8)
    low, high = jnp.min(reference, axis=-1), jnp.max(reference, axis=-1)
    return (rewards - low) / jnp.maximum(high - low, 1e-8)


def scaled_reward(
    model: RewardModel,
    params: Params,
    x: jax.Array,
    z: jax.Array | None,
    reference: jax.Array,
    method: ScaleMethod = "win_probability",
) -> jax.Array:
    """f32[...]: the scaled reward of ``x: f32[..., D]`` under ``z: f32[..., Z]``, whose leading
    axes broadcast against x's (e.g. ``z: f32[U, 1, Z]`` for ``x: f32[U, T, D]``). Recomputes
    the reference rewards; see the module docstring for the per-episode pattern."""
    raw = model.reward(params, x, z) if z is not None else model.reward(params, x)
    return scale_rewards(raw, reference_rewards(model, params, reference, z), method)
