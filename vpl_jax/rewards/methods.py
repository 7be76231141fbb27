"""Reward models by their method names in results (``btl``, ``vpl``, …), with shared sizes.

Experiments name methods as strings (in configs and in the tidy results); :func:`make_model`
turns a name into a model so that every experiment builds, e.g., ``vpl`` the same way.
"""

from __future__ import annotations

import dataclasses
from typing import get_args

from vpl_jax.checks import Choice, Each, Float, Int, check_config, checked
from vpl_jax.rewards.base import RewardModel
from vpl_jax.rewards.batch import DEFAULT_INPUTS, Inputs
from vpl_jax.rewards.btl import BTL
from vpl_jax.rewards.dpl import DPLCategorical, DPLMeanVariance
from vpl_jax.rewards.ensemble import Ensemble
from vpl_jax.rewards.linear_bayes import LinearBayes
from vpl_jax.rewards.vpl import DECODERS, VPL

#: Method names with a reward model, in the order figures show them.
REWARD_METHODS = ("btl", "btl_ensemble", "dpl_meanvar", "dpl_categorical", "linear_bayes", "vpl")


@dataclasses.dataclass(frozen=True)
class ModelSizes:
    """Hyperparameters shared by the reward models of one experiment.

    Attributes:
      hidden: MLP widths of every reward network (BTL, DPL, ensemble members, VPL's decoder and
        encoder).
      latent_dim: VPL's latent size Z.
      context_size: the most context pairs VPL's and LinearBayes' encoders see (K).
      kl_weight: VPL's KL weight (beta of the ELBO).
      kl_warmup_steps: optimiser steps over which VPL's KL weight rises linearly from 0.
      ensemble_size: BTL ensemble members.
      inputs: what every learned reward network reads per step (BTL, DPL, ensemble members,
        VPL's encoder and decoder; LinearBayes always reads the task's features):
        ``"transition"`` (default; the observation before the step, the action and the
        observation after it — every task feature is a function of it, so every user's reward
        is learnable), ``"obs"`` (the observation after the step), ``"obs_action"`` (it and the
        action), or ``"features"`` (the task's own features: the *known-features* baseline).
      vpl_decoder: VPL's reward network: ``"mlp"`` of [x, z], or ``"basis"``, r = g(x) · w(z)
        with a basis g shared by all users (see :class:`~vpl_jax.rewards.VPL`).
    """

    hidden: tuple[int, ...] = checked((64, 64), Each(Int(ge=1)))
    latent_dim: int = checked(8, Int(ge=1))
    context_size: int = checked(8, Int(ge=1))
    kl_weight: float = checked(1.0, Float(ge=0))
    kl_warmup_steps: int = checked(0, Int(ge=0))
    ensemble_size: int = checked(5, Int(ge=1))
    inputs: Inputs = checked(DEFAULT_INPUTS, Choice(get_args(Inputs)))
    vpl_decoder: str = checked("mlp", Choice(DECODERS))

    def validate(self) -> ModelSizes:
        """Raises :class:`~vpl_jax.checks.ConfigError` naming the first bad field
        (``ModelSizes.<field>``) and its allowed values; returns ``self``."""
        check_config(self)
        return self


def make_model(method: str, sizes: ModelSizes = ModelSizes()) -> RewardModel:
    """The reward model of ``method`` (one of :data:`REWARD_METHODS`), with ``sizes`` checked
    first (:meth:`ModelSizes.validate`: a bad size raises naming the field)."""
    sizes.validate()
    inputs = sizes.inputs
    if method == "btl":
        return BTL(hidden=sizes.hidden, inputs=inputs)
    if method == "btl_ensemble":
        return Ensemble(member=BTL(hidden=sizes.hidden, inputs=inputs), size=sizes.ensemble_size)
    if method == "dpl_meanvar":
        return DPLMeanVariance(hidden=sizes.hidden, inputs=inputs)
    if method == "dpl_categorical":
        return DPLCategorical(hidden=sizes.hidden, inputs=inputs)
    if method == "linear_bayes":
        return LinearBayes(max_context=sizes.context_size)
    if method == "vpl":
        return VPL(
            latent_dim=sizes.latent_dim,
            encoder_hidden=sizes.hidden,
            decoder_hidden=sizes.hidden,
            max_context=sizes.context_size,
            kl_weight=sizes.kl_weight,
            kl_warmup_steps=sizes.kl_warmup_steps,
            inputs=inputs,
            decoder=sizes.vpl_decoder,
        )
    raise ValueError(f"unknown reward method {method!r}; allowed: {list(REWARD_METHODS)}")


def with_discount(model: RewardModel, discount: float) -> RewardModel:
    """The same model, its likelihood assuming labellers with myopic ``discount`` over a segment
    (the correct human model for B-Pref's myopic users; see ``BTL.discount``).

    Supported by BTL, its ensemble, VPL and LinearBayes; others raise ``ValueError``.
    """
    if isinstance(model, Ensemble):
        return dataclasses.replace(model, member=with_discount(model.member, discount))
    if not any(f.name == "discount" for f in dataclasses.fields(model)):
        raise ValueError(
            f"{type(model).__name__} cannot assume a labeller discount; "
            "supported: BTL, btl_ensemble, VPL, LinearBayes"
        )
    return dataclasses.replace(model, discount=discount)
