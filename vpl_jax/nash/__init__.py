"""Beyond a single reward: preference models, Nash-MD, and direct preference objectives.

* :mod:`~vpl_jax.nash.matrix_game` — the tabular core: Nash-MD on a preference table,
  exploitability; :mod:`~vpl_jax.nash.gaussian` — the closed-form geometric mixture of Gaussians;
  :mod:`~vpl_jax.nash.direct` — DPO and IPO losses.
* :class:`PreferenceModel` — P(τ ≻ τ′) = σ(g(τ, τ′) − g(τ′, τ)), antisymmetric by construction,
  trained with :func:`vpl_jax.rewards.fit`.
* :mod:`~vpl_jax.nash.policy` — mixed policies (lotteries over modes, a per-episode noise
  input), trajectory likelihoods, behaviour cloning of a reference
  (:func:`clone_demonstrations`; navigation's goal per noise arc: :func:`clone_reference`).
* :func:`make_nash_md` — Nash-MD (and self-play): PPO with a trajectory-level win-probability
  return against geometric-mixture opponents and a KL penalty to the reference, and the exact
  mirror-descent step on the lottery's mode weights; :func:`make_rlhf` the same on a reward;
  :func:`train_lottery` trains either in chunks. :func:`vpl_lotteries` — each user's
  KL-regularised lottery over the reference's modes under a latent reward.
* :func:`train_direct` — offline DPO/IPO on trajectory log-likelihood ratios (from a dataset's
  training users: :func:`train_direct_on_dataset`).
* :mod:`~vpl_jax.nash.evaluation` — margins of pure strategies, exploitability and per-type win
  rates under a population's true preferences; in navigation, a policy's and the scripted
  goals' episodes (:func:`policy_episodes`, :func:`pure_episodes`), their scores
  (:func:`policy_scores`, :func:`score_policy`; as result rows :func:`score_rows`) and a
  preference model's goal table (:func:`goal_preference_table`).
"""

from vpl_jax.nash.control import (
    ModeState,
    NashConfig,
    check_ppo_config,
    latent_lotteries,
    lottery,
    make_lottery_ppo,
    make_nash_md,
    make_rlhf,
    mode_rollouts,
    nash_ppo_config,
    opponent_rollouts,
    return_scale,
    self_play,
    train_lottery,
    vpl_lotteries,
)
from vpl_jax.nash.direct import dpo_loss, ipo_loss, log_ratio_margin
from vpl_jax.nash.evaluation import (
    exploitability,
    goal_preference_table,
    policy_episodes,
    policy_scores,
    pure_episodes,
    pure_strategy_margins,
    score_policy,
    score_rows,
    type_preferences,
    type_win_rates,
)
from vpl_jax.nash.gaussian import geometric_mixture
from vpl_jax.nash.matrix_game import geometric_mix, mirror_step, nash_md
from vpl_jax.nash.offline import DirectConfig, train_direct, train_direct_on_dataset
from vpl_jax.nash.policy import (
    CloneConfig,
    clone,
    clone_demonstrations,
    clone_reference,
    gaussian,
    gaussian_log_prob,
    lottery_latents,
    mode_of,
    network_act,
    noise_angle,
    noise_nodes,
    noise_sampler,
    on_circle,
    pre_squash,
    reference_goal,
    stratified_modes,
    trajectory_log_prob,
    uniform_log_weights,
    user_lottery_latents,
)
from vpl_jax.nash.preference import PreferenceModel
from vpl_jax.policies.ppo import policy_network

__all__ = [
    "CloneConfig",
    "DirectConfig",
    "ModeState",
    "NashConfig",
    "PreferenceModel",
    "check_ppo_config",
    "clone",
    "clone_demonstrations",
    "clone_reference",
    "dpo_loss",
    "exploitability",
    "gaussian",
    "gaussian_log_prob",
    "geometric_mix",
    "geometric_mixture",
    "goal_preference_table",
    "ipo_loss",
    "latent_lotteries",
    "log_ratio_margin",
    "lottery",
    "lottery_latents",
    "make_lottery_ppo",
    "make_nash_md",
    "make_rlhf",
    "mirror_step",
    "mode_of",
    "mode_rollouts",
    "nash_md",
    "nash_ppo_config",
    "network_act",
    "noise_angle",
    "noise_nodes",
    "noise_sampler",
    "on_circle",
    "opponent_rollouts",
    "policy_episodes",
    "policy_network",
    "policy_scores",
    "pre_squash",
    "pure_episodes",
    "pure_strategy_margins",
    "reference_goal",
    "return_scale",
    "score_policy",
    "score_rows",
    "self_play",
    "stratified_modes",
    "train_direct",
    "train_direct_on_dataset",
    "train_lottery",
    "trajectory_log_prob",
    "type_preferences",
    "type_win_rates",
    "uniform_log_weights",
    "user_lottery_latents",
    "vpl_lotteries",
]
