"""Tests for the highway and locomotion tasks: contract, hand-built scenes, behaviour diversity."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax import math

from vpl_jax import envs
from vpl_jax.envs.base import FeatureEnv
from vpl_jax.envs.highway import LANE_WIDTH, MAX_SPEED, idm_accel
from vpl_jax.envs.locomotion import VELOCITY_SCALE

BATCH = 16


@functools.cache
def _task(name: str):
    """The task and its jitted, batched reset/step/policy functions (compiled once per module)."""
    env = envs.make(name)
    policy = env.behaviour_policy
    return (
        env,
        jax.jit(jax.vmap(env.reset)),
        jax.jit(jax.vmap(env.step)),
        jax.jit(jax.vmap(policy.init)),
        jax.jit(jax.vmap(policy.act)),
    )


def _behaviour_rollout(name: str, num_steps: int, seed: int = 0):
    """Final states and per-step features f32[T, B, F] of BATCH behaviour-policy episodes."""
    env, reset, step, init, act = _task(name)
    k_reset, k_init, k_act = jax.random.split(jax.random.PRNGKey(seed), 3)
    state = reset(jax.random.split(k_reset, BATCH))
    params = init(jax.random.split(k_init, BATCH))
    start = jax.vmap(env.position)(state)
    features = []
    for key in jax.random.split(k_act, num_steps):
        state = step(state, act(params, state, jax.random.split(key, BATCH)))
        features.append(state.info["features"])
    return start, state, jnp.stack(features)


def _check_features(env: FeatureEnv, features: jax.Array) -> None:
    chex.assert_shape(features, (..., len(env.feature_names)))
    chex.assert_tree_all_finite(features)
    assert jnp.all(features >= -1.0) and jnp.all(features <= 1.0), features


@pytest.mark.parametrize("name", ["highway", "locomotion"])
@pytest.mark.slow
def test_reset_and_step_under_jit_and_vmap(name):
    env, reset, step, _, _ = _task(name)
    state = reset(jax.random.split(jax.random.PRNGKey(0), BATCH))
    actions = jax.random.uniform(
        jax.random.PRNGKey(1), (BATCH, env.action_size), minval=-1.0, maxval=1.0
    )
    next_state = step(state, actions)
    chex.assert_shape(next_state.obs, (BATCH, env.observation_size))
    chex.assert_shape(next_state.info["features"], (BATCH, env.num_features))
    chex.assert_shape([next_state.reward, next_state.done], (BATCH,))
    chex.assert_tree_all_finite(next_state.obs)
    _check_features(env, next_state.info["features"])
    assert env.num_features == len(env.default_weights)


def test_feature_names():
    highway, locomotion = envs.make("highway"), envs.make("locomotion")
    assert highway.feature_names == ("safety", "efficiency", "law", "courtesy", "comfort")
    assert locomotion.feature_names == ("velocity_x", "velocity_y", "safety", "comfort")


# --- highway -----------------------------------------------------------------------------------
@functools.cache
def _one_car_highway():
    env = envs.make("highway", num_cars=1)
    return env, jax.jit(env.step)


def _scene(ego_y: float, ego_v: float, car_dx: float, car_dy: float, car_v: float):
    """One-car highway state: the ego at x = 0, the car at (car_dx, ego_y + car_dy)."""
    env, _ = _one_car_highway()
    state = env.reset(jax.random.PRNGKey(0))
    pipeline_state = env.pipeline_init(jnp.array([0.0, ego_y]), jnp.array([ego_v, 0.0]))
    info = {
        **state.info,
        "car_x": jnp.array([car_dx]),
        "car_y": jnp.array([ego_y + car_dy]),
        "car_v": jnp.array([car_v]),
        "car_desired_speed": jnp.array([30.0]),
        "car_headway": jnp.array([1.5]),
    }
    return state.replace(pipeline_state=pipeline_state, info=info)


def _named(env: FeatureEnv, state) -> dict[str, float]:
    return dict(zip(env.feature_names, np.asarray(state.info["features"]).tolist(), strict=True))


def test_idm_accelerates_on_a_free_road_and_brakes_behind_a_close_leader():
    free = idm_accel(jnp.array(0.0), jnp.array(30.0), jnp.array(1.5), jnp.inf, jnp.array(0.0))
    cruise = idm_accel(jnp.array(30.0), jnp.array(30.0), jnp.array(1.5), jnp.inf, jnp.array(0.0))
    close = idm_accel(jnp.array(25.0), jnp.array(30.0), jnp.array(1.5), jnp.array(5.0), 10.0)
    chex.assert_trees_all_close((free, cruise), (1.5, 0.0), atol=1e-6)
    assert close == -8.0  # clipped at the cars' maximum braking


@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_highway_forcing_braking_costs_courtesy():
    env, step = _one_car_highway()
    brake = jnp.array([-1.0, 0.0])
    # A follower 12 m behind, as fast as the braking ego: it must brake hard.
    close = step(_scene(ego_y=0.0, ego_v=25.0, car_dx=-12.0, car_dy=0.0, car_v=25.0), brake)
    # The same follower 80 m behind, or in the next lane: nobody is forced to brake.
    far = step(_scene(ego_y=0.0, ego_v=25.0, car_dx=-80.0, car_dy=0.0, car_v=20.0), brake)
    beside = step(_scene(ego_y=0.0, ego_v=25.0, car_dx=-12.0, car_dy=LANE_WIDTH, car_v=25.0), brake)
    close_f, far_f, beside_f = _named(env, close), _named(env, far), _named(env, beside)
    assert bool(close.info["ego_leads"][0]) and close.info["car_accel"][0] < -3.0
    assert close_f["courtesy"] < -0.4 and close_f["safety"] < -0.5
    assert far_f["courtesy"] == 0.0 and far_f["safety"] == 0.0
    assert beside_f["courtesy"] == 0.0 and beside_f["safety"] == 0.0
    assert close.done == 0.0


def test_highway_collision_fails_into_an_absorbing_state_until_the_horizon():
    env, step = _one_car_highway()
    state = step(_scene(ego_y=0.0, ego_v=25.0, car_dx=3.0, car_dy=0.5, car_v=15.0), jnp.zeros(2))
    assert _named(env, state)["safety"] == -1.0
    assert state.done == 0.0 and bool(state.info["failed"]) and state.obs[7] == 1.0
    assert not env.success(state, env.default_weights)
    # Later steps: the world is frozen, every feature at its worst, whatever the action.
    for action in (jnp.array([1.0, 0.0]), jnp.array([-1.0, 1.0])):
        after = step(state, action)
        np.testing.assert_array_equal(after.info["features"], env.failure_features)
        np.testing.assert_array_equal(after.obs, state.obs)
        assert after.done == 0.0 and after.info["t"] == state.info["t"] + 1


def test_highway_driving_faster_increases_efficiency():
    env, step = _one_car_highway()
    scene = _scene(ego_y=0.0, ego_v=20.0, car_dx=90.0, car_dy=LANE_WIDTH, car_v=20.0)
    faster = step(scene, jnp.array([1.0, 0.0]))
    slower = step(scene, jnp.array([-1.0, 0.0]))
    chex.assert_trees_all_close(
        (_named(env, faster)["efficiency"], _named(env, slower)["efficiency"]),
        ((20.0 + 0.4) / MAX_SPEED, (20.0 - 0.8) / MAX_SPEED),
        atol=1e-4,
    )
    assert env.success(faster, env.default_weights)


def test_highway_leaving_the_road_fails():
    env, step = _one_car_highway()
    state = _scene(ego_y=LANE_WIDTH, ego_v=20.0, car_dx=90.0, car_dy=-LANE_WIDTH, car_v=20.0)
    failed, law = [], []
    for _ in range(15):  # 2.5 m/s to the left: off the road (edge + 1 m) after 13 steps
        state = step(state, jnp.array([0.0, 1.0]))
        failed.append(bool(state.info["failed"]))
        law.append(_named(env, state)["law"])
        assert state.done == 0.0
    assert failed[:11] == [False] * 11 and failed[-1]
    assert max(law[10:]) < -0.4
    assert not env.success(state, env.default_weights)


def test_highway_lateral_acceleration_is_bounded_by_tyre_grip():
    """A full lateral command is reached at 8 m/s^2 (0.8 m/s per step), not at once, so a
    policy that flips its lateral command every step swerves at 8 m/s^2 — saturating comfort,
    as the behaviour data often does — never at the 50 m/s^2 an instant command allowed (a
    learned reward extrapolated there and a VPL policy wiggled for every user)."""
    env, step = _one_car_highway()
    state = _scene(ego_y=0.0, ego_v=20.0, car_dx=90.0, car_dy=LANE_WIDTH, car_v=20.0)
    lateral_speeds, lateral_accels, comfort = [], [], []
    for t in range(8):
        state = step(state, jnp.array([0.0, 1.0 if t < 4 else -1.0]))
        lateral_speeds.append(float(state.pipeline_state.qd[1]))
        lateral_accels.append(float(state.obs[5]))  # the ego's lateral acceleration / 8 m/s^2
        comfort.append(_named(env, state)["comfort"])
    np.testing.assert_allclose(lateral_speeds, [0.8, 1.6, 2.4, 2.5, 1.7, 0.9, 0.1, -0.7], atol=1e-4)
    np.testing.assert_allclose(lateral_accels, [1, 1, 1, 0.125, -1, -1, -1, -1], atol=1e-4)
    assert comfort[4] == pytest.approx(-1.0)  # |a| = 8 m/s^2 and a jerk of 90 m/s^3: both max


@pytest.mark.slow  # 19 s in the fast tier on 2 cores (2026-12-07)
def test_highway_behaviour_policy_is_diverse():
    env = _task("highway")[0]
    _, final, features = _behaviour_rollout("highway", num_steps=30)
    returns = features.sum(axis=0)  # f32[B, F]
    _check_features(env, features)
    # Every feature varies across episodes, and drivers end up in different lanes.
    assert jnp.all(returns.std(axis=0) > 0.2), returns.std(axis=0)
    lanes = jnp.round(jax.vmap(env.position)(final)[:, 1] / LANE_WIDTH)
    assert len(np.unique(np.asarray(lanes))) >= 2
    assert jnp.ptp(returns[:, env.feature_names.index("efficiency")]) > 3.0


# --- locomotion --------------------------------------------------------------------------------
def _shifted(state, dxyz):
    """``state`` with the whole ant moved by ``dxyz`` metres."""
    ps = state.pipeline_state
    return state.replace(pipeline_state=ps.replace(x=ps.x.replace(pos=ps.x.pos + dxyz)))


def _tilted(state, angle):
    """``state`` with the torso rotated by ``angle`` about the world's y axis."""
    ps = state.pipeline_state
    rot = ps.x.rot.at[0].set(math.quat_rot_axis(jnp.array([0.0, 1.0, 0.0]), angle))
    return state.replace(pipeline_state=ps.replace(x=ps.x.replace(rot=rot)))


