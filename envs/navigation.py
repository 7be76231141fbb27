"""navigation: a point robot in a walled 2-D arena with goals, a hazard and a moving bystander.

Geometry (metres): the arena is ``[-1, 1]^2`` (walls are the slide joints' limits). The robot is a
velocity-servoed point mass (``ctrl`` = desired velocity in m/s, at most 1 m/s per axis) that
starts near the centre. ``num_goals`` goals sit on a circle of radius 0.6, the first at the top,
the rest evenly spaced counter-clockwise (2 goals: top and bottom; 4: top, left, bottom, right).
A circular hazard (radius 0.15) lies on the straight route to the top goal; a bystander patrols a
horizontal line below the centre (one lap per episode, random phase) and keeps a personal space
of radius 0.2. Goals lie well inside the walls, so that going *past* a goal is possible and
wrong: a goal is a place to reach, not a direction.

Observation ``f32[8]``: robot position, robot velocity, bystander position, bystander velocity.

Features, per step, each in ``[-1, 1]`` (see ``envs/base.py`` for the convention):

* ``progress_<g>`` for each goal g in a, b, c, …: how far along the way from the centre to goal g
  the robot is, ``clip(1 - d_g / 0.6, -1, 1)`` — 1 at the goal, 0 at the centre's distance,
  negative beyond it. It is a property of the *state* (summed over a segment it rewards getting
  to the goal early and staying there), so a reward learned from observations can represent it;
  a per-step decrease of distance would telescope over a segment, and a state-based reward model
  fitted to it extrapolates "keep moving that way" past the goal;
* ``safety``: ``-clip((r_hazard - d_hazard) / r_hazard, 0, 1)`` — 0 outside the hazard, -1 at its
  centre;
* ``courtesy``: the same shape for the bystander's personal space;
* ``comfort``: ``-mean(action ** 2)``, the control effort.

Success for a user: the episode ends within ``goal_radius`` of the goal that user weights most.

False beliefs: every feature is a function of the observations before and after a step, the
action and the *world* (:class:`NavigationWorld`: where the hazard is, and where the bystander is
relative to where it is observed). ``features_from_obs`` with a user's believed world gives the
features that user perceives (see :mod:`vpl_jax.data.beliefs`).
"""

from __future__ import annotations

import string
from collections.abc import Callable

import jax
import jax.numpy as jnp
from brax.envs.base import State
from brax.io import mjcf
from flax import struct

from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv

