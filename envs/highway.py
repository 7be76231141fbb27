"""highway: an ego car among scripted IDM cars on a multi-lane ring road.

Geometry (metres, seconds): ``num_lanes`` lanes of width 3.75 m, lane k centred at
``y_k = (k - (num_lanes - 1) / 2) * 3.75``, so the road spans ``|y| <= num_lanes * 3.75 / 2``.
The road is a ring of length ``ring_length`` (200 m): x grows without bound, but relative
longitudinal positions are taken modulo the ring and wrapped to ``[-L/2, L/2)``, so the traffic
always stays around the ego. Every car is a 5 m x 2 m box; two cars overlap laterally when their
centres are less than 2 m apart in y, and collide when they also overlap in x (|dx| < 5 m).

Ego: a point-mass car (1 kg) on two slide joints, x longitudinal and y lateral, no gravity, no
contacts, driven by two velocity servos whose gain makes them reach their set-point within one
physics substep (``kv * timestep / mass = 1``, exact in every Brax backend), so one env step
(``dt = 0.1 s``) reaches the velocities each step sets:

* ``action[0]`` in ``[-1, 1]`` is the longitudinal acceleration, ``action[0] * 4 m/s^2`` when
  positive and ``action[0] * 8 m/s^2`` when negative; the speed stays within ``[0, 35] m/s``;
* ``action[1]`` in ``[-1, 1]`` commands the lateral velocity, ``action[1] * 2.5 m/s``, which the ego
  approaches at most at 8 m/s^2 (tyre grip, about 0.8 g: 0.8 m/s per step), so each component of the
  acceleration stays within ``[-8, 8] m/s^2``. With an instant lateral command a policy could swerve
  at 50 m/s^2 every step, which the behaviour data reaches in about 1 step in 1000, and a learned
  reward extrapolated there: on a driving population one of three VPL seeds' policies learned to
  wiggle at that acceleration for every user (README, "BTL, VPL and the oracle on a driving
  population").

The ego starts at x = 0 in a random lane at a random speed in ``[10, 30] m/s``.

Scripted cars (``num_cars``, default 6) are kinematic and live in ``state.info``. Each keeps its
lane and follows the intelligent driver model (IDM; Treiber, Hennecke & Helbing, 2000) with its
own desired speed (20-30 m/s) and time headway (1-2 s), reacting to the nearest vehicle ahead that
overlaps its lane laterally — including the ego, so the ego can force the car behind it to brake.
Within a step the ego moves first and the cars react to its new position. Cars start spread around
the ring, at least 20 m ahead of and 40 m behind the ego, at up to their desired speed.

Observation ``f32[8 + 3 * num_cars]``: ego lateral position / lane width, ego longitudinal speed /
35 m/s, ego lateral speed / 2.5 m/s, offset from the nearest lane centre / half a lane width, the
ego's 2-D acceleration over the last step / 8 m/s^2, the hardest braking the ego forced on a car
behind it in the last step / 8 m/s^2, whether the episode has failed (0 or 1), then per car
relative x (wrapped) / (L/2), relative y / lane width, relative speed / 35 m/s. Every feature is
a function of the observations before and after a step (``features_from_transition``): comfort's
jerk needs the previous step's acceleration, courtesy the follower's braking.

Features, per step, each in ``[-1, 1]`` (see ``envs/base.py`` for the convention):

* ``safety``: minus the worst proximity over the cars. A car's proximity is the product of a
  longitudinal term ``clip((d_safe - gap) / d_safe, 0, 1)`` — gap is the bumper-to-bumper
  distance, ``d_safe = 2 m + 1 s * v_rear`` with ``v_rear`` the speed of whichever of the two is
  behind — and a lateral term, 1 when the cars overlap laterally (|dy| < 2 m) falling linearly to
  0 at |dy| = 3 m. 0 when no car is within a safe distance, -1 at a collision.
* ``efficiency``: ego longitudinal speed / 35 m/s, in ``[0, 1]``.
* ``law``: ``-(0.25 * lane + 0.35 * speeding + 0.4 * off_road)`` in ``[-1, 0]``, where ``lane`` is
  the distance from the nearest lane centre / half a lane width (clipped to 1), ``speeding`` is
  ``clip((v - 30 m/s) / 5 m/s, 0, 1)`` above the 30 m/s limit, and ``off_road`` is 1 when the ego's
  centre is outside the road.
* ``courtesy``: minus the hardest braking of any car whose leader is the ego, divided by the cars'
  maximum braking 8 m/s^2. Cars never exceed their desired speed, so an IDM car only brakes
  because of the vehicle ahead: this is the braking the ego forces on its follower.
* ``comfort``: ``-(0.5 * clip(|a| / 8 m/s^2, 0, 1) + 0.5 * clip(|j| / 80 m/s^3, 0, 1))``, where
  ``a`` is the ego's 2-D acceleration over the step (from its velocity change) and
  ``j = (a - a_prev) / dt`` its jerk (``a_prev`` is kept in ``info["ego_accel"]``).

**Failure.** A collision, or the ego more than 1 m off the road, fails the episode
(``info["failed"]`` latches). From the next step on the episode is in an absorbing failure state
until its fixed horizon: the world is frozen and every step's features are the worst ones,
``safety = law = courtesy = comfort = -1`` and ``efficiency = 0`` (standing still), so crashing
early never pays for a user who weighs safety. ``done`` is never set. Success for any user: the
episode did not fail.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs.base import State
from brax.io import mjcf

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv

_XML = """
<mujoco model="highway">
  <option timestep="{timestep}" gravity="0 0 0"/>
  <worldbody>
    <body name="ego" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" limited="false"/>
      <joint name="y" type="slide" axis="0 1 0" limited="false"/>
      <geom name="ego" type="box" size="2.5 1 0.75" mass="1" contype="0" conaffinity="0"
            rgba="0.2 0.4 0.9 1"/>
    </body>
  </worldbody>
  <actuator>
    <velocity joint="x" kv="{kv}" ctrlrange="0 {max_speed}" ctrllimited="true"/>
    <velocity joint="y" kv="{kv}" ctrlrange="-{lateral_speed} {lateral_speed}"
              ctrllimited="true"/>
  </actuator>
