"""Reward models learned from pairwise preferences, their trainer and their evaluation.

Models (one interface, see :mod:`vpl_jax.rewards.base`): :class:`BTL`, :class:`VPL`,
:class:`DPLMeanVariance`, :class:`DPLCategorical`, :class:`LinearBayes`, :class:`Ensemble`.
Data: :func:`user_pairs` turns a :class:`~vpl_jax.data.PreferenceDataset` into
:class:`UserPairs`; :func:`fit` trains any model on them (one seed or S seeds vmapped);
:func:`evaluate` scores test users' held-out pairs given their context pairs;
:func:`save_model` and :func:`load_model` keep a trained model in a folder.

    fit_users, valid_users = validation_split(dataset, 0.2)  # among the training users
    model = VPL(latent_dim=8, max_context=dataset.context_size)
    config = TrainConfig(num_epochs=200, patience=20)
    keys = jax.random.split(jax.random.PRNGKey(0), 8)  # 8 seeds in one compiled call
    params, history = fit(model, config, keys, user_pairs(fit_users), user_pairs(valid_users))
    _, test = dataset.split()
    result = evaluate(model, params, user_pairs(test, "context"), user_pairs(test, "heldout"),
                      seeds=True)
    result.type_accuracy  # f32[8, T]: held-out accuracy per seed and user type
"""

from vpl_jax.rewards.base import LatentRewardModel, RewardModel, is_latent
from vpl_jax.rewards.batch import (
    DEFAULT_INPUTS,
    Inputs,
    PairBatch,
    SegmentBank,
    UserPairs,
    gather_pairs,
    pair_batch,
    segment_bank,
    step_inputs,
    user_pairs,
    validation_split,
)
from vpl_jax.rewards.btl import BTL
from vpl_jax.rewards.dpl import DPLCategorical, DPLMeanVariance
from vpl_jax.rewards.ensemble import Ensemble
from vpl_jax.rewards.evaluation import (
    Evaluation,
    LatentProjection,
    LatentSeparation,
    context_size_curve,
    cosine,
    evaluate,
    heldout_log_probs,
    heldout_logits,
    latent_projection,
    latent_separation,
    posterior_moments,
    theta_alignment,
    type_separation,
)
from vpl_jax.rewards.files import MODEL_CLASSES, ModelFileError, load_model, save_model
from vpl_jax.rewards.likelihood import masked_mean, strict_accuracy
from vpl_jax.rewards.linear_bayes import LinearBayes
from vpl_jax.rewards.methods import REWARD_METHODS, ModelSizes, make_model, with_discount
from vpl_jax.rewards.scaling import (
    ScaleMethod,
    reference_inputs,
    reference_rewards,
    scale_rewards,
    scaled_reward,
)
from vpl_jax.rewards.trainer import (
    History,
    TrainConfig,
    TrainingDivergedError,
    TrainState,
    fit,
    fit_chunked,
    make_train,
    train_run,
)
from vpl_jax.rewards.vpl import VPL

__all__ = [
    "BTL",
    "DEFAULT_INPUTS",
    "MODEL_CLASSES",
    "REWARD_METHODS",
    "VPL",
    "DPLCategorical",
    "DPLMeanVariance",
    "Ensemble",
    "Evaluation",
    "History",
    "Inputs",
    "LatentProjection",
    "LatentRewardModel",
    "LatentSeparation",
    "LinearBayes",
    "ModelFileError",
    "ModelSizes",
    "PairBatch",
    "RewardModel",
    "ScaleMethod",
    "SegmentBank",
    "TrainConfig",
    "TrainState",
    "TrainingDivergedError",
    "UserPairs",
    "context_size_curve",
    "cosine",
    "evaluate",
    "fit",
    "fit_chunked",
    "gather_pairs",
    "heldout_log_probs",
    "heldout_logits",
    "is_latent",
    "latent_projection",
    "latent_separation",
    "load_model",
    "make_model",
    "make_train",
    "masked_mean",
    "pair_batch",
    "posterior_moments",
    "reference_inputs",
    "reference_rewards",
    "save_model",
    "scale_rewards",
    "scaled_reward",
    "segment_bank",
    "step_inputs",
    "strict_accuracy",
    "theta_alignment",
    "train_run",
    "type_separation",
    "user_pairs",
    "validation_split",
    "with_discount",
]
