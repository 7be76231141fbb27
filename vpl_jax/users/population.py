"""Simulated users, user types, their registry, and populations.

A **user** is a pytree: reward weights ``theta: f32[F]`` over a task's features, the parameters of
a :class:`~vpl_jax.users.human.HumanModel`, and the index of the user type it was drawn from. A
batch of users is the same pytree with a leading axis ``U``, so labelling ``vmap``s over users.

A **user type** is a named recipe: weights by feature name, a human model, and how much individual
users of the type vary around those weights. Types are registered per task::

    register_user_type("navigation", UserType("sightseer", {"progress_b": 0.5, "courtesy": 2.0}))

A **population** draws users: a finite mixture of named types with shares
(:meth:`Population.mixture`) or a continuous Gaussian distribution over ``theta``
(:meth:`Population.continuous`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vpl_jax import envs
from vpl_jax.checks import Float, check_config, checked, is_finite_number, is_int, rule_of
from vpl_jax.users.human import HUMAN_MODEL_RULES, HumanModel


@struct.dataclass
class User:
    """One simulated user (or a batch, with a leading axis ``U`` on every field)."""

    theta: jax.Array  # f32[F] reward weights
    human: HumanModel  # labelling behaviour
    type_id: jax.Array  # i32[]: index into the population's ``type_names``

    def rational(self) -> User:
        """The same users answering as *rational* partial-return labellers (beta = inf, no
        myopia, mistakes, skips, "equal" answers or regret): the preferences their reward
        ``theta`` implies, against which a reward learned from their actual answers is judged.
        False beliefs live in the features a user is shown, not here: label with the true
        features for the rational answers."""
        human = jax.tree.map(
            lambda x: jnp.broadcast_to(x, jnp.shape(self.type_id)), HumanModel.create()
        )
        return self.replace(human=human)

    def with_human(self, **fields: float) -> User:
        """The same users with each given human-model field set to one value for all of them,
        e.g. ``users.with_human(epsilon=0.2)``: every user flips a fifth of their answers.

        Raises ``ValueError`` naming an unknown field or a value its rule
        (:data:`~vpl_jax.users.human.HUMAN_MODEL_RULES`) refuses.
        """
        unknown = sorted(set(fields) - set(HUMAN_MODEL_RULES))
        if unknown:
            raise ValueError(
                f"unknown human model field(s) {unknown}; allowed: {list(HUMAN_MODEL_RULES)}"
            )
        for name, value in fields.items():
            HUMAN_MODEL_RULES[name].check(f"human model field {name}", value)
        shape = jnp.shape(self.type_id)
        full = {name: jnp.full(shape, value, jnp.float32) for name, value in fields.items()}
        return self.replace(human=self.human.replace(**full))


#: Deviations from the noisy-rational partial-return labeller, by kind: the human-model field
#: each sets and the field's value at a deviation of a given size (``beta``: the temperature
#: ``1/beta``, 0 is rational; ``gamma``: myopia ``1 - gamma``; ``epsilon``: the probability of a
#: flipped answer; ``regret``: the weight of ``V*(end) - V*(start)``). False beliefs are not
#: here: they live in the features a user judges (:mod:`vpl_jax.data.beliefs`).
DEVIATIONS = {
    "beta": ("beta", lambda size: 1.0 / size if size else math.inf),
    "gamma": ("gamma", lambda size: 1.0 - size),
    "epsilon": ("epsilon", lambda size: size),
    "regret": ("regret_weight", lambda size: size),
}


def deviating(users: User, kind: str, size: float) -> User:
    """``users`` with a deviation of ``kind`` (a key of :data:`DEVIATIONS`) and ``size`` in their
    human model, the same for all of them; ``kind="none"`` leaves them as they are.

    ``deviating(users, "gamma", 0.2)`` is ``users.with_human(gamma=0.8)``: users who discount
    the earlier steps of a segment. Raises ``ValueError`` for another kind, or a size whose
    field value the human model refuses.
    """
    if kind == "none":
        return users
    if kind not in DEVIATIONS:
        raise ValueError(f"unknown deviation kind {kind!r}; allowed: {['none', *DEVIATIONS]}")
    field, value = DEVIATIONS[kind]
    return users.with_human(**{field: value(size)})


@dataclasses.dataclass(frozen=True)
class UserType:
    """A named kind of user.

    Attributes:
      name: short snake_case name, unique per task.
      weights: reward weight per feature name; features not named get weight 0.
      beta, gamma, epsilon, skip_threshold, equal_threshold, regret_weight: the human model
        (see :mod:`vpl_jax.users.human`).
      weight_noise: standard deviation of Gaussian noise added to each named weight per user,
        relative to the weight's magnitude (0 makes every user of the type identical).
      description: one line for listings and the README.
    """

    name: str
    weights: Mapping[str, float]
    beta: float = checked(math.inf, HUMAN_MODEL_RULES["beta"])
    gamma: float = checked(1.0, HUMAN_MODEL_RULES["gamma"])
    epsilon: float = checked(0.0, HUMAN_MODEL_RULES["epsilon"])
    skip_threshold: float = checked(-math.inf, HUMAN_MODEL_RULES["skip_threshold"])
    equal_threshold: float = checked(0.0, HUMAN_MODEL_RULES["equal_threshold"])
    regret_weight: float = checked(0.0, HUMAN_MODEL_RULES["regret_weight"])
    weight_noise: float = checked(0.0, Float(ge=0))
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"user type name must be an identifier, got {self.name!r}")
        check_config(self, f"UserType({self.name})")
        bad = {k: v for k, v in dict(self.weights).items() if not is_finite_number(v)}
        if bad or not all(isinstance(k, str) for k in self.weights):
            raise ValueError(
                f"user type {self.name}: weights must map feature names to finite numbers; "
                f"bad: {bad or dict(self.weights)}"
            )

    def _human_fields(self) -> dict[str, float]:
        names = ("beta", "gamma", "epsilon", "skip_threshold", "equal_threshold", "regret_weight")
        return {name: getattr(self, name) for name in names}

    def human_model(self) -> HumanModel:
        return HumanModel.create(**self._human_fields())

    def theta(self, feature_names: Sequence[str]) -> np.ndarray:
        """f32[F] weights resolved against a task's feature names."""
        unknown = sorted(set(self.weights) - set(feature_names))
        if unknown:
            raise ValueError(
                f"user type {self.name!r} weights unknown feature(s) {unknown}; "
                f"the task's features are {list(feature_names)}"
            )
        return np.array([self.weights.get(n, 0.0) for n in feature_names], np.float32)


