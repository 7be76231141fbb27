"""A trained PPO critic as a value function in the units of the reward it was trained on.

PPO learns its critic on a rescaled reward: multiplied by ``reward_scale``, divided by the
running standard deviation of the discounted return (``normalize_rewards``) and, with
``center_rewards``, shifted by the running mean reward. :func:`critic_values` undoes the scales,
so an oracle policy's critic (trained with ``z = theta`` on ``theta · phi``) gives a user's
optimal values ``V*(s)`` in the units of their reward — what a regret-based user adds to a
segment's partial return (:func:`vpl_jax.users.segment_values`). With centred rewards the values
are off by one constant (the mean reward's discounted sum), which cancels in the differences
``V*(s_end) - V*(s_start)`` that regret uses.
"""

from __future__ import annotations

import jax

from vpl_jax.policies.ppo import PPO, RunnerState


def critic_values(ppo: PPO, runner_state: RunnerState, obs: jax.Array) -> jax.Array:
    """f32[...]: ``V(obs)`` in reward units for raw observations ``obs: f32[..., O]`` (the
    latent ``z`` included, as the policy sees it). Pure and jittable."""
    value = ppo.value(ppo.policy_params(runner_state), obs)
    if ppo.config.normalize_rewards:
        value = value * runner_state.return_stats.std
    return value / ppo.config.reward_scale
