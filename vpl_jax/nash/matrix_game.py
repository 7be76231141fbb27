"""Nash learning from preferences on a matrix game (the tabular core of Nash-MD).

A preference table ``P: f32[n, n]`` with ``P[i, j] = P(i ≻ j)`` and ``P + P^T = 1`` defines a
symmetric two-player constant-sum game; its von Neumann winner (the *maximal lottery* of social
choice) is a mixed policy that no pure action beats. With a reference policy ``mu`` and
regularisation ``tau``, Nash-MD (Munos et al., 2023) iterates

    pi_mix  ∝ pi_t^(1 - eta tau) mu^(eta tau)              (geometric mixture with the reference)
    pi_t+1  ∝ pi_mix exp(eta P(y ≻ pi_mix))                (mirror-descent step against pi_mix)

whose *last* iterate converges to the regularised Nash equilibrium. ``tau = 0`` is plain
multiplicative weights against the current policy (self-play), which cycles in a cyclic game.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def win_probability(table: jax.Array, pi: jax.Array, opponent: jax.Array) -> jax.Array:
    """``P(pi ≻ opponent) = pi^T P opponent`` for mixed policies ``pi, opponent: f32[n]``."""
    return pi @ table @ opponent


def exploitability(table: jax.Array, pi: jax.Array) -> jax.Array:
    """The best win-probability margin a pure action achieves against ``pi``:
    ``max_i [P(i ≻ pi) - P(pi ≻ i)] = max_i 2 P(i ≻ pi) - 1`` (0 at the Nash equilibrium)."""
    return jnp.max(2.0 * (table @ pi) - 1.0)


def geometric_mix(log_pi: jax.Array, log_mu: jax.Array, mixture: float) -> jax.Array:
    """f32[n]: the log of ``pi^(1 - mixture) mu^mixture``, normalised (the opponent)."""
    return jax.nn.log_softmax((1.0 - mixture) * log_pi + mixture * log_mu)


def mirror_step(log_mix: jax.Array, payoff: jax.Array, eta: float) -> jax.Array:
    """f32[n]: the log of ``pi_mix exp(eta payoff)``, normalised: the mirror-descent step from
    ``pi_mix`` on the payoff vector (``payoff[i] = P(i ≻ pi_mix)`` in Nash-MD)."""
    return jax.nn.log_softmax(log_mix + eta * payoff)


def nash_md(
    table: jax.Array,
    reference: jax.Array,
    num_steps: int,
    eta: float = 0.5,
    tau: float = 0.1,
    init: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Runs Nash-MD for ``num_steps``; returns ``(final pi: f32[n], pis: f32[num_steps, n])``."""
    n = table.shape[0]
    pi0 = jnp.full((n,), 1.0 / n) if init is None else init
    log_mu = jnp.log(reference)

    def step(pi, _):
        log_mix = geometric_mix(jnp.log(pi), log_mu, eta * tau)
        new = jnp.exp(mirror_step(log_mix, table @ jnp.exp(log_mix), eta))
        return new, new

    final, pis = jax.lax.scan(step, pi0, None, length=num_steps)
    return final, pis
