"""The task contract: a Brax ``PipelineEnv`` whose every step yields a vector of named features.

A task adds three things to Brax's environment contract (``reset(rng) -> State``,
``step(state, action) -> State``):

* ``feature_names: tuple[str, ...]`` — the names of the F per-step features, in order;
* ``features(state, action, next_state) -> f32[F]`` — a pure function, called inside ``step``,
  whose result is stored in ``next_state.info["features"]``;
* ``behaviour_policy`` — scripted controllers with per-episode random parameters, used to
  collect diverse trajectories for preference data.

Every feature is normalised per step to ``[-1, 1]`` with 0 meaning "nothing happened", and signed
so that larger is better for a user with a positive weight (safety and comfort are therefore
penalties in ``[-1, 0]``). A user's reward is ``theta · phi``; because all features share one
scale, weights are comparable across features and tasks.

The environment's own ``reward`` is ``default_weights · phi``, a reasonable single-objective
reward for smoke tests and for training the oracle; user-specific rewards are applied by wrappers.

**Realisability.** Every feature is a function of the transition ``(prev_obs, action, obs)``
(:meth:`FeatureEnv.features_from_transition`): each task's observation carries what its features
depend on (previous acceleration, the follower's braking, a failure flag, ...). A learned reward
that reads transitions can therefore represent ``theta · phi`` for every ``theta``;
``tests/test_envs.py`` checks it for every registered task.

**Failures never pay.** Episodes have a fixed horizon: ``done`` is never set by a task. A task
that can fail (a crash, leaving the road, a fall) sets ``failure_features`` and, from the step
after the failure on, stays in an *absorbing failure state*: the world is frozen, the observation
says so, and every step's features are ``failure_features`` — the worst value of each penalty
feature and 0 ("nothing happened") for goal-progress and direction features — until the horizon.
Ending early then never beats carrying on safely for a user who weighs safety at all (and the
other features with their intended signs); ``tests/test_envs.py`` checks it on every such task.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import PipelineEnv, State

PolicyParams = Any


class BehaviourPolicy(NamedTuple):
    """Scripted data-collection controller.

    ``init(key) -> params`` draws per-episode parameters (a pytree: waypoints, target speeds,
    gains, noise scales); ``act(params, state, key) -> f32[A]`` is the action for one unbatched
    state. Both are pure, so rollouts ``vmap`` over episodes and ``scan`` over steps.
    """

    init: Callable[[jax.Array], PolicyParams]
    act: Callable[[PolicyParams, State, jax.Array], jax.Array]


class FeatureEnv(PipelineEnv, abc.ABC):
    """A Brax task with named, normalised per-step features (see the module docstring)."""

    #: Names of the per-step features, in the order of ``info["features"]``.
    feature_names: tuple[str, ...]
    #: Episode length in steps used by default for data collection and training.
    episode_length: int
    #: f32[F] features of every step in the absorbing failure state (None: the task cannot fail).
    failure_features: jax.Array | None = None

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    @abc.abstractmethod
    def default_weights(self) -> jax.Array:
        """f32[F]: weights of the environment's own reward ``default_weights · phi``."""

    @abc.abstractmethod
    def features(self, state: State, action: jax.Array, next_state: State) -> jax.Array:
        """f32[F] per-step features of the transition ``state --action--> next_state``."""

    @property
    @abc.abstractmethod
    def behaviour_policy(self) -> BehaviourPolicy:
        """Scripted controllers that produce diverse trajectories for preference data."""

    @abc.abstractmethod
    def position(self, state: State) -> jax.Array:
        """f32[2]: the agent's position in the plane, for trajectory plots."""

    @abc.abstractmethod
    def success(self, final_state: State, weights: jax.Array) -> jax.Array:
        """bool[]: whether an episode ending in ``final_state`` achieved what a user with
        ``weights`` (f32[F]) wants (e.g. reached that user's goal). Pure and vmappable."""

    def features_from_transition(
        self, prev_obs: jax.Array, action: jax.Array, obs: jax.Array
    ) -> jax.Array:
        """f32[F] features of one step as a function of the observation before it, the action
        and the observation after it — what a reward model with ``inputs="transition"`` reads.

        Equals :meth:`features` on every step (checked for every registered task). The default
        uses :meth:`features_from_obs` in the :attr:`true_world`; a task without false beliefs
        overrides this instead.
        """
        try:
            world = self.true_world
        except NotImplementedError:
            raise NotImplementedError(
                f"task {type(self).__name__} must implement features_from_transition(prev_obs, "
                "action, obs): every feature must be a function of the reward model's input"
            ) from None
        return self.features_from_obs(prev_obs, action, obs, world)

    @property
    def true_world(self) -> Any:
        """The world parameters users can hold false beliefs about (a pytree).

        Tasks that support false beliefs override this and :meth:`features_from_obs`.
        """
        raise NotImplementedError(f"task {type(self).__name__} does not model false beliefs")

    def features_from_obs(
        self, prev_obs: jax.Array, action: jax.Array, obs: jax.Array, world: Any
    ) -> jax.Array:
        """f32[F] features of one step computed from observations in a (believed) ``world``;
        with ``true_world`` it equals :meth:`features`."""
        raise NotImplementedError(f"task {type(self).__name__} does not model false beliefs")

    def weights(self, named: Mapping[str, float]) -> jax.Array:
        """f32[F] weight vector from a ``{feature_name: weight}`` mapping (missing names are 0).

        Raises ``ValueError`` naming the unknown feature and the allowed ones.
        """
        unknown = sorted(set(named) - set(self.feature_names))
        if unknown:
            raise ValueError(
                f"unknown feature name(s) {unknown} for task {type(self).__name__}; "
                f"allowed: {list(self.feature_names)}"
            )
        return jnp.asarray(
            np.array([named.get(n, 0.0) for n in self.feature_names], dtype=np.float32)
        )

    def _finish_step(self, state: State, action: jax.Array, next_state: State) -> State:
        """Computes features and the default reward; call at the end of ``step``."""
        phi = self.features(state, action, next_state)
        next_state.info["features"] = phi
        return next_state.replace(reward=jnp.dot(self.default_weights, phi))

    def _absorb(self, state: State, next_state: State) -> State:
        """Keeps an episode that had already failed before this step in its absorbing failure
        state: the world of ``state`` frozen (``info["t"]`` still counts), features
        ``failure_features``, reward accordingly; otherwise ``next_state`` unchanged. Call at
        the end of ``step`` of a task that can fail, with ``info["failed"]`` latched."""
        failed = state.info["failed"]
        frozen = state.replace(
            info={**state.info, "t": next_state.info["t"], "features": self.failure_features},
            reward=jnp.dot(self.default_weights, self.failure_features),
            done=jnp.zeros_like(next_state.done),
            metrics=next_state.metrics,
        )
        return jax.tree.map(lambda f, n: jnp.where(failed, f, n), frozen, next_state)

    def _init_info(self, info: dict) -> dict:
        info["features"] = jnp.zeros(self.num_features)
        return info
