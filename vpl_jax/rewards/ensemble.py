"""An ensemble of E BTL members (Lakshminarayanan et al., 2017), the uncertainty baseline.

Members differ by their initialisation and, with ``bootstrap``, by Poisson(1) weights on every
pair at every step (the online bootstrap of Oza & Russell, 2001), which resamples the data without
changing any shape. Params are the members' params stacked on a leading axis E, so every member
is trained by one ``vmap``.

The ensemble's prediction is the mean of the members' probabilities; ``member_logits`` gives
each member's own logits, whose spread acquisition functions use as disagreement.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vpl_jax.checks import Int, check_config, checked
from vpl_jax.rewards.base import Params
from vpl_jax.rewards.batch import Inputs, PairBatch
from vpl_jax.rewards.btl import BTL
from vpl_jax.rewards.likelihood import logit_from_log_probs, pair_metrics


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """E independently initialised BTL members trained side by side.

    Attributes:
      member: the member model's hyperparameters.
      size: E, number of members.
      bootstrap: give each member Poisson(1) weights per pair and step.
    """

    member: BTL = dataclasses.field(default_factory=BTL)
    size: int = checked(5, Int(ge=1))
    bootstrap: bool = True

    def __post_init__(self):
        check_config(self)

    @property
    def inputs(self) -> Inputs:
        return self.member.inputs

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        keys = jax.random.split(key, self.size)
        return jax.vmap(self.member.init, in_axes=(0, None))(keys, batch)

    def loss(self, params, batch: PairBatch, key, step):
        """Sum of the members' losses (each one's gradient only reaches its own params)."""
        k_boot, k_members = jax.random.split(key)
        if self.bootstrap:
            weights = jax.random.poisson(k_boot, 1.0, (self.size, *batch.mask.shape))
            weights = weights.astype(jnp.float32)
        else:
            weights = jnp.ones((self.size, *batch.mask.shape))
        keys = jax.random.split(k_members, self.size)
        losses, _ = jax.vmap(self.member.loss, in_axes=(0, None, 0, None, 0))(
            params, batch, keys, step, weights
        )
        metrics = pair_metrics(self.pair_logits(params, batch), batch.labels, batch.mask)
        return jnp.sum(losses), {"loss": jnp.mean(losses), **metrics}

    def member_logits(self, params: Params, batch: PairBatch) -> jax.Array:
        """f32[E, ..., Q]: every member's logits."""
        return jax.vmap(self.member.pair_logits, in_axes=(0, None))(params, batch)

    def pair_logits(self, params: Params, batch: PairBatch, z=None) -> jax.Array:
        """f32[..., Q]: logit of the members' mean probability ``mean_e sigmoid(l_e)``."""
        logits = self.member_logits(params, batch)
        log_p_a = jax.nn.logsumexp(jax.nn.log_sigmoid(logits), axis=0) - math.log(self.size)
        log_p_b = jax.nn.logsumexp(jax.nn.log_sigmoid(-logits), axis=0) - math.log(self.size)
        return logit_from_log_probs(log_p_a, log_p_b)

    def reward(self, params: Params, x: jax.Array, z=None) -> jax.Array:
        """f32[...]: the members' mean reward."""
        return jnp.mean(jax.vmap(self.member.reward, in_axes=(0, None))(params, x), axis=0)

    def member_rewards(self, params: Params, x: jax.Array) -> jax.Array:
        """f32[E, ...]: every member's reward."""
        return jax.vmap(self.member.reward, in_axes=(0, None))(params, x)

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        ret = jax.vmap(self.member.segment_return, in_axes=(0, None, None))(params, x, alive)
        return jnp.mean(ret, axis=0)

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        del context
        return self.pair_logits(params, targets)
