"""The geometric mixture of two Gaussian policies, in closed form.

Nash-MD plays against ``pi^(1-beta) mu^beta`` (normalised), the geometric mixture of the current
policy and the reference. For diagonal Gaussians ``N(m1, s1^2)`` and ``N(m2, s2^2)`` it is again a
Gaussian: precisions mix linearly and the mean is the precision-weighted mean,

    1/s^2 = (1 - beta)/s1^2 + beta/s2^2,    m = s^2 ((1 - beta) m1/s1^2 + beta m2/s2^2).

For tanh-squashed Gaussians the Jacobian factors enter with total power 1, so the geometric mixture
of the squashed policies is the squashed geometric mixture of the Gaussians.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def geometric_mixture(
    mean_pi: jax.Array,
    std_pi: jax.Array,
    mean_mu: jax.Array,
    std_mu: jax.Array,
    beta: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)`` of the normalised ``N(mean_pi, std_pi^2)^(1-beta) N(mean_mu, std_mu^2)^beta``
    (elementwise over any matching shapes; ``beta`` in [0, 1])."""
    prec_pi, prec_mu = 1.0 / jnp.square(std_pi), 1.0 / jnp.square(std_mu)
    precision = (1.0 - beta) * prec_pi + beta * prec_mu
    mean = ((1.0 - beta) * prec_pi * mean_pi + beta * prec_mu * mean_mu) / precision
    return mean, jax.lax.rsqrt(precision)