_USER_TYPES: dict[str, dict[str, UserType]] = {}


def register_user_type(task: str, user_type: UserType, *, overwrite: bool = False) -> UserType:
    """Adds ``user_type`` to the registry of ``task``; returns it (usable as a decorator target).

    Variants of ``task`` (``envs.register(..., parent=task)``) see it too."""
    if not isinstance(user_type, UserType):
        raise TypeError(f"register_user_type needs a UserType, got {type(user_type).__name__}")
    types = _USER_TYPES.setdefault(task, {})
    if user_type.name in types and not overwrite:
        raise ValueError(f"user type {user_type.name!r} is already registered for task {task!r}")
    types[user_type.name] = user_type
    return user_type


def user_types(task: str) -> dict[str, UserType]:
    """The user types of ``task`` by name: its own and those of the tasks it is a variant of
    (``envs.lineage``; a variant's own type shadows its parent's of the same name)."""
    try:
        chain = envs.lineage(task)
    except ValueError:  # a task name that is not (or not yet) registered: its own types only
        chain = (task,)
    types: dict[str, UserType] = {}
    for ancestor in reversed(chain):
        types.update(_USER_TYPES.get(ancestor, {}))
    return types


def get_user_type(task: str, name: str) -> UserType:
    """The registered type ``name`` of ``task`` (or of a task it derives from); unknown names
    raise with the known ones."""
    types = user_types(task)
    if name not in types:
        raise ValueError(
            f"unknown user type {name!r} for task {task!r}; known types: {sorted(types)}"
        )
    return types[name]


