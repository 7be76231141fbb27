"""Policies: PPO (PureJaxRL-style), the latent-reward wrapper, per-user evaluation, critics as
value functions."""

from vpl_jax.checks import TrainingDivergedError
from vpl_jax.policies.critic import critic_values
from vpl_jax.policies.evaluation import Evaluation, evaluate
from vpl_jax.policies.networks import (
    ActorCritic,
    entropy_estimate,
    log_prob_of_pre_squash,
    tanh_gaussian,
)
from vpl_jax.policies.ppo import (
    LOSSES,
    PPO,
    PolicyParams,
    PPOConfig,
    RunnerState,
    Transition,
    check_converged,
    generalized_advantages,
    make_train,
    policy_network,
)
from vpl_jax.policies.wrappers import (
    AutoResetWrapper,
    LatentReward,
    constant_sampler,
    latent_size,
    learned_reward,
    no_latent,
    observation_size,
    oracle_reward,
    posterior_sampler,
    prior_sampler,
    reward_inputs,
    table_sampler,
    wrap_for_training,
)

__all__ = [
    "LOSSES",
    "PPO",
    "ActorCritic",
    "AutoResetWrapper",
    "Evaluation",
    "LatentReward",
    "PPOConfig",
    "PolicyParams",
    "RunnerState",
    "TrainingDivergedError",
    "Transition",
    "check_converged",
    "constant_sampler",
    "critic_values",
    "entropy_estimate",
    "evaluate",
    "generalized_advantages",
    "latent_size",
    "learned_reward",
    "log_prob_of_pre_squash",
    "make_train",
    "no_latent",
    "observation_size",
    "oracle_reward",
    "policy_network",
    "posterior_sampler",
    "prior_sampler",
    "reward_inputs",
    "table_sampler",
    "tanh_gaussian",
    "wrap_for_training",
]