_XML = """
<mujoco model="navigation">
  <option timestep="{timestep}" gravity="0 0 0"/>
  <worldbody>
    <!-- Static markers for the viewer only (no contacts): goals and the hazard. -->
{markers}
    <body name="robot" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" limited="true" range="-1 1"/>
      <joint name="y" type="slide" axis="0 1 0" limited="true" range="-1 1"/>
      <geom name="robot" type="sphere" size="0.05" mass="1" contype="0" conaffinity="0"
            rgba="0.2 0.4 0.9 1"/>
    </body>
  </worldbody>
  <actuator>
    <velocity joint="x" kv="10" ctrlrange="-1 1" ctrllimited="true"/>
    <velocity joint="y" kv="10" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""

MAX_SPEED = 1.0
GOAL_CIRCLE = 0.6
HAZARD_CENTER = (0.0, 0.3)
HAZARD_RADIUS = 0.15
BYSTANDER_Y = -0.25
BYSTANDER_AMPLITUDE = 0.6
PERSONAL_SPACE = 0.2
START_BOX = (0.2, 0.1)  # half-widths in x and y


def goal_positions(num_goals: int) -> jax.Array:
    """f32[G, 2]: goals on a circle of radius 0.6, the first at the top, counter-clockwise."""
    angles = jnp.pi / 2 + 2 * jnp.pi * jnp.arange(num_goals) / num_goals
    return GOAL_CIRCLE * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


@struct.dataclass
class NavigationWorld:
    """The parts of the world a user can be wrong about (the true world: hazard at (0, 0.3),
    bystander where it is observed)."""

    hazard_center: jax.Array  # f32[2]
    bystander_shift: jax.Array  # f32[2] believed minus true bystander position


def _markers(num_goals: int) -> str:
    """MJCF of flat discs marking the goals (green) and the hazard (red) for rendering."""
    disc = (
        '    <geom name="{name}" type="cylinder" size="{r} 0.002" pos="{x:.4f} {y:.4f} -0.06" '
        'rgba="{rgba}" contype="0" conaffinity="0" mass="0"/>'
    )
    goals = [
        disc.format(name=f"goal_{i}", r=0.2, x=x, y=y, rgba="0.2 0.8 0.3 0.4")
        for i, (x, y) in enumerate(goal_positions(num_goals).tolist())
    ]
    hx, hy = HAZARD_CENTER
    hazard = disc.format(name="hazard", r=HAZARD_RADIUS, x=hx, y=hy, rgba="0.9 0.2 0.2 0.4")
    return "\n".join([*goals, hazard])


def _zone_penalty(dist: jax.Array, radius: float) -> jax.Array:
    return -jnp.clip((radius - dist) / radius, 0.0, 1.0)


class Navigation(FeatureEnv):
    """Point robot, ``num_goals`` goals, hazard, moving bystander (see the module docstring)."""

    def __init__(
        self,
        num_goals: int = 2,
        episode_length: int = 40,
        goal_radius: float = 0.2,
        backend: str = "positional",
        **kwargs,
    ):
        if not 2 <= num_goals <= 6:
            raise ValueError(f"num_goals must be in 2..6, got {num_goals}")
        timestep, n_frames = 0.025, 4  # dt = 0.1 s per env step
        sys = mjcf.loads(_XML.format(timestep=timestep, markers=_markers(num_goals)))
        super().__init__(sys=sys, backend=backend, n_frames=n_frames, **kwargs)
        self.num_goals = num_goals
        self.episode_length = episode_length
        self.goal_radius = goal_radius
        self.goal_names = tuple(string.ascii_lowercase[:num_goals])
        self.feature_names = (
            *(f"progress_{g}" for g in self.goal_names),
            "safety",
            "courtesy",
            "comfort",
        )
        self.goals = goal_positions(num_goals)

    # --- world -------------------------------------------------------------------------------
    def bystander(self, t: jax.Array, phase: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Bystander position and velocity (f32[2] each) at step ``t``: one lap per episode."""
        omega = 2 * jnp.pi / (self.episode_length * self.dt)
        angle = omega * t * self.dt + phase
        pos = jnp.stack([BYSTANDER_AMPLITUDE * jnp.sin(angle), jnp.asarray(BYSTANDER_Y)])
        vel = jnp.stack([BYSTANDER_AMPLITUDE * omega * jnp.cos(angle), jnp.asarray(0.0)])
        return pos, vel

    def _obs(self, pipeline_state, t, phase) -> jax.Array:
        b_pos, b_vel = self.bystander(t, phase)
        return jnp.concatenate([pipeline_state.q, pipeline_state.qd, b_pos, b_vel])

    def reset(self, rng: jax.Array) -> State:
        k_pos, k_phase = jax.random.split(rng)
        box = jnp.asarray(START_BOX)
        q = jax.random.uniform(k_pos, (2,), minval=-box, maxval=box)
        pipeline_state = self.pipeline_init(q, jnp.zeros(2))
        t = jnp.zeros((), jnp.int32)
        phase = jax.random.uniform(k_phase, (), maxval=2 * jnp.pi)
        info = self._init_info({"t": t, "bystander_phase": phase})
        zero = jnp.zeros(())
        return State(pipeline_state, self._obs(pipeline_state, t, phase), zero, zero, {}, info)

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(action, -1.0, 1.0)
        pipeline_state = self.pipeline_step(state.pipeline_state, action * MAX_SPEED)
        t = state.info["t"] + 1
        info = {**state.info, "t": t}
        obs = self._obs(pipeline_state, t, info["bystander_phase"])
        next_state = state.replace(pipeline_state=pipeline_state, obs=obs, info=info)
        return self._finish_step(state, action, next_state)

    # --- features ----------------------------------------------------------------------------
    @property
    def true_world(self) -> NavigationWorld:
        return NavigationWorld(
            hazard_center=jnp.asarray(HAZARD_CENTER, jnp.float32),
            bystander_shift=jnp.zeros(2, jnp.float32),
        )

    def features(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        return self.features_from_obs(state.obs, action, next_state.obs, self.true_world)

    def features_from_obs(
        self, prev_obs: jax.Array, action: jax.Array, obs: jax.Array, world: NavigationWorld
    ) -> jax.Array:
        """f32[F] features of one step from the observations around it, in ``world``."""
        del prev_obs  # every feature is a function of the state reached (and the action)
        p1 = obs[:2]
        progress = jnp.clip(1.0 - jnp.linalg.norm(self.goals - p1, axis=-1) / GOAL_CIRCLE, -1, 1)
        safety = _zone_penalty(jnp.linalg.norm(p1 - world.hazard_center), HAZARD_RADIUS)
        b_pos = obs[4:6] + world.bystander_shift
        courtesy = _zone_penalty(jnp.linalg.norm(p1 - b_pos), PERSONAL_SPACE)
        comfort = -jnp.mean(jnp.square(jnp.clip(action, -1.0, 1.0)))
        return jnp.concatenate([progress, jnp.stack([safety, courtesy, comfort])])

    @property
    def default_weights(self) -> jax.Array:
        return self.weights({"progress_a": 1.0, "safety": 0.5, "courtesy": 0.5, "comfort": 0.1})

    def position(self, state: State) -> jax.Array:
        return state.pipeline_state.q

    def success(self, final_state: State, weights: jax.Array) -> jax.Array:
        goal = jnp.argmax(weights[: self.num_goals])
        dist = jnp.linalg.norm(final_state.pipeline_state.q - self.goals[goal])
        return (dist < self.goal_radius) & (jnp.max(weights[: self.num_goals]) > 0)

    def goal_reached(self, final_state: State) -> jax.Array:
        """i32[]: index of the goal the episode ended at, or -1 for none."""
        dist = jnp.linalg.norm(self.goals - final_state.pipeline_state.q, axis=-1)
        return jnp.where(jnp.min(dist) < self.goal_radius, jnp.argmin(dist), -1)

    # --- behaviour policies ------------------------------------------------------------------
    @property
    def behaviour_policy(self) -> BehaviourPolicy:
        """Waypoint controllers with noise (:meth:`behaviour` with its defaults).

        Each episode draws two waypoints (each a goal with probability 0.35, a point scattered
        around a goal (std 0.3) with probability 0.35 — so the data show what lies on every side
        of a goal, not only the way in — else a uniform point in the arena) and a switch time, a
        gain, a speed cap, an action-noise scale, and whether to steer around the hazard and the
        bystander. The mix covers direct and detouring routes to every goal, wandering, hazard
        entries and close passes by the bystander.
        """
        return self.behaviour()

    def behaviour(self, avoid_hazard: float = 0.5, avoid_bystander: float = 0.5) -> BehaviourPolicy:
        """The behaviour policy with the share of episodes that steer around the hazard and
        around the bystander's personal space.

        The defaults (half the episodes each) give the broad data of :attr:`behaviour_policy`;
        ``1.0`` gives *narrow* data that covers only part of the state space (every episode
        steers clear), the setting in which a learned reward can fit its data and still be
        wrong where a policy optimised on it goes (reward misidentification). An episode that
        steers around the hazard may still brush its edge when its action noise is large.
        """
        for name, share in (("avoid_hazard", avoid_hazard), ("avoid_bystander", avoid_bystander)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"behaviour {name}={share}: must be a share in [0, 1]")
        goals = self.goals
        horizon = self.episode_length

        def init(key):
            ks = jax.random.split(key, 10)

            def waypoint(k_choice, k_goal, k_pt):
                goal = goals[jax.random.randint(k_goal, (), 0, goals.shape[0])]
                k_near, k_far = jax.random.split(k_pt)
                near = jnp.clip(goal + 0.3 * jax.random.normal(k_near, (2,)), -0.95, 0.95)
                far = jax.random.uniform(k_far, (2,), minval=-0.95, maxval=0.95)
                choice = jax.random.uniform(k_choice)
                return jnp.where(choice < 0.35, goal, jnp.where(choice < 0.7, near, far))

            return {
                "waypoints": jnp.stack([waypoint(*ks[0:3]), waypoint(*ks[3:6])]),
                "switch": jax.random.randint(ks[6], (), horizon // 3, horizon + 1),
                "gain": jax.random.uniform(ks[7], (), minval=1.5, maxval=5.0),
                "speed": jax.random.uniform(ks[8], (), minval=0.3, maxval=1.0),
                "noise_avoid": jax.random.uniform(ks[9], (3,)),
            }

        def act(params, state, key):
            pos = state.pipeline_state.q
            t = state.info["t"]
            target = jnp.where(t < params["switch"], params["waypoints"][0], params["waypoints"][1])
            direction = params["gain"] * (target - pos)
            noise_scale, avoid_hazard_u, avoid_bystander_u = params["noise_avoid"]
            away_h = pos - jnp.asarray(HAZARD_CENTER)
            d_h = jnp.linalg.norm(away_h) + 1e-6
            push_h = away_h / d_h * 2.0 * jnp.clip((HAZARD_RADIUS + 0.15 - d_h) / 0.15, 0.0, 1.0)
            b_pos, _ = self.bystander(t, state.info["bystander_phase"])
            away_b = pos - b_pos
            d_b = jnp.linalg.norm(away_b) + 1e-6
            push_b = away_b / d_b * 2.0 * jnp.clip((PERSONAL_SPACE + 0.1 - d_b) / 0.2, 0.0, 1.0)
            # u >= 1 - share steers with probability ``share`` (and, at 0.5, exactly as u > 0.5
            # did, so the default data are unchanged).
            steer_h = avoid_hazard_u >= 1.0 - avoid_hazard
            steer_b = avoid_bystander_u >= 1.0 - avoid_bystander
            direction = direction + steer_h * push_h + steer_b * push_b
            action = params["speed"] * jnp.clip(direction, -1.0, 1.0)
            action = action + 0.6 * noise_scale * jax.random.normal(key, (2,))
            return jnp.clip(action, -1.0, 1.0)

        return BehaviourPolicy(init=init, act=act)


# --- scripted goal controllers ----------------------------------------------------------------
def to_goal(goal: jax.Array, pos: jax.Array) -> jax.Array:
    """f32[2]: the pre-squash action of a proportional controller from ``pos`` to ``goal``
    (gain 6, clipped to ±2 before the policy's ``tanh``: full speed until about 0.15 m out)."""
    return jnp.clip(6.0 * (goal - pos), -2.0, 2.0)


def goal_policy(env: Navigation, g: int) -> BehaviourPolicy:
    """The scripted single-goal policy of goal ``g`` (deterministic, ``tanh`` of
    :func:`to_goal`): a *pure strategy* of the goal game."""
    goal = env.goals[g]
    return BehaviourPolicy(
        init=lambda key: None,
        act=lambda _, state, key: jnp.tanh(to_goal(goal, env.position(state))),
    )


def noisy_goal_policy(
    env: Navigation, goal_of: Callable[[State], jax.Array], noise: float
) -> BehaviourPolicy:
    """Noisy scripted runs to the goal ``goal_of(state) -> i32[]`` picks at every step (e.g.
    from an input appended to the observation, ``state.obs[O:]``): ``tanh`` of :func:`to_goal`
    plus Gaussian pre-squash noise of standard deviation ``noise``. A demonstrator whose plan is
    set by what it observes (the reference of :func:`vpl_jax.nash.policy.clone_reference`)."""

    def act(_, state, key):
        u = to_goal(env.goals[goal_of(state)], env.position(state))
        return jnp.tanh(u + noise * jax.random.normal(key, u.shape))

    return BehaviourPolicy(lambda key: None, act)


def goal_data_policy(env: Navigation, goal_share: float) -> BehaviourPolicy:
    """Recorded episodes that show the goals: with probability ``goal_share`` an episode is a
    noisy scripted run to a uniformly chosen goal (pre-squash noise std uniform in [0.1, 0.6]),
    else an episode of the task's broad :attr:`~Navigation.behaviour_policy`. Comparisons of
    goal-reaching episodes, which broad data alone rarely makes, are what show a population's
    preferences between goals."""
    broad = env.behaviour_policy

    def init(key):
        k_coin, k_goal, k_noise, k_broad = jax.random.split(key, 4)
        return {
            "scripted": jax.random.uniform(k_coin) < goal_share,
            "goal": jax.random.randint(k_goal, (), 0, env.num_goals),
            "noise": jax.random.uniform(k_noise, (), minval=0.1, maxval=0.6),
            "broad": broad.init(k_broad),
        }

    def act(params, state, key):
        u = to_goal(env.goals[params["goal"]], env.position(state))
        scripted = jnp.tanh(u + params["noise"] * jax.random.normal(key, u.shape))
        return jnp.where(params["scripted"], scripted, broad.act(params["broad"], state, key))

    return BehaviourPolicy(init, act)
