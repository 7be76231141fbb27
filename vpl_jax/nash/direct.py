"""Direct preference objectives on trajectory log-likelihood ratios: DPO and IPO.

For a preference pair (preferred trajectory ``w``, rejected ``l``) and a reference policy ``mu``,
``h = [log pi(w) - log mu(w)] - [log pi(l) - log mu(l)]`` with ``log pi(tau) = sum_t log
pi(a_t | s_t)`` (the dynamics cancel in the ratio). Then

* DPO (Rafailov et al., 2023): ``-log sigmoid(beta h)``;
* IPO (Azar et al., 2023): ``(h - 1 / (2 tau))^2``, which regresses the margin to a fixed value
  instead of pushing it to infinity on deterministic preferences.

Soft labels ``y`` (the probability that the first trajectory is preferred) weight both orders.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def log_ratio_margin(
    logp_a: jax.Array, ref_logp_a: jax.Array, logp_b: jax.Array, ref_logp_b: jax.Array
) -> jax.Array:
    """``h = (log pi(a) - log mu(a)) - (log pi(b) - log mu(b))``, elementwise."""
    return (logp_a - ref_logp_a) - (logp_b - ref_logp_b)


def dpo_loss(margin: jax.Array, labels: jax.Array, beta: float) -> jax.Array:
    """f32[...]: ``-[y log sigmoid(beta h) + (1 - y) log sigmoid(-beta h)]``."""
    return -(labels * jax.nn.log_sigmoid(beta * margin)
             + (1.0 - labels) * jax.nn.log_sigmoid(-beta * margin))  # fmt: skip


def ipo_loss(margin: jax.Array, labels: jax.Array, tau: float) -> jax.Array:
    """f32[...]: ``y (h - 1/(2 tau))^2 + (1 - y) (h + 1/(2 tau))^2``."""
    target = 1.0 / (2.0 * tau)
    return labels * jnp.square(margin - target) + (1.0 - labels) * jnp.square(margin + target)
