"""Judging a policy by a population's *true* preferences: margins of pure strategies against it,
its exploitability, and each user type's win rate.

A population of rational user types (weights ``theta: f32[K, F]``, shares ``w: f32[K]``) prefers
trajectory τ to τ′ with probability

    P(τ ≻ τ′) = sum_k w_k [ 1(θ_k · Φ(τ) > θ_k · Φ(τ′)) + 1/2 · 1(θ_k · Φ(τ) = θ_k · Φ(τ′)) ],

``Φ`` the trajectory's summed features. A policy is compared with G *pure strategies* (e.g. a
scripted controller per goal), whose episodes start where the policy's do (common random
numbers). Every episode has a discrete *outcome* (e.g. the goal it ends at, -1 for none); pure
strategy g's outcome is g, and two episodes with the same outcome tie: the question is which
outcome a policy goes for, not how fast it gets there (scripted controllers are faster than any
learned policy, and counting speed would make a perfect lottery look exploitable). Then

    margin_g = mean_i [ 2 P(τ^g_i ≻ τ_i) - 1 ]     (0 where outcome_i = g),
    exploitability = max_g margin_g,

the best win-probability margin a pure strategy achieves against the policy: 0 for the Nash
lottery of a symmetric cyclic population, 1/3 for any single goal when each goal beats another
with a 2/3 majority. Shapes: N episodes, G pure strategies, K types, F features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def type_preferences(theta: jax.Array, phi_a: jax.Array, phi_b: jax.Array) -> jax.Array:
    """f32[K, ...]: each rational type's ``P(a ≻ b)`` (1, 1/2 at a tie, 0) for summed features
    ``phi_a, phi_b: f32[..., F]``."""
    r_a = jnp.einsum("kf,...f->k...", theta, phi_a)
    r_b = jnp.einsum("kf,...f->k...", theta, phi_b)
    return 0.5 * (1.0 + jnp.sign(r_a - r_b))


def pure_strategy_margins(
    theta: jax.Array,
    shares: jax.Array,
    phi: jax.Array,
    outcome: jax.Array,
    phi_pure: jax.Array,
) -> jax.Array:
    """f32[G]: ``margin_g`` of each pure strategy against the policy (module docstring).

    Args:
      theta: f32[K, F]; shares: f32[K] (summing to 1).
      phi: f32[N, F] the policy's episodes' summed features; outcome: i32[N].
      phi_pure: f32[G, N, F] pure strategy g's episode from the start of the policy's episode i.
    """
    p_pure = jnp.einsum("k,kgn->gn", shares, type_preferences(theta, phi_pure, phi[None]))
    same = outcome[None, :] == jnp.arange(phi_pure.shape[0])[:, None]
    return jnp.mean(jnp.where(same, 0.0, 2.0 * p_pure - 1.0), axis=1)


def exploitability(theta, shares, phi, outcome, phi_pure) -> jax.Array:
    """f32[]: ``max_g margin_g`` (arguments as :func:`pure_strategy_margins`)."""
    return jnp.max(pure_strategy_margins(theta, shares, phi, outcome, phi_pure))


def type_win_rates(theta, phi, outcome, phi_pure) -> jax.Array:
    """f32[K]: each type's probability of preferring the policy's episode to a uniformly chosen
    pure strategy's (same outcome: 1/2). 1/2 for a type the policy serves as well as the
    uniform lottery does."""
    p_policy = type_preferences(theta, phi[None], phi_pure)  # [K, G, N]
    same = outcome[None, :] == jnp.arange(phi_pure.shape[0])[:, None]
    return jnp.mean(jnp.where(same[None], 0.5, p_policy), axis=(1, 2))