@functools.cache
def _locomotion_state():
    reset = _task("locomotion")[1]
    return jax.tree.map(lambda x: x[0], reset(jax.random.PRNGKey(0)[None]))


def test_locomotion_moving_in_plus_x_gives_positive_velocity_x():
    env = _task("locomotion")[0]
    features = jax.jit(env.features)
    state, action = _locomotion_state(), jnp.zeros(env.action_size)
    step_x = 0.5 * VELOCITY_SCALE * env.dt  # half the velocity scale along +x
    forward = features(state, action, _shifted(state, jnp.array([step_x, 0.0, 0.0])))
    backward = features(state, action, _shifted(state, jnp.array([-step_x, 0.0, 0.0])))
    chex.assert_trees_all_close(forward[:2], jnp.array([0.5, 0.0]), atol=1e-5)
    chex.assert_trees_all_close(backward[:2], jnp.array([-0.5, 0.0]), atol=1e-5)


def test_locomotion_safety_penalises_tilt_and_falls():
    env = _task("locomotion")[0]
    features = jax.jit(env.features)
    state, action = _locomotion_state(), jnp.zeros(env.action_size)
    safety = env.feature_names.index("safety")
    upright = features(state, action, _tilted(state, 0.0))[safety]
    tilted = features(state, action, _tilted(state, jnp.pi / 4))[safety]
    fallen = features(state, action, _shifted(state, jnp.array([0.0, 0.0, -0.45])))[safety]
    chex.assert_trees_all_close((upright, tilted, fallen), (0.0, -0.5, -1.0), atol=1e-4)


