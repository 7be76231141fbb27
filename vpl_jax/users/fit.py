"""Which human model explains a labeller's answers: maximum likelihood of (β, ε, γ) given θ.

For a labeller with reward weights θ, a pair's return difference is
``Δ = R_γ(a) - R_γ(b)`` with ``R_γ = sum_t γ^(H-1-t) θ · φ_t`` (:func:`~vpl_jax.users.
segment_return`) and the human model of :mod:`vpl_jax.users.human` answers "a" with probability
``P(a) = (1 - ε) σ(β Δ) + ε (1 - σ(β Δ))``. Given θ — pairwise answers only fix ``β θ``, so θ's
scale must come from elsewhere, e.g. a population's user type — :func:`fit_human_model`
maximises the log-likelihood of the strict answers (1 or 0; "equal" and skipped answers carry no
information about β and ε here and are left out) over a grid: β log-spaced over [0.01, 100]
then refined around the best value, ε in [0, 0.5] in steps of 0.005, γ over the values given.

The *rational* model it is compared with is the Boltzmann-rational partial-return labeller the
reward models' likelihood assumes: ε = 0, γ = 1, β fitted. ``log_likelihood_ratio`` is the
fitted model's log-likelihood minus the rational one's (>= 0, the models being nested); for one
extra parameter on its boundary (ε), twice it exceeds 2.71 with 5 % probability when the labeller
is in fact rational — so a ratio above about 1.35 is evidence of mistakes (or myopia).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax.users.human import segment_return

#: The grids searched (β then refined locally).
BETAS = np.logspace(-2, 2, 161)
EPSILONS = np.linspace(0.0, 0.5, 101)


class HumanModelFit(NamedTuple):
    """The maximum-likelihood human model of one labeller (see the module docstring).

    ``beta``, ``epsilon``, ``gamma`` and ``log_likelihood`` of the best model;
    ``rational_beta`` and ``rational_log_likelihood`` of the best ε = 0, γ = 1 model;
    ``log_likelihood_ratio`` the difference; ``num_labels`` the strict answers used;
    ``beta_unbounded`` True when the largest β searched explains the answers as well as the best
    (within 1e-4 nats): θ separates every answer, so β is only bounded below (the answers are
    those of a deterministic labeller, as far as they go) and ``beta`` is that bound.
    """

    beta: float
    epsilon: float
    gamma: float
    log_likelihood: float
    rational_beta: float
    rational_log_likelihood: float
    log_likelihood_ratio: float
    num_labels: int
    beta_unbounded: bool = False


@jax.jit
def _grid_log_likelihood(betas, epsilons, delta, y, w):
    """f32[E, B]: the log-likelihood of answers ``y`` (weights ``w``) at every (ε, β)."""
    x = betas[:, None] * delta[None, :]  # [B, N]
    up, down = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)

    def at(eps):
        # log P(a) and log P(b) in log space: exact for eps = 0 and for large |beta delta|.
        keep, flip = jnp.log1p(-eps), jnp.log(eps)
        log_a = jnp.logaddexp(keep + up, flip + down)
        log_b = jnp.logaddexp(keep + down, flip + up)
        return jnp.sum(w * jnp.where(y == 1.0, log_a, log_b), axis=-1)

    return jax.lax.map(at, epsilons)


def _best(delta, y, w, epsilons) -> tuple[float, float, float, bool]:
    """``(log-likelihood, β, ε, unbounded)`` maximising over ``epsilons`` and β (coarse, then
    fine); ``unbounded``: the largest β is (within 1e-4) as good as the best."""
    betas = jnp.asarray(BETAS, jnp.float32)
    ll = np.asarray(_grid_log_likelihood(betas, epsilons, delta, y, w))
    e, b = np.unravel_index(np.argmax(ll), ll.shape)
    unbounded = bool(ll[:, -1].max() >= ll.max() - 1e-4)
    step = np.log(BETAS[1] / BETAS[0])
    fine = np.exp(np.log(BETAS[b]) + np.linspace(-step, step, 41))
    ll_fine = np.asarray(
        _grid_log_likelihood(jnp.asarray(fine, jnp.float32), epsilons[e : e + 1], delta, y, w)
    )[0]
    i = int(np.argmax(ll_fine))
    return float(ll_fine[i]), float(fine[i]), float(epsilons[e]), unbounded


def fit_human_model(
    theta: jax.Array,
    features_a: jax.Array,
    features_b: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    gammas: Sequence[float] = (1.0,),
) -> HumanModelFit:
    """Fits β, ε (and γ over ``gammas``) to one labeller's answers by maximum likelihood.

    Args:
      theta: f32[F] the labeller's reward weights (their scale sets β's).
      features_a, features_b: f32[N, H, F] per-step features of the N answered pairs.
      labels: f32[N] answers, 1 = a, 0 = b (0.5, "equal", is left out).
      mask: bool[N] False for skipped answers (left out).
      gammas: myopic discounts to try; 1 (no myopia) must be among them.

    Returns:
      a :class:`HumanModelFit`; with no strict answer every log-likelihood is 0 and β, ε are
      NaN.
    """
    labels = np.asarray(labels, np.float32)
    strict = np.asarray(mask, bool) & ((labels == 0.0) | (labels == 1.0))
    if 1.0 not in gammas:
        raise ValueError(f"gammas={list(gammas)}: must include 1.0 (the rational model's)")
    n = int(strict.sum())
    if n == 0:
        nan = float("nan")
        return HumanModelFit(nan, nan, 1.0, 0.0, nan, 0.0, 0.0, 0)
    y, w = jnp.asarray(labels), jnp.asarray(strict, jnp.float32)
    returns = jax.vmap(segment_return, in_axes=(None, 0, None))
    theta = jnp.asarray(theta, jnp.float32)
    eps = jnp.asarray(EPSILONS, jnp.float32)
    best, rational = None, None
    for gamma in gammas:
        delta = returns(theta, features_a, gamma) - returns(theta, features_b, gamma)
        ll, beta, epsilon, unbounded = _best(delta, y, w, eps)
        if best is None or ll > best[0]:
            best = (ll, beta, epsilon, float(gamma), unbounded)
        if gamma == 1.0:
            rational = _best(delta, y, w, eps[:1])
    return HumanModelFit(
        beta=best[1],
        epsilon=best[2],
        gamma=best[3],
        log_likelihood=best[0],
        rational_beta=rational[1],
        rational_log_likelihood=rational[0],
        log_likelihood_ratio=max(best[0] - rational[0], 0.0),
        num_labels=n,
        beta_unbounded=best[4],
    )
