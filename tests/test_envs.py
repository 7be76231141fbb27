"""Every registered task resets and steps under jit and vmap with finite, bounded features."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax import envs
from vpl_jax.data import collect, rollout_episode
from vpl_jax.envs import navigation as nav


@pytest.mark.parametrize("name", ["navigation", "highway", "locomotion"])
def test_task_resets_and_steps_under_jit_and_vmap(name):
    env = envs.make(name)
    batch = 4
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    state = jax.jit(jax.vmap(env.reset))(keys)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (batch, env.action_size), minval=-1)
    step = jax.jit(jax.vmap(env.step))
    for _ in range(3):
        state = step(state, actions)
    chex.assert_shape(state.obs, (batch, env.observation_size))
    chex.assert_shape(state.info["features"], (batch, len(env.feature_names)))
    chex.assert_tree_all_finite((state.obs, state.info["features"], state.reward))
    assert np.all(np.abs(np.asarray(state.info["features"])) <= 1.0 + 1e-6)
    assert len(set(env.feature_names)) == len(env.feature_names)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match=r"known tasks: .*navigation"):
        envs.make("navigaton")


def test_make_returns_one_instance_per_configuration():
    assert envs.make("navigation") is envs.make("navigation")
    assert envs.make("navigation", num_goals=3) is not envs.make("navigation")


def test_unknown_feature_weight_names_the_allowed_ones(navigation):
    with pytest.raises(ValueError, match=r"allowed: .*progress_a"):
        navigation.weights({"speed": 1.0})


def _goal_seeker(env, goal_index):
    """A scripted controller that drives straight to one goal."""
    goal = env.goals[goal_index]
    return envs.BehaviourPolicy(
        init=lambda key: (),
        act=lambda params, state, key: jnp.clip(3.0 * (goal - env.position(state)), -1, 1),
    )


def test_navigation_goal_seeker_earns_progress_toward_its_goal(navigation):
    key = jax.random.PRNGKey(0)
    to_a = collect(navigation, key, 8, policy=_goal_seeker(navigation, 0))
    to_b = collect(navigation, key, 8, policy=_goal_seeker(navigation, 1))
    progress_a = navigation.feature_names.index("progress_a")
    sum_a = to_a.features.sum(1)[:, progress_a]
    sum_b = to_b.features.sum(1)[:, progress_a]
    assert float(sum_a.min()) > float(sum_b.max()) + 5.0
    final_a = to_a.positions[:, -1]
    assert np.all(np.linalg.norm(final_a - np.asarray(navigation.goals[0]), axis=-1) < 0.2)


def test_navigation_success_is_reaching_the_users_goal(navigation):
    key = jax.random.PRNGKey(3)
    policy = _goal_seeker(navigation, 1)
    final, _ = jax.vmap(
        lambda k: rollout_episode(navigation, policy, k, navigation.episode_length)
    )(jax.random.split(key, 4))
    wants_b = navigation.weights({"progress_b": 1.0, "safety": 0.3})
    wants_a = navigation.weights({"progress_a": 1.0})
    assert np.all(jax.vmap(navigation.success, (0, None))(final, wants_b))
    assert not np.any(jax.vmap(navigation.success, (0, None))(final, wants_a))
    assert np.all(jax.vmap(navigation.goal_reached)(final) == 1)


def test_navigation_hazard_and_bystander_features_fire(navigation):
    state = navigation.reset(jax.random.PRNGKey(0))
    names = navigation.feature_names
    in_hazard = state.replace(obs=state.obs.at[:2].set(jnp.asarray(nav.HAZARD_CENTER)))
    phi = navigation.features(state, jnp.zeros(2), in_hazard)
    assert phi[names.index("safety")] == pytest.approx(-1.0, abs=1e-5)
    at_bystander = state.replace(obs=state.obs.at[:2].set(state.obs[4:6]))
    phi = navigation.features(state, jnp.ones(2), at_bystander)
    assert phi[names.index("courtesy")] == pytest.approx(-1.0, abs=1e-5)
    assert phi[names.index("comfort")] == pytest.approx(-1.0, abs=1e-5)


def test_behaviour_policy_covers_every_goal_and_the_hazard(navigation):
    traj = collect(navigation, jax.random.PRNGKey(0), 256)
    final = np.asarray(traj.positions[:, -1])
    dist = np.linalg.norm(final[:, None] - np.asarray(navigation.goals)[None], axis=-1)
    reached = (dist < navigation.goal_radius).sum(0)
    assert np.all(reached >= 15), reached  # every goal is reached by a fair share of episodes
    safety = navigation.feature_names.index("safety")
    entered_hazard = (np.asarray(traj.features[..., safety]) < 0).any(1).mean()
    assert 0.05 < entered_hazard < 0.8