def test_locomotion_success_is_displacement_along_the_users_direction():
    env = _task("locomotion")[0]
    state = _shifted(_locomotion_state(), jnp.array([1.5, 0.2, 0.0]))
    plus_x, minus_x, plus_y = (
        env.weights({"velocity_x": 1.0}),
        env.weights({"velocity_x": -1.0}),
        env.weights({"velocity_y": 1.0}),
    )
    success = jax.jit(jax.vmap(env.success, in_axes=(None, 0)))
    np.testing.assert_array_equal(
        success(state, jnp.stack([plus_x, minus_x, plus_y])), [True, False, False]
    )


@pytest.mark.slow  # 28 s in the fast tier on 2 cores (2026-12-07)
def test_locomotion_behaviour_policy_walks_in_many_directions():
    env = _task("locomotion")[0]
    start, final, features = _behaviour_rollout("locomotion", num_steps=50)
    _check_features(env, features)
    displacement = jax.vmap(env.position)(final) - start  # f32[B, 2]
    distance = jnp.linalg.norm(displacement, axis=-1)
    assert jnp.median(distance) > 0.5, distance
    assert jnp.all(displacement.std(axis=0) > 0.4), displacement.std(axis=0)
    quadrant = (displacement[:, 0] > 0).astype(int) * 2 + (displacement[:, 1] > 0)
    assert len(np.unique(np.asarray(quadrant[distance > 0.3]))) >= 3
