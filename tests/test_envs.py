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
@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_behaviour_policy_covers_every_goal_and_the_hazard(navigation):
    traj = collect(navigation, jax.random.PRNGKey(0), 256)
    final = np.asarray(traj.positions[:, -1])
    dist = np.linalg.norm(final[:, None] - np.asarray(navigation.goals)[None], axis=-1)
    reached = (dist < navigation.goal_radius).sum(0)
    assert np.all(reached >= 15), reached  # every goal is reached by a fair share of episodes
    safety = navigation.feature_names.index("safety")
    entered_hazard = (np.asarray(traj.features[..., safety]) < 0).any(1).mean()
    assert 0.05 < entered_hazard < 0.8


def test_noisy_goal_policy_heads_for_the_goal_its_state_picks(navigation):
    """The goal is read from the state at every step (here from an input appended to the
    observation, as the Nash study's reference reads its noise arc): from near the centre, goal a
    (top, 0.6 m up) and goal b (bottom) saturate the controller, ``tanh(±2)`` along y; noise is
    added before the squash."""
    state = navigation.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    policy = nav.noisy_goal_policy(navigation, lambda s: jnp.where(s.obs[-1] > 0, 0, 1), 0.0)
    assert policy.init(key) is None
    for flag, goal, sign in ((1.0, 0, 1.0), (-1.0, 1, -1.0)):
        flagged = state.replace(obs=jnp.append(state.obs, flag))
        action = policy.act(None, flagged, key)
        np.testing.assert_allclose(action, nav.goal_policy(navigation, goal).act(None, state, key))
        np.testing.assert_allclose(action[1], sign * np.tanh(2.0), rtol=1e-6)
    noisy = nav.noisy_goal_policy(navigation, lambda s: 1, 0.5)
    u = nav.to_goal(navigation.goals[1], navigation.position(state))
    expected = jnp.tanh(u + 0.5 * jax.random.normal(key, (2,)))
    np.testing.assert_allclose(noisy.act(None, state, key), expected, rtol=1e-6)
    assert not np.allclose(noisy.act(None, state, key), jnp.tanh(u), atol=1e-2)


# --- every registered task: rewards are learnable from transitions, failures never pay -----------
def _rollouts(env, policy, n=32, seed=0):
    traj = collect(env, jax.random.PRNGKey(seed), n, policy=policy)
    prev = jnp.concatenate([traj.initial_obs[:, None], traj.obs[:, :-1]], axis=1)
    return traj, prev


def _idle(env):
    """Carries on without acting (the ant stands, the car keeps its speed and lane)."""
    return envs.BehaviourPolicy(
        init=lambda key: (), act=lambda params, state, key: jnp.zeros(env.action_size)
    )


@pytest.mark.parametrize("name", envs.names())
@pytest.mark.slow
def test_every_feature_is_a_function_of_the_transition(name):
    """Realisability: a reward model reading (obs before, action, obs after) — the default
    ``inputs="transition"`` — can represent theta · phi for every theta, because every feature
    is that function of its input (on behaviour and random-action rollouts)."""
    env = envs.make(name)
    noisy = envs.BehaviourPolicy(
        init=lambda key: (),
        act=lambda params, state, key: jax.random.uniform(key, (env.action_size,), minval=-1),
    )
    # The behaviour rollouts are test_failing_early_never_pays's (same size: compiled once).
    for policy, n in ((None, 128), (noisy, 32)):
        traj, prev = _rollouts(env, policy, n)
        recomputed = jax.jit(jax.vmap(jax.vmap(env.features_from_transition)))(
            prev, traj.actions, traj.obs
        )
        np.testing.assert_allclose(recomputed, traj.features, atol=1e-4)


@pytest.mark.parametrize(
    "name", [n for n in envs.names() if envs.make(n).failure_features is not None]
)
@pytest.mark.slow
def test_failing_early_never_pays(name):
    """A task that can fail keeps a failed episode in an absorbing state with the worst features
    until the horizon (no early termination), so for random users who weigh safety (and the
    other features with their intended signs) an episode that fails at step t has a lower true
    return than the same prefix followed by carrying on safely (idling)."""
    env = envs.make(name)
    safety = env.feature_names.index("safety")
    traj, _ = _rollouts(env, None, n=128)
    assert bool(traj.alive.all())  # fixed horizon: nothing terminates early
    absorbing = np.asarray((traj.features == env.failure_features).all(-1))
    failed = absorbing.any(1)
    assert failed.any(), "the behaviour data should contain failures"
    idle, _ = _rollouts(env, _idle(env), n=32, seed=1)
    idle_absorbing = np.asarray((idle.features == env.failure_features).all(-1)).any(1)
    safe_steps = np.asarray(idle.features)[~idle_absorbing]  # [N_safe, T, F] episodes never failing
    assert len(safe_steps) > 0

    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, 1.0, (256, env.num_features))
    theta[:, safety] = rng.uniform(0.05, 1.0, 256)
    phi = np.asarray(traj.features)[failed]  # [N_fail, T, F]
    first_absorbing = absorbing[failed].argmax(1)
    for i, t_abs in enumerate(first_absorbing):
        t_fail = t_abs - 1  # the step that failed; the absorbing state starts after it
        prefix = phi[i, :t_fail].sum(0)
        fail_return = theta @ (prefix + phi[i, t_fail:].sum(0))
        safe = safe_steps[i % len(safe_steps), t_fail:].sum(0)
        safe_return = theta @ (prefix + safe)
        assert np.all(fail_return < safe_return), (i, t_fail)
    # Per step too: an absorbing step is worse than any safe idle step, for every such user.
    worst_safe = (theta @ safe_steps.reshape(-1, env.num_features).T).min(1)
    assert np.all(theta @ np.asarray(env.failure_features) < worst_safe)