def _stratified_counts(shares: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n, proportional to shares (largest-remainder rounding)."""
    exact = shares * n
    counts = np.floor(exact).astype(np.int64)
    remainder = n - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return counts


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
    """A distribution over users of one task, resolved against the task's feature names.

    Build with :meth:`mixture` or :meth:`continuous`; draw users with :meth:`sample`.
    """

    task: str
    feature_names: tuple[str, ...]
    type_names: tuple[str, ...]
    shares: np.ndarray  # f32[T]
    theta_mean: np.ndarray  # f32[T, F]
    theta_std: np.ndarray  # f32[T, F] absolute per-feature noise
    human: HumanModel  # fields f32[T]

    def __post_init__(self):
        # Built directly or by dataclasses.replace, a population is checked like mixture's:
        # NaN shares gave counts of -2**63 users, a NaN or negative spread NaN weights.
        t, f = len(self.type_names), len(self.feature_names)
        shares = np.asarray(self.shares, np.float64)
        if (
            shares.shape != (t,)
            or not np.all(np.isfinite(shares))
            or np.any(shares < 0)
            or not abs(shares.sum() - 1.0) < 1e-4
        ):
            raise ValueError(
                f"population shares must be {t} finite numbers >= 0 summing to 1 (one per type "
                f"{list(self.type_names)}), got {self.shares!r}"
            )
        for name in ("theta_mean", "theta_std"):
            value = np.asarray(getattr(self, name))
            if value.shape != (t, f):
                raise ValueError(f"population {name} must be [{t}, {f}] (types x features), "
                                 f"got shape {value.shape}")  # fmt: skip
            if not np.all(np.isfinite(value)) or (name == "theta_std" and np.any(value < 0)):
                low = " and >= 0" if name == "theta_std" else ""
                raise ValueError(f"population {name} must be finite{low}, got {value.tolist()}")

    @classmethod
    def mixture(
        cls,
        task: str,
        feature_names: Sequence[str],
        shares: Mapping[str, float] | Sequence[str],
        overrides: Mapping[str, float] | None = None,
        weight_noise: float | None = None,
    ) -> Population:
        """A finite mixture of registered user types.

        Args:
          task: task name whose user-type registry is used.
          feature_names: the task's ``feature_names`` (e.g. ``env.feature_names``).
          shares: ``{type_name: share}`` (normalised to sum to 1), or a list of names for
            equal shares.
          overrides: human-model fields applied to every type (e.g. ``{"beta": 2.0}``).
          weight_noise: if given, every type's ``weight_noise`` (relative spread of individual
            users' weights around the type's).
        """
        if not isinstance(shares, Mapping):
            names = list(shares)
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(
                    f"population shares: user type(s) {repeated} repeat; name each type once "
                    "(give unequal shares as a mapping {type: share})"
                )
            shares = {name: 1.0 for name in names}
        if not shares:
            raise ValueError("population shares must name at least one user type")
        values = np.array(list(shares.values()), np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
            raise ValueError(f"population shares must be >= 0 and not all 0, got {dict(shares)}")
        types = [get_user_type(task, name) for name in shares]
        if overrides:
            allowed = {f.name for f in dataclasses.fields(HumanModel)}
            bad = sorted(set(overrides) - allowed)
            if bad:
                raise ValueError(
                    f"unknown human-model override(s) {bad}; allowed: {sorted(allowed)}"
                )
            types = [dataclasses.replace(t, **overrides) for t in types]
        if weight_noise is not None:
            rule_of(UserType, "weight_noise").check("weight_noise", weight_noise)
            types = [dataclasses.replace(t, weight_noise=weight_noise) for t in types]
        mean = np.stack([t.theta(feature_names) for t in types])
        std = np.stack([t.weight_noise * np.abs(t.theta(feature_names)) for t in types])
        humans = [t.human_model() for t in types]
        human = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *humans)
        return cls(
            task=task,
            feature_names=tuple(feature_names),
            type_names=tuple(t.name for t in types),
            shares=(values / values.sum()).astype(np.float32),
            theta_mean=mean.astype(np.float32),
            theta_std=std.astype(np.float32),
            human=human,
        )

    @classmethod
    def continuous(
        cls,
        task: str,
        feature_names: Sequence[str],
        mean: Mapping[str, float],
        std: Mapping[str, float] | float,
        human: HumanModel | None = None,
        name: str = "continuous",
    ) -> Population:
        """Users with ``theta ~ N(mean, diag(std^2))``, one human model for all."""
        mean_type = UserType(name, mean)
        mu = mean_type.theta(feature_names)
        if isinstance(std, Mapping):
            sigma = UserType(name, std).theta(feature_names)
        else:
            sigma = np.full_like(mu, float(std))
        if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
            raise ValueError(f"continuous population std must be finite and >= 0, got {std}")
        human = human if human is not None else HumanModel.create()
        return cls(
            task=task,
            feature_names=tuple(feature_names),
            type_names=(name,),
            shares=np.ones(1, np.float32),
            theta_mean=mu[None],
            theta_std=sigma[None],
            human=jax.tree.map(lambda x: np.asarray(x)[None], human),
        )

    @classmethod
    def random_types(
        cls,
        task: str,
        feature_names: Sequence[str],
        num_types: int,
        key: jax.Array,
        human: HumanModel | None = None,
        weight_noise: float = 0.0,
    ) -> Population:
        """``num_types`` types with random weights, in equal shares, named ``type_0``, ….

        Each type's ``theta`` is a standard normal vector over the features scaled to unit
        length: a direction drawn uniformly on the sphere. The law is symmetric, so no
        direction is favoured: two types' expected cosine is 0, and the more types, the closer
        their mean reward is to zero, which one reward for all cannot fit. ``human`` is every
        type's human model; ``weight_noise`` the relative spread of individual users' weights
        around their type's (:class:`UserType`'s). Pure in ``key``.
        """
        if not is_int(num_types) or num_types < 1:
            raise ValueError(f"num_types={num_types!r}: must be an integer >= 1")
        rule_of(UserType, "weight_noise").check("weight_noise", weight_noise)
        draws = np.asarray(jax.random.normal(key, (num_types, len(feature_names))), np.float64)
        theta = draws / np.linalg.norm(draws, axis=1, keepdims=True)
        human = human if human is not None else HumanModel.create()
        return cls(
            task=task,
            feature_names=tuple(feature_names),
            type_names=tuple(f"type_{t}" for t in range(num_types)),
            shares=np.full(num_types, 1.0 / num_types, np.float32),
            theta_mean=theta.astype(np.float32),
            theta_std=(weight_noise * np.abs(theta)).astype(np.float32),
            human=jax.tree.map(lambda x: np.repeat(np.asarray(x)[None], num_types), human),
        )

    @property
    def num_types(self) -> int:
        return len(self.type_names)

    def counts(self, num_users: int) -> np.ndarray:
        """i64[T]: how many of ``num_users`` users each type gets (largest-remainder rounding)."""
        if not is_int(num_users) or num_users < 0:
            raise ValueError(f"num_users={num_users!r}: must be an integer >= 0")
        return _stratified_counts(self.shares.astype(np.float64), num_users)

    def sample(self, key: jax.Array, num_users: int) -> User:
        """Draws ``num_users`` users (a batched :class:`User`, in random order).

        Type counts follow the shares exactly up to rounding (stratified), so small experiments
        are balanced; order and individual weights are random. Pure in ``key``; ``num_users`` is
        static.
        """
        if not is_int(num_users) or num_users <= 0:
            raise ValueError(f"num_users={num_users!r}: must be an integer > 0")
        type_id = np.repeat(np.arange(self.num_types), self.counts(num_users))
        k_perm, k_noise = jax.random.split(key)
        type_id = jax.random.permutation(k_perm, jnp.asarray(type_id, jnp.int32))
        noise = jax.random.normal(k_noise, (num_users, len(self.feature_names)))
        theta = jnp.asarray(self.theta_mean)[type_id] + noise * jnp.asarray(self.theta_std)[type_id]
        human = jax.tree.map(lambda x: jnp.asarray(x)[type_id], self.human)
        return User(theta=theta, human=human, type_id=type_id)
