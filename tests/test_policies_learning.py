"""PPO learns for real on navigation (CPU-sized): one latent-conditioned oracle policy for two
users with opposite goals takes each user to that user's own goal."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax.policies import (
    LatentReward,
    PPOConfig,
    evaluate,
    make_train,
    oracle_reward,
    table_sampler,
)
from vpl_jax.users import get_user_type

pytestmark = pytest.mark.slow  # every test here trains PPO for minutes


@pytest.fixture(scope="module")
def trained_oracle(navigation):
    thetas = jnp.stack(
        [
            jnp.asarray(get_user_type("navigation", name).theta(navigation.feature_names))
            for name in ("goal_a", "goal_b")
        ]
    )
    env = LatentReward(navigation, table_sampler(thetas), oracle_reward)
    ppo = make_train(env, PPOConfig(total_timesteps=400_000))
    runner_state, metrics = jax.jit(ppo.train)(jax.random.PRNGKey(0))
    return ppo, runner_state, metrics, thetas


def test_return_rises_well_above_the_initial_random_policy(trained_oracle):
    _, _, metrics, _ = trained_oracle
    returns = np.asarray(metrics["episode_return"])
    chex.assert_tree_all_finite(metrics)
    # The first rollout is the untrained, nearly uniform policy: it wanders (return about -2).
    assert returns[0] < 0.0
    assert returns[-5:].mean() > 5.0, returns[::5]


def test_conditioned_policy_reaches_each_users_own_goal(navigation, trained_oracle):
    ppo, runner_state, _, thetas = trained_oracle
    policy = ppo.policy_params(runner_state)
    num_episodes = 32
    result = evaluate(
        navigation, ppo.act, policy, thetas, thetas, jax.random.PRNGKey(7), num_episodes
    )
    chex.assert_shape(result.positions, (2, num_episodes, navigation.episode_length, 2))
    chex.assert_shape(result.final_position, (2, num_episodes, 2))
    assert np.all(np.asarray(result.success) >= 0.8), result.success
    assert np.all(np.asarray(result.true_return) > 5.0), result.true_return
    # The latent is what steers it: each user's z sends the robot to that user's goal, so
    # swapping the z's fails both users.
    swapped = evaluate(
        navigation, ppo.act, policy, thetas[::-1], thetas, jax.random.PRNGKey(7), num_episodes
    )
    assert np.all(np.asarray(swapped.success) <= 0.2), swapped.success
    assert np.all(np.asarray(swapped.true_return) < np.asarray(result.true_return) - 5.0)


def test_highway_oracle_succeeds_for_every_shipped_and_random_mixed_type():
    """Success (no crash) agrees with the users' true returns: one oracle policy trained on the
    true rewards of every shipped highway type and of random mixed-weight types (every feature
    weighted, safety positive) keeps each of them on the road."""
    from vpl_jax import envs
    from vpl_jax.users import user_types

    highway = envs.make("highway")
    names = highway.feature_names
    # every registered highway type that weighs safety (the shipped ones, and any a test added)
    shipped = jnp.stack(
        [
            theta
            for theta in (jnp.asarray(t.theta(names)) for t in user_types("highway").values())
            if theta[names.index("safety")] > 0
        ]
    )
    assert shipped.shape[0] >= 4
    mixed = jax.random.uniform(jax.random.PRNGKey(5), (4, len(names)), minval=0.1, maxval=1.0)
    thetas = jnp.concatenate([shipped, mixed])
    env = LatentReward(highway, table_sampler(thetas), oracle_reward)
    ppo = make_train(env, PPOConfig(total_timesteps=400_000, state_dependent_std=True))
    runner_state, _ = jax.jit(ppo.train)(jax.random.PRNGKey(0))
    result = evaluate(
        highway, ppo.act, ppo.policy_params(runner_state), thetas, thetas, jax.random.PRNGKey(1), 16
    )
    assert np.all(np.asarray(result.success) >= 0.9), result.success