</mujoco>
"""

LANE_WIDTH = 3.75
CAR_LENGTH = 5.0
CAR_WIDTH = 2.0
MAX_SPEED = 35.0
SPEED_LIMIT = 30.0
MAX_ACCEL = 4.0
MAX_BRAKE = 8.0
LATERAL_SPEED = 2.5
MAX_LATERAL_ACCEL = 8.0
OFF_ROAD_MARGIN = 1.0
# Safety: safe bumper gap = SAFE_GAP + SAFE_HEADWAY * speed of the rear car; lateral fade-out.
SAFE_GAP = 2.0
SAFE_HEADWAY = 1.0
LATERAL_MARGIN = 1.0
# Law: weights of lane keeping, speeding and being off the road (they sum to 1).
LAW_LANE, LAW_SPEEDING, LAW_OFF_ROAD = 0.25, 0.35, 0.4
# Comfort: scales of the acceleration and jerk terms.
ACCEL_SCALE = 8.0
JERK_SCALE = 80.0
# IDM parameters shared by the scripted cars (desired speed and headway are per car).
IDM_ACCEL = 1.5
IDM_COMFORT_BRAKE = 2.0
IDM_MIN_GAP = 2.0
IDM_DELTA = 4.0
CAR_SPEED_RANGE = (20.0, 30.0)
CAR_HEADWAY_RANGE = (1.0, 2.0)
# Ego entries at the front of the observation (the cars' follow).
_EGO_OBS = 8
# Free road kept around the ego at reset: ahead of it, and behind it (cars behind may be faster).
CLEAR_AHEAD, CLEAR_BEHIND = 20.0, 40.0


def lane_centres(num_lanes: int) -> jax.Array:
    """f32[num_lanes]: lateral positions of the lane centres, symmetric about y = 0."""
    return (jnp.arange(num_lanes) - (num_lanes - 1) / 2) * LANE_WIDTH


def wrap(dx: jax.Array, ring_length: float) -> jax.Array:
    """Longitudinal offsets on the ring, wrapped to ``[-L/2, L/2)``."""
    return jnp.mod(dx + ring_length / 2, ring_length) - ring_length / 2


def idm_accel(
    v: jax.Array, desired_speed: jax.Array, headway: jax.Array, gap: jax.Array, dv: jax.Array
) -> jax.Array:
    """IDM acceleration (m/s^2) at speed ``v`` behind a leader ``gap`` metres ahead (bumper to
    bumper) that is ``dv = v - v_leader`` slower; ``gap = inf`` means a free road."""
    s_star = IDM_MIN_GAP + jnp.maximum(
        0.0, v * headway + v * dv / (2 * jnp.sqrt(IDM_ACCEL * IDM_COMFORT_BRAKE))
    )
    interaction = jnp.where(jnp.isinf(gap), 0.0, (s_star / jnp.maximum(gap, 0.1)) ** 2)
    accel = IDM_ACCEL * (1 - (v / desired_speed) ** IDM_DELTA - interaction)
    return jnp.clip(accel, -MAX_BRAKE, IDM_ACCEL)


class Highway(FeatureEnv):
    """Ego car among IDM cars on a ring road (see the module docstring)."""

    def __init__(
        self,
        num_lanes: int = 3,
        num_cars: int = 6,
        ring_length: float = 200.0,
        episode_length: int = 50,
        backend: str = "positional",
        **kwargs,
    ):
        if num_lanes < 1 or num_cars < 1:
            raise ValueError(f"need at least one lane and one car, got {num_lanes}, {num_cars}")
        if ring_length < CLEAR_AHEAD + CLEAR_BEHIND + num_cars * 3 * CAR_LENGTH:
            raise ValueError(f"ring_length {ring_length} is too short for {num_cars} cars")
        timestep, n_frames = 0.025, 4  # dt = 0.1 s per env step
        sys = mjcf.loads(
            _XML.format(
                timestep=timestep,
                kv=1.0 / timestep,  # mass 1 kg: the servo reaches its set-point in one substep
                max_speed=MAX_SPEED,
                lateral_speed=LATERAL_SPEED,
            )
        )
        super().__init__(sys=sys, backend=backend, n_frames=n_frames, **kwargs)
        self.num_lanes = num_lanes
        self.num_cars = num_cars
        self.ring_length = ring_length
        self.episode_length = episode_length
        self.lanes = lane_centres(num_lanes)
        self.road_half_width = num_lanes * LANE_WIDTH / 2
        self.feature_names = ("safety", "efficiency", "law", "courtesy", "comfort")
        self.failure_features = jnp.array([-1.0, 0.0, -1.0, -1.0, -1.0], jnp.float32)

    # --- world -------------------------------------------------------------------------------
    def lane_offset(self, y: jax.Array) -> jax.Array:
        """Signed offset (m) of lateral position ``y`` from the nearest lane centre."""
        nearest = self.lanes[jnp.argmin(jnp.abs(self.lanes - y))]
        return y - nearest

    def _move_cars(self, info: dict, ego_q: jax.Array, ego_v: jax.Array) -> dict:
        """Advances the IDM cars one step behind their leaders (other cars and the ego).

        Returns the updated ``car_x``, ``car_v``, ``car_accel`` (the applied acceleration) and
        ``ego_leads`` (bool[N]: the car's leader is the ego).
        """
        x, y, v = info["car_x"], info["car_y"], info["car_v"]
        # Vehicles that may lead: the N cars, then the ego.
        lead_x = jnp.append(x, ego_q[0])
        lead_y = jnp.append(y, ego_q[1])
        lead_v = jnp.append(v, ego_v)
        gap = jnp.mod(lead_x[None, :] - x[:, None], self.ring_length) - CAR_LENGTH  # [N, N+1]
        same_lane = jnp.abs(lead_y[None, :] - y[:, None]) < CAR_WIDTH
        not_self = ~jnp.eye(self.num_cars, self.num_cars + 1, dtype=bool)
        gap = jnp.where(same_lane & not_self, gap, jnp.inf)
        leader = jnp.argmin(gap, axis=1)
        leader_gap = jnp.min(gap, axis=1)
        accel = idm_accel(
            v, info["car_desired_speed"], info["car_headway"], leader_gap, v - lead_v[leader]
        )
        new_v = jnp.maximum(v + accel * self.dt, 0.0)
        return {
            "car_x": x + 0.5 * (v + new_v) * self.dt,
            "car_v": new_v,
            "car_accel": (new_v - v) / self.dt,
            "ego_leads": (leader == self.num_cars) & jnp.isfinite(leader_gap),
        }

    def _relative(self, pipeline_state, info) -> tuple[jax.Array, jax.Array]:
        """Cars' positions relative to the ego: dx (wrapped) and dy, f32[N] each."""
        dx = wrap(info["car_x"] - pipeline_state.q[0], self.ring_length)
        return dx, info["car_y"] - pipeline_state.q[1]

    def _collided(self, pipeline_state, info) -> jax.Array:
        dx, dy = self._relative(pipeline_state, info)
        return jnp.any((jnp.abs(dx) < CAR_LENGTH) & (jnp.abs(dy) < CAR_WIDTH))

    def _off_road(self, pipeline_state, margin: float) -> jax.Array:
        return jnp.abs(pipeline_state.q[1]) > self.road_half_width + margin

    def _obs(self, pipeline_state, info) -> jax.Array:
        y, (vx, vy) = pipeline_state.q[1], pipeline_state.qd
        dx, dy = self._relative(pipeline_state, info)
        forced = jnp.where(info["ego_leads"], jnp.maximum(-info["car_accel"], 0.0), 0.0)
        ego = jnp.stack(
            [
                y / LANE_WIDTH,
                vx / MAX_SPEED,
                vy / LATERAL_SPEED,
                self.lane_offset(y) / (LANE_WIDTH / 2),
                info["ego_accel"][0] / ACCEL_SCALE,
                info["ego_accel"][1] / ACCEL_SCALE,
                jnp.max(forced) / MAX_BRAKE,
                info["failed"].astype(jnp.float32),
            ]
        )
        cars = jnp.stack(
            [dx / (self.ring_length / 2), dy / LANE_WIDTH, (info["car_v"] - vx) / MAX_SPEED],
            axis=-1,
        )
        return jnp.concatenate([ego, cars.reshape(-1)])

    def reset(self, rng: jax.Array) -> State:
        k_lane, k_speed, k_cars = jax.random.split(rng, 3)
        k_car_x, k_car_lane, k_car_speed, k_headway, k_init = jax.random.split(k_cars, 5)
        n = self.num_cars
        ego_y = self.lanes[jax.random.randint(k_lane, (), 0, self.num_lanes)]
        ego_v = jax.random.uniform(k_speed, (), minval=10.0, maxval=30.0)
        q, qd = jnp.zeros(2).at[1].set(ego_y), jnp.zeros(2).at[0].set(ego_v)
        pipeline_state = self.pipeline_init(q, qd)
        # Cars in equal slots of the free part of the ring, jittered within their slot.
        slot = (self.ring_length - CLEAR_AHEAD - CLEAR_BEHIND) / n
        jitter = jax.random.uniform(k_car_x, (n,), maxval=slot - 3 * CAR_LENGTH)
        car_x = CLEAR_AHEAD + slot * jnp.arange(n) + jitter
        desired = jax.random.uniform(
            k_car_speed, (n,), minval=CAR_SPEED_RANGE[0], maxval=CAR_SPEED_RANGE[1]
        )
        info = self._init_info(
            {
                "t": jnp.zeros((), jnp.int32),
                "car_x": car_x,
                "car_y": self.lanes[jax.random.randint(k_car_lane, (n,), 0, self.num_lanes)],
                "car_v": desired * jax.random.uniform(k_init, (n,), minval=0.7, maxval=1.0),
                "car_desired_speed": desired,
                "car_headway": jax.random.uniform(
                    k_headway, (n,), minval=CAR_HEADWAY_RANGE[0], maxval=CAR_HEADWAY_RANGE[1]
                ),
                "car_accel": jnp.zeros(n),
                "ego_leads": jnp.zeros(n, dtype=bool),
                "ego_accel": jnp.zeros(2),
                "failed": jnp.zeros((), dtype=bool),
            }
        )
        zero = jnp.zeros(())
        return State(pipeline_state, self._obs(pipeline_state, info), zero, zero, {}, info)

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(action, -1.0, 1.0)
        ps0 = state.pipeline_state
        accel = action[0] * jnp.where(action[0] > 0, MAX_ACCEL, MAX_BRAKE)
        target_speed = jnp.clip(ps0.qd[0] + accel * self.dt, 0.0, MAX_SPEED)
        max_change = MAX_LATERAL_ACCEL * self.dt
        lateral = ps0.qd[1] + jnp.clip(
            action[1] * LATERAL_SPEED - ps0.qd[1], -max_change, max_change
        )
        pipeline_state = self.pipeline_step(ps0, jnp.stack([target_speed, lateral]))
        cars = self._move_cars(state.info, pipeline_state.q, pipeline_state.qd[0])
        info = {
            **state.info,
            **cars,
            "t": state.info["t"] + 1,
            "ego_accel": (pipeline_state.qd - ps0.qd) / self.dt,
        }
        failed = self._collided(pipeline_state, info) | self._off_road(
            pipeline_state, OFF_ROAD_MARGIN
        )
        info["failed"] = state.info["failed"] | failed
        next_state = state.replace(
            pipeline_state=pipeline_state, obs=self._obs(pipeline_state, info), info=info
        )
        return self._absorb(state, self._finish_step(state, action, next_state))

    # --- features ----------------------------------------------------------------------------
    def features(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        return self.features_from_transition(state.obs, action, next_state.obs)

    def features_from_transition(
        self, prev_obs: jax.Array, action: jax.Array, obs: jax.Array
    ) -> jax.Array:
        """f32[5] features of one step from the observations around it (module docstring)."""
        del action  # the step's consequences are all in the observation it led to
        y, vx = obs[0] * LANE_WIDTH, obs[1] * MAX_SPEED
        cars = obs[_EGO_OBS:].reshape(-1, 3)
        dx, dy = cars[:, 0] * (self.ring_length / 2), cars[:, 1] * LANE_WIDTH
        car_v = cars[:, 2] * MAX_SPEED + vx

        v_rear = jnp.where(dx > 0, vx, car_v)
        safe_gap = SAFE_GAP + SAFE_HEADWAY * v_rear
        gap = jnp.abs(dx) - CAR_LENGTH
        longitudinal = jnp.clip((safe_gap - gap) / safe_gap, 0.0, 1.0)
        lateral = jnp.clip((CAR_WIDTH + LATERAL_MARGIN - jnp.abs(dy)) / LATERAL_MARGIN, 0.0, 1.0)
        safety = -jnp.max(longitudinal * lateral)

        efficiency = jnp.clip(vx / MAX_SPEED, 0.0, 1.0)

        lane = jnp.clip(jnp.abs(obs[3]), 0.0, 1.0)
        speeding = jnp.clip((vx - SPEED_LIMIT) / (MAX_SPEED - SPEED_LIMIT), 0.0, 1.0)
        off_road = (jnp.abs(y) > self.road_half_width).astype(jnp.float32)
        law = -(LAW_LANE * lane + LAW_SPEEDING * speeding + LAW_OFF_ROAD * off_road)

        courtesy = -jnp.clip(obs[6], 0.0, 1.0)

        accel = obs[4:6] * ACCEL_SCALE
        jerk = (accel - prev_obs[4:6] * ACCEL_SCALE) / self.dt
        comfort = -(
            0.5 * jnp.clip(jnp.linalg.norm(accel) / ACCEL_SCALE, 0.0, 1.0)
            + 0.5 * jnp.clip(jnp.linalg.norm(jerk) / JERK_SCALE, 0.0, 1.0)
        )
        phi = jnp.stack([safety, efficiency, law, courtesy, comfort])
        # A step that starts in the failure state is an absorbing step.
        return jnp.where(prev_obs[7] > 0.5, self.failure_features, phi)

    @property
    def default_weights(self) -> jax.Array:
        return self.weights(
            {"safety": 1.0, "efficiency": 0.5, "law": 0.5, "courtesy": 0.3, "comfort": 0.1}
        )

    def position(self, state: State) -> jax.Array:
        return state.pipeline_state.q

    def success(self, final_state: State, weights: jax.Array) -> jax.Array:
        """The episode did not fail (no collision, never off the road), for every user."""
        del weights
        return ~final_state.info["failed"]

    # --- behaviour policies ------------------------------------------------------------------
    @property
    def behaviour_policy(self) -> BehaviourPolicy:
        """Adaptive-cruise and lane-tracking controllers with noise.

        Each episode draws a target speed (10-35 m/s, so some drivers speed), a following time
        headway (0.2-2.5 s: tailgaters to cautious drivers), whether the driver watches the car
        ahead at all (85 %), two target lanes and a switch time (a mid-episode lane change in most
        episodes), whether it checks the target lane is free before changing (60 %), a lateral
        gain, a lane-keeping sloppiness (a slow weave around the lane centre), and an action-noise
        scale. The mix covers cautious, aggressive, speeding, tailgating, weaving, cutting-in
        and lane-changing drivers, with occasional collisions and departures from the road.
        """
        lanes, num_lanes = self.lanes, self.num_lanes
        horizon, ring, dt = self.episode_length, self.ring_length, self.dt

        def init(key):
            ks = jax.random.split(key, 12)
            return {
                "speed": jax.random.uniform(ks[0], (), minval=10.0, maxval=MAX_SPEED),
                "headway": jax.random.uniform(ks[1], (), minval=0.2, maxval=2.5),
                "attentive": jax.random.uniform(ks[2]) < 0.85,
                "lanes": jax.random.randint(ks[3], (2,), 0, num_lanes),
                "switch": jax.random.randint(ks[4], (), horizon // 5, horizon + horizon // 4),
                "polite": jax.random.uniform(ks[5]) < 0.6,
                "lateral_gain": jax.random.uniform(ks[6], (), minval=0.5, maxval=3.0),
                "speed_gain": jax.random.uniform(ks[7], (), minval=0.2, maxval=1.5),
                "weave": jax.random.uniform(ks[8], ()) ** 3 * LANE_WIDTH,
                "weave_phase": jax.random.uniform(ks[9], (), maxval=2 * jnp.pi),
                "noise": 0.4 * jax.random.uniform(ks[10], ()) ** 2,
                "noise_kind": jax.random.uniform(ks[11]),
            }

        def act(params, state, key):
            ps, info = state.pipeline_state, state.info
            y, vx = ps.q[1], ps.qd[0]
            dx = wrap(info["car_x"] - ps.q[0], ring)
            dy = info["car_y"] - y

            # Longitudinal: cruise at the target speed, follow the car ahead at the headway.
            ahead = (jnp.abs(dy) < CAR_WIDTH + 0.5) & (dx > 0)
            gap = jnp.where(ahead, dx - CAR_LENGTH, jnp.inf)
            lead = jnp.argmin(gap)
            accel_free = params["speed_gain"] * (params["speed"] - vx)
            accel_follow = 0.5 * (gap[lead] - 2.0 - params["headway"] * vx) + (
                info["car_v"][lead] - vx
            )
            follow = params["attentive"] & jnp.isfinite(gap[lead])
            accel = jnp.where(follow, jnp.minimum(accel_free, accel_follow), accel_free)
            throttle = accel / jnp.where(accel > 0, MAX_ACCEL, MAX_BRAKE)

            # Lateral: track the target lane (kept if a polite driver sees it occupied) + weave.
            t = info["t"]
            target = lanes[jnp.where(t < params["switch"], params["lanes"][0], params["lanes"][1])]
            current = lanes[jnp.argmin(jnp.abs(lanes - y))]
            occupied = jnp.any(
                (jnp.abs(info["car_y"] - target) < CAR_WIDTH) & (dx > -25.0) & (dx < 20.0)
            )
            target = jnp.where(params["polite"] & occupied & (target != current), current, target)
            target = target + params["weave"] * jnp.sin(
                2 * jnp.pi * t * dt / 3.0 + params["weave_phase"]
            )
            steer = params["lateral_gain"] * (target - y) / LATERAL_SPEED

            action = jnp.clip(jnp.stack([throttle, steer]), -1.0, 1.0)
            # Noise: white (jittery) or, for half of the drivers, only on the throttle.
            noise = params["noise"] * jax.random.normal(key, (2,))
            noise = jnp.where(params["noise_kind"] < 0.5, noise, noise * jnp.array([1.0, 0.0]))
            return jnp.clip(action + noise, -1.0, 1.0)

        return BehaviourPolicy(init=init, act=act)
