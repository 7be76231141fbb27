"""Human models: how a simulated user turns two segments' rewards into a preference label.

A user's reward for a segment of H steps with per-step features ``phi: f32[H, F]`` is the
(optionally myopic) weighted sum ``R = sum_t gamma^(H-1-t) theta · phi_t`` — with ``gamma < 1`` the
user weights *later* steps more, as B-Pref's myopic teacher does (Lee et al., 2021).

A *regret-based* user (Knox et al., 2022) judges a segment not by its partial return but by how
much it gives up relative to their optimal policy: the negated regret is
``R + V*(s_end) - V*(s_start)`` (the sum of optimal advantages), with ``V*`` the user's optimal
value function. ``regret_weight = w`` interpolates: the user's *score* of a segment is
``R + w (V*(s_end) - V*(s_start))`` (w = 0: partial return; w = 1: regret). When ``V*`` is constant
the two coincide.

Given the two scores ``R_a`` and ``R_b`` the label distribution is

* ``skip``: no label at all when both returns are below ``skip_threshold`` (the label's mask is
  False) — the user finds both segments too bad to compare;
* ``equal``: the label is exactly 0.5 when ``|R_a - R_b| < equal_threshold``, and for the
  rational user (``beta = inf``) also at a tie ``R_a = R_b`` (e.g. two all-zero segments): a
  deterministic labeller has no preference to state, so it says "equal" rather than flipping a
  coin that would be counted as a strict preference;
* otherwise Boltzmann-rational: ``P(a ≻ b) = sigmoid(beta (R_a - R_b))``, with ``beta = inf`` the
  deterministic rational user (a finite-beta user's tie is a coin flip, ``P = 0.5``);
* ``mistake``: with probability ``epsilon`` the answer is flipped, so
  ``P(a ≻ b) = (1 - epsilon) p + epsilon (1 - p)``.

Labels use the convention ``y = 1`` for "a is preferred", ``y = 0`` for "b is preferred" and
``y = 0.5`` for "equal". Swapping a and b maps ``y`` to ``1 - y`` and leaves skip/equal unchanged.

All functions take one unbatched user and one pair; batch with ``vmap``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class HumanModel:
    """Parameters of a simulated human's labelling behaviour (all scalars per user)."""

    beta: jax.Array | float = math.inf  # Boltzmann rationality; inf = deterministic
    gamma: jax.Array | float = 1.0  # myopic discount over the segment; 1 = none
    epsilon: jax.Array | float = 0.0  # probability of a flipped answer
    skip_threshold: jax.Array | float = -math.inf  # skip when both returns are below this
    equal_threshold: jax.Array | float = 0.0  # "equal" when |R_a - R_b| is below this
    regret_weight: jax.Array | float = 0.0  # 0: partial return; 1: regret (needs V* values)

    @classmethod
    def create(
        cls,
        beta: float = math.inf,
        gamma: float = 1.0,
        epsilon: float = 0.0,
        skip_threshold: float = -math.inf,
        equal_threshold: float = 0.0,
        regret_weight: float = 0.0,
    ) -> HumanModel:
        """Validated constructor; raises ``ValueError`` naming the bad field."""
        cls.check(beta, gamma, epsilon, skip_threshold, equal_threshold, regret_weight)
        return cls(
            beta=jnp.float32(beta),
            gamma=jnp.float32(gamma),
            epsilon=jnp.float32(epsilon),
            skip_threshold=jnp.float32(skip_threshold),
            equal_threshold=jnp.float32(equal_threshold),
            regret_weight=jnp.float32(regret_weight),
        )

    @staticmethod
    def check(
        beta: float = math.inf,
        gamma: float = 1.0,
        epsilon: float = 0.0,
        skip_threshold: float = -math.inf,
        equal_threshold: float = 0.0,
        regret_weight: float = 0.0,
    ) -> None:
        """Raises ``ValueError`` naming the first field :meth:`create` would refuse. Builds no
        array, so registering user types at import starts no JAX backend (several processes
        must join before one starts)."""
        checks = {
            "beta": (beta >= 0, "must be >= 0 (inf for a rational user)"),
            "gamma": (0 < gamma <= 1, "must be in (0, 1]"),
            "epsilon": (0 <= epsilon <= 0.5, "must be in [0, 0.5]"),
            "equal_threshold": (equal_threshold >= 0, "must be >= 0"),
            "regret_weight": (0 <= regret_weight <= 1, "must be in [0, 1]"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"human model field {name}={locals()[name]!r} {allowed}")
        if math.isnan(skip_threshold):
            raise ValueError("human model field skip_threshold must not be NaN")

    def broadcast(self, num_users: int) -> HumanModel:
        """The same human model with every field f32[U] for ``num_users = U`` users: a scalar
        field is shared by all of them, a field already f32[U] is kept. E.g. U users with known
        rationality: ``HumanModel.create(beta=2.0).broadcast(U)``.

        Raises ``ValueError`` naming a field that is neither a scalar nor f32[U].
        """
        if isinstance(num_users, bool) or not isinstance(num_users, int) or num_users < 1:
            raise ValueError(f"num_users={num_users!r}: must be an integer >= 1")
        fields = {}
        for field in dataclasses.fields(self):
            value = jnp.asarray(getattr(self, field.name), jnp.float32)
            if value.shape not in ((), (num_users,)):
                raise ValueError(
                    f"human model field {field.name} has shape {value.shape}: must be a scalar "
                    f"or f32[U] for the U = {num_users} users"
                )
            fields[field.name] = jnp.broadcast_to(value, (num_users,))
        return self.replace(**fields)


def check_partial_return(human: HumanModel, where: str) -> None:
    """Raises ``ValueError`` if any user of ``human`` (fields f32[...], concrete) is regret-based.

    Code paths that label with :func:`segment_score` without the users' optimal values
    (``values=None``) would silently treat a regret-based user as a partial-return one; they
    call this first. ``where`` names the caller in the message.
    """
    regret = np.asarray(human.regret_weight)
    if np.any(regret > 0):
        raise ValueError(
            f"{where} labels by (discounted) partial return, but users have regret_weight up to "
            f"{float(regret.max())}: regret-based answers need each user's V* of the segments "
            f"(build with regret_weight 0, then relabel with label_queries(..., values=...))"
        )


class LabelDistribution(NamedTuple):
    """What a user would answer for one pair: ``P(a ≻ b)`` and the deterministic outcomes."""

    p_a: jax.Array  # f32[]: probability of answering "a", after mistakes
    equal: jax.Array  # bool[]: answers 0.5
    skip: jax.Array  # bool[]: gives no answer


def segment_return(theta: jax.Array, features: jax.Array, gamma: jax.Array | float = 1.0):
    """f32[]: ``sum_t gamma^(H-1-t) theta · phi_t`` for ``features: f32[H, F]``."""
    chex.assert_rank(features, 2)
    horizon = features.shape[0]
    discounts = jnp.power(gamma, jnp.arange(horizon - 1, -1, -1, dtype=jnp.float32))
    return jnp.sum(discounts * (features @ theta))


def segment_score(
    human: HumanModel,
    theta: jax.Array,
    features: jax.Array,
    values: jax.Array | None = None,
) -> jax.Array:
    """f32[]: how the user rates a segment: ``R_gamma + regret_weight (V*(end) - V*(start))``.

    Args:
      human: the user's human model (``gamma`` and ``regret_weight`` are used).
      theta: f32[F] the user's weights.
      features: f32[H, F] per-step features.
      values: f32[2] the user's optimal values ``(V*(s_start), V*(s_end))`` of the segment, or
        None for a partial-return user (then ``regret_weight`` must be 0 to be meaningful).
    """
    score = segment_return(theta, features, human.gamma)
    if values is None:
        return score
    return score + human.regret_weight * (values[1] - values[0])


def boltzmann(beta: jax.Array, delta: jax.Array) -> jax.Array:
    """``sigmoid(beta * delta)``, with ``beta = inf`` giving the step function (0.5 at a tie)."""
    rational = jnp.isinf(beta)
    soft = jax.nn.sigmoid(jnp.where(rational, 1.0, beta) * delta)
    return jnp.where(rational, 0.5 * (1.0 + jnp.sign(delta)), soft)


def label_distribution(
    human: HumanModel, return_a: jax.Array, return_b: jax.Array
) -> LabelDistribution:
    """Label distribution for one pair from the two (already discounted) returns.

    ``equal`` holds within ``equal_threshold`` and, for a rational user (``beta = inf``), at an
    exact tie: labelled 0.5, as an equal answer, and still counted (not skipped).
    """
    delta = return_a - return_b
    p = boltzmann(human.beta, delta)
    p = (1.0 - human.epsilon) * p + human.epsilon * (1.0 - p)
    equal = (jnp.abs(delta) < human.equal_threshold) | (jnp.isinf(human.beta) & (delta == 0))
    skip = jnp.maximum(return_a, return_b) < human.skip_threshold
    return LabelDistribution(p_a=p, equal=equal, skip=skip)


def sample_label(key: jax.Array, dist: LabelDistribution) -> tuple[jax.Array, jax.Array]:
    """Draws ``(y: f32[], mask: bool[])``: y in {0, 0.5, 1}; mask is False for a skip."""
    y = jax.random.bernoulli(key, dist.p_a).astype(jnp.float32)
    y = jnp.where(dist.equal, 0.5, y)
    return y, ~dist.skip
