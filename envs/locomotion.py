"""locomotion: Brax's ant, with users who want it to walk in different directions.

Geometry: Brax's ant (``brax/envs/assets/ant.xml``) — a spherical torso (radius 0.25 m) on four
two-link legs, eight hinge motors, on a flat floor — with Brax's own per-backend system tweaks
(``brax/envs/ant.py``; the default backend is ``positional``: a 5 ms timestep, 10 substeps per
env step, so ``dt = 0.05 s``, and motor gear 200). The ant starts at its rest pose at the origin
with uniform noise of ±0.1 on the joint positions and N(0, 0.1²) joint velocities, as in Brax.

Action ``f32[8]`` in ``[-1, 1]``: motor torques, in the asset's actuator order
(hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3).

Observation ``f32[30]``: Brax's ant's 27 — joint positions without the torso's x and y (torso
height, torso quaternion, eight hinge angles), then all joint velocities (torso linear and
angular velocity, eight hinge velocities) — then the torso's x and y displacement over the last
step / (dt * 3 m/s) and whether the episode has failed (0 or 1). Every feature is a function of
the step's action and the observation it led to (``features_from_transition``).

Features, per step, each in ``[-1, 1]`` (see ``envs/base.py`` for the convention):

* ``velocity_x``, ``velocity_y``: the torso's displacement over the step divided by ``dt``, in
  units of 3 m/s, clipped to ``[-1, 1]``. Signed: users who want +x, -x, +y, -y have weights
  (1, 0), (-1, 0), (0, 1), (0, -1) on these two features;
* ``safety``: ``-tilt / 90°`` clipped to ``[-1, 0]``, where tilt is the angle between the torso's
  z-axis and the world's vertical, and -1 whenever the ant is unhealthy (torso height outside
  ``[0.2, 1.0]`` m, as in Brax);
* ``comfort``: ``-mean(action ** 2)``, the control effort.

**Failure.** An unhealthy ant (Brax's criterion) has fallen: unlike Brax the episode does not end.
From the next step on it is in an absorbing failure state until its fixed horizon — the world is
frozen and every step's features are ``velocity = 0``, ``safety = comfort = -1`` — so falling early
never pays for a user who weighs safety. ``done`` is never set. Success for a user: the ant did
not fall, and the torso's final displacement from its start, projected on the direction of that
user's (velocity_x, velocity_y) weights, exceeds ``success_distance`` (1 m by default).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
from brax import math
from brax.envs.base import State
from brax.io import mjcf
from etils import epath

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv

VELOCITY_SCALE = 3.0
HEALTHY_Z_RANGE = (0.2, 1.0)
RESET_NOISE = 0.1
NUM_LEGS = 4


def ant_system(backend: str):
    """Brax's ant system and substeps per env step, with Brax's per-backend tweaks."""
    sys = mjcf.load(epath.resource_path("brax") / "envs/assets/ant.xml")
    n_frames = 5
    if backend in ("spring", "positional"):
        sys = sys.tree_replace({"opt.timestep": 0.005})
        n_frames = 10
    if backend == "mjx":
        sys = sys.tree_replace(
            {
                "opt.solver": mujoco.mjtSolver.mjSOL_NEWTON,
                "opt.disableflags": mujoco.mjtDisableBit.mjDSBL_EULERDAMP,
                "opt.iterations": 1,
                "opt.ls_iterations": 4,
            }
        )
    if backend == "positional":
        sys = sys.replace(
            actuator=sys.actuator.replace(gear=200 * jnp.ones_like(sys.actuator.gear))
        )
    return sys, n_frames


class Locomotion(FeatureEnv):
    """Brax's ant with directional velocity features (see the module docstring)."""

    def __init__(
        self,
        episode_length: int = 100,
        success_distance: float = 1.0,
        backend: str = "positional",
        **kwargs,
    ):
        sys, n_frames = ant_system(backend)
        kwargs.setdefault("n_frames", n_frames)
        super().__init__(sys=sys, backend=backend, **kwargs)
        self.episode_length = episode_length
        self.success_distance = success_distance
        self.feature_names = ("velocity_x", "velocity_y", "safety", "comfort")
        self.failure_features = jnp.array([0.0, 0.0, -1.0, -1.0], jnp.float32)

    # --- world -------------------------------------------------------------------------------
    def _healthy(self, pipeline_state) -> jax.Array:
        z = pipeline_state.x.pos[0, 2]
        return (z >= HEALTHY_Z_RANGE[0]) & (z <= HEALTHY_Z_RANGE[1])

    def _obs(self, pipeline_state, step_velocity, failed) -> jax.Array:
        """Brax's ant observation, the step's torso velocity (/ 3 m/s) and the failure flag."""
        return jnp.concatenate(
            [
                pipeline_state.q[2:],
                pipeline_state.qd,
                step_velocity / VELOCITY_SCALE,
                failed.astype(jnp.float32)[None],
            ]
        )

    def reset(self, rng: jax.Array) -> State:
        k_q, k_qd = jax.random.split(rng)
        # Noise on the hinges only: Brax also perturbs the torso's height and (unnormalised)
        # quaternion, which in the positional backend sinks the feet into the floor and makes
        # about a quarter of the episodes bounce the ant out of its healthy range at once.
        hinge_noise = jax.random.uniform(
            k_q, (self.sys.q_size() - 7,), minval=-RESET_NOISE, maxval=RESET_NOISE
        )
        q = self.sys.init_q.at[7:].add(hinge_noise)
        qd = RESET_NOISE * jax.random.normal(k_qd, (self.sys.qd_size(),))
        pipeline_state = self.pipeline_init(q, qd)
        failed = jnp.zeros((), bool)
        info = self._init_info(
            {
                "t": jnp.zeros((), jnp.int32),
                "start_xy": pipeline_state.x.pos[0, :2],
                "failed": failed,
            }
        )
        zero = jnp.zeros(())
        obs = self._obs(pipeline_state, jnp.zeros(2), failed)
        return State(pipeline_state, obs, zero, zero, {}, info)

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(action, -1.0, 1.0)
        pipeline_state = self.pipeline_step(state.pipeline_state, action)
        failed = state.info["failed"] | ~self._healthy(pipeline_state)
        info = {**state.info, "t": state.info["t"] + 1, "failed": failed}
        velocity = (pipeline_state.x.pos[0, :2] - state.pipeline_state.x.pos[0, :2]) / self.dt
        next_state = state.replace(
            pipeline_state=pipeline_state,
            obs=self._obs(pipeline_state, velocity, failed),
            info=info,
        )
        return self._absorb(state, self._finish_step(state, action, next_state))

    # --- features ----------------------------------------------------------------------------
    def features(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        p0, p1 = state.pipeline_state.x.pos[0, :2], next_state.pipeline_state.x.pos[0, :2]
        velocity = jnp.clip((p1 - p0) / self.dt / VELOCITY_SCALE, -1.0, 1.0)
        upright = -jnp.clip(self.tilt(next_state.pipeline_state) / (jnp.pi / 2), 0.0, 1.0)
        safety = jnp.where(self._healthy(next_state.pipeline_state), upright, -1.0)
        comfort = -jnp.mean(jnp.square(jnp.clip(action, -1.0, 1.0)))
        return jnp.concatenate([velocity, jnp.stack([safety, comfort])])

    def features_from_transition(
        self, prev_obs: jax.Array, action: jax.Array, obs: jax.Array
    ) -> jax.Array:
        """f32[4] features of one step from the action and the observations around it: the
        same numbers as :meth:`features` computes from the physics state."""
        velocity = jnp.clip(obs[27:29], -1.0, 1.0)
        z, quat = obs[0], obs[1:5]
        up = math.rotate(jnp.array([0.0, 0.0, 1.0]), quat / jnp.linalg.norm(quat))
        tilt = jnp.arccos(jnp.clip(up[2], -1.0, 1.0))
        upright = -jnp.clip(tilt / (jnp.pi / 2), 0.0, 1.0)
        healthy = (z >= HEALTHY_Z_RANGE[0]) & (z <= HEALTHY_Z_RANGE[1])
        safety = jnp.where(healthy, upright, -1.0)
        comfort = -jnp.mean(jnp.square(jnp.clip(action, -1.0, 1.0)))
        phi = jnp.concatenate([velocity, jnp.stack([safety, comfort])])
        # A step that starts in the failure state is an absorbing step.
        return jnp.where(prev_obs[29] > 0.5, self.failure_features, phi)

    def tilt(self, pipeline_state) -> jax.Array:
        """Angle (rad) between the torso's z-axis and the world's vertical."""
        up = math.rotate(jnp.array([0.0, 0.0, 1.0]), pipeline_state.x.rot[0])
        return jnp.arccos(jnp.clip(up[2], -1.0, 1.0))

    @property
    def default_weights(self) -> jax.Array:
        return self.weights({"velocity_x": 1.0, "safety": 0.5, "comfort": 0.1})

    def position(self, state: State) -> jax.Array:
        return state.pipeline_state.x.pos[0, :2]

    def success(self, final_state: State, weights: jax.Array) -> jax.Array:
        """The ant did not fall and its torso moved at least ``success_distance`` along the
        user's (x, y) direction."""
        direction = weights[:2] / (jnp.linalg.norm(weights[:2]) + 1e-8)
        displacement = self.position(final_state) - final_state.info["start_xy"]
        moved = jnp.dot(displacement, direction) > self.success_distance
        return moved & ~final_state.info["failed"]

    # --- behaviour policies ------------------------------------------------------------------
    @property
    def behaviour_policy(self) -> BehaviourPolicy:
        """Central pattern generators with noise.

        Each episode draws a gait frequency, per-joint amplitudes, phases and offsets, and an
        action-noise scale; the torque on joint j at time t is
        ``offset_j + amplitude_j * sin(2 pi f t + phase_j) + noise``.
        """
        dt = self.dt
        num_act = self.sys.act_size()

        def init(key):
            ks = jax.random.split(key, 5)
            return {
                "frequency": jax.random.uniform(ks[0], (), minval=1.0, maxval=4.0),
                "amplitude": jax.random.uniform(ks[1], (num_act,), minval=0.3, maxval=1.0),
                "phase": jax.random.uniform(ks[2], (num_act,), maxval=2 * jnp.pi),
                "offset": jax.random.uniform(ks[3], (num_act,), minval=-0.3, maxval=0.3),
                "noise": jax.random.uniform(ks[4], (), maxval=0.3),
            }

        def act(params, state, key):
            t = state.info["t"] * dt
            wave = jnp.sin(2 * jnp.pi * params["frequency"] * t + params["phase"])
            action = params["offset"] + params["amplitude"] * wave
            action = action + params["noise"] * jax.random.normal(key, (num_act,))
            return jnp.clip(action, -1.0, 1.0)

        return BehaviourPolicy(init=init, act=act)
