"""LinearBayes: a Bayesian posterior over a user's reward weights theta from the task's features —
the interpretable baseline (Sadigh et al., 2017; Biyik & Sadigh, 2018).

The user latent is ``z = theta: f32[F]`` itself and the reward is linear in the features,
``r(phi_t, theta) = theta · phi_t``, so a pair's logit is ``theta · (Phi_a - Phi_b)`` with ``Phi``
the segment's summed live-step features. With a Gaussian prior ``N(mu_0, diag(sigma_0^2))``
the posterior given a user's labelled pairs is approximated by Laplace's method: Newton's method
finds the MAP (the log-posterior is concave; each step backtracks until it decreases enough, so
a fixed number of steps converges even on separable data under a weak prior), and the
Hessian there gives the covariance. Predictions integrate theta out with the probit
approximation ``P(a ≻ b) ≈ sigmoid(mu·d / sqrt(1 + pi/8 · d^T Sigma d))`` (MacKay, 1992).

The prior is the only thing trained: with ``learn_prior`` the trainer fits mu_0 and sigma_0 to
the training users by the same encode-a-subset, predict-all objective as VPL (an empirical-Bayes
estimate of the population); without it the prior stays ``N(0, prior_std^2 I)``. Cosine
similarity between the posterior mean and the true theta (``evaluation.theta_alignment``) says
how well a user's weights are recovered.

**The scale of theta.** The likelihood has no temperature: a Boltzmann user with rationality
beta answers ``sigmoid(beta theta_u · (Phi_a - Phi_b))``, so the model's theta is
``beta theta_u`` — the same direction (alignment is unchanged), beta times longer. A prior over the
users' weights ``theta_u ~ N(0, s^2 I)`` is therefore ``N(0, (beta s)^2 I)`` over the model's
theta: :meth:`LinearBayes.for_beta` sets ``prior_std`` so, and without training
:meth:`LinearBayes.prior_params` are the params of that prior.
"""

from __future__ import annotations

import dataclasses
import math

import distrax
import jax
import jax.numpy as jnp

from vpl_jax.checks import ConfigError, Float, Int, check_config, checked
from vpl_jax.rewards.base import (
    DISCOUNT,
    Params,
    sample_context,
    step_weights,
    sum_over_steps,
)
from vpl_jax.rewards.batch import PairBatch
from vpl_jax.rewards.likelihood import bradley_terry_nll, masked_mean, pair_metrics

LINE_SEARCH_STEPS = 12  # Newton step sizes tried: 1, 1/2, ..., 2^-11


@dataclasses.dataclass(frozen=True)
class LinearBayes:
    """Laplace posterior over linear reward weights.

    Attributes:
      prior_std: sigma_0 of the initial prior N(0, sigma_0^2 I).
      learn_prior: fit the prior's mean and scale to the training users.
      newton_steps: Newton iterations for the MAP (5-10 reach float precision here).
      min_context, max_context: context-size range in training (as for VPL; min_context may
        be 0, an empty context that trains the prior alone).
      discount: the myopic discount the likelihood assumes the labellers apply over a segment
        (B-Pref): ``Phi`` is then ``sum_t discount^(H-1-t) phi_t``; 1 is the partial-return
        model. Told a myopic user's true discount, the posterior is over the same theta the
        user's per-step reward has.
    """

    prior_std: float = checked(1.0, Float(gt=0))
    learn_prior: bool = True
    newton_steps: int = checked(10, Int(ge=1))
    min_context: int = checked(1, Int(ge=0))
    max_context: int | None = checked(None, Int(ge=1, optional=True))
    discount: float = checked(1.0, DISCOUNT)

    inputs = "features"  # the model reads the task's per-step features, not observations

    def __post_init__(self):
        check_config(self)
        if self.max_context is not None and self.max_context < self.min_context:
            raise ConfigError(
                f"LinearBayes.max_context={self.max_context}: must be None or >= "
                f"max(1, min_context={self.min_context})"
            )

    @classmethod
    def for_beta(cls, beta: float, theta_std: float = 1.0, **fields) -> LinearBayes:
        """A LinearBayes whose prior matches Boltzmann users of known rationality ``beta``
        (``P(a ≻ b) = sigmoid(beta theta_u · (Phi_a - Phi_b))``) with weights
        ``theta_u ~ N(0, theta_std^2 I)``: ``prior_std = beta * theta_std``, the scale of the
        model's theta = ``beta theta_u`` (module docstring). ``fields``: the other fields.

        Raises ``ValueError`` unless ``beta`` and ``theta_std`` are finite and > 0.
        """
        for name, value in (("beta", beta), ("theta_std", theta_std)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"LinearBayes.for_beta {name}={value!r}: must be finite and > 0")
        if "prior_std" in fields:
            raise ValueError("LinearBayes.for_beta sets prior_std = beta * theta_std; drop it")
        return cls(prior_std=beta * theta_std, **fields)

    def prior_params(self, num_features: int) -> Params:
        """The params of the untrained prior ``N(0, prior_std^2 I)`` over ``num_features``
        weights — what :meth:`init` returns, without a batch (e.g. to elicit from plain
        features with no training data)."""
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features={num_features!r}: must be an integer >= 1")
        return {
            "prior": {
                "mean": jnp.zeros(num_features),
                "log_std": jnp.full(num_features, math.log(self.prior_std)),
            }
        }

    def init(self, key: jax.Array, batch: PairBatch) -> Params:
        del key
        return self.prior_params(batch.input_dim)

    def _prior_moments(self, params):
        p = params["prior"]
        if not self.learn_prior:
            p = jax.lax.stop_gradient(p)
        return p["mean"], jnp.exp(p["log_std"])

    # --- the reward ----------------------------------------------------------------------------
    def reward(self, params: Params, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        """f32[...]: ``theta · phi`` for features ``x: f32[..., F]``, ``z = theta: f32[..., F]``."""
        if z is None:
            raise ValueError("LinearBayes.reward needs z = theta: f32[..., F]")
        return jnp.sum(x * z, axis=-1)

    def segment_return(self, params, x, alive, z=None) -> jax.Array:
        """f32[...]: ``sum_t alive_t theta · phi_t`` for ``x: f32[..., H, F]``, ``z = theta``."""
        if z is None:
            raise ValueError("LinearBayes.segment_return needs z = theta: f32[..., F]")
        return sum_over_steps(self.reward(params, x, z[..., None, :]), alive, self.discount)

    def feature_differences(self, batch: PairBatch) -> jax.Array:
        """f32[..., Q, F]: ``Phi_a - Phi_b``, the summed (discounted, for ``discount < 1``)
        live-step features of a minus b."""

        def summed(x, alive):
            x = jnp.where(alive[..., None], x, 0.0)
            if self.discount != 1.0:
                x = x * step_weights(x.shape[-2], self.discount)[:, None]
            return jnp.sum(x, axis=-2)

        return summed(batch.inputs_a, batch.alive_a) - summed(batch.inputs_b, batch.alive_b)

    def pair_logits(self, params: Params, batch: PairBatch, z: jax.Array) -> jax.Array:
        """f32[..., Q]: ``theta · (Phi_a - Phi_b)`` for one ``z = theta: f32[..., F]`` per user."""
        return jnp.einsum("...qf,...f->...q", self.feature_differences(batch), z)

    # --- the posterior -------------------------------------------------------------------------
    def prior(self, params: Params) -> distrax.MultivariateNormalDiag:
        return distrax.MultivariateNormalDiag(*self._prior_moments(params))

    def _laplace(self, params, context: PairBatch) -> tuple[jax.Array, jax.Array]:
        """``(mean f32[..., F], covariance f32[..., F, F])`` of the Laplace posterior."""
        d = self.feature_differences(context)
        w = context.mask.astype(d.dtype)
        y = context.labels
        mu0, sd0 = self._prior_moments(params)
        precision0 = 1.0 / jnp.square(sd0)

        def hessian(theta):
            p = jax.nn.sigmoid(jnp.einsum("...qf,...f->...q", d, theta))
            curvature = w * p * (1.0 - p)
            h = jnp.einsum("...q,...qf,...qg->...fg", curvature, d, d)
            return h + jnp.diag(precision0), p

        def objective(theta):
            """Negative log-posterior (up to a constant); ``theta`` may carry extra leading axes."""
            logits = jnp.einsum("...qf,...f->...q", d, theta)
            nll = jnp.sum(w * (jax.nn.softplus(logits) - y * logits), axis=-1)
            return nll + 0.5 * jnp.sum(precision0 * jnp.square(theta - mu0), axis=-1)

        step_sizes = 0.5 ** jnp.arange(LINE_SEARCH_STEPS, dtype=d.dtype)
        expand = (slice(None),) + (None,) * (d.ndim - 1)  # step_sizes[:, None, ..., None]

        def newton(theta, _):
            h, p = hessian(theta)
            grad = -jnp.einsum("...q,...qf->...f", w * (y - p), d) + precision0 * (theta - mu0)
            direction = jnp.linalg.solve(h, grad[..., None])[..., 0]
            # Backtracking (Armijo) over a fixed ladder of step sizes, all evaluated at once: a
            # full Newton step overshoots when the data are (nearly) separable and the prior
            # weak, and the iteration would oscillate or diverge.
            candidates = theta - step_sizes[expand] * direction
            f0 = objective(theta)
            decrease = jnp.sum(grad * direction, axis=-1)  # >= 0: h is positive definite
            # Rounding slack: near the MAP the decrease is below float precision, and the full
            # step (quadratic convergence) must still be taken rather than stalling off the MAP.
            slack = 8 * jnp.finfo(d.dtype).eps * (1.0 + jnp.abs(f0))
            sufficient = f0 - 1e-4 * step_sizes[expand[:-1]] * decrease + slack
            ok = objective(candidates) <= sufficient
            best = jnp.argmax(ok, axis=0)  # the largest step that decreases enough
            chosen = jnp.take_along_axis(candidates, best[None, ..., None], axis=0)[0]
            return jnp.where(jnp.any(ok, axis=0)[..., None], chosen, theta), None

        theta0 = jnp.broadcast_to(mu0, d.shape[:-2] + mu0.shape)
        theta, _ = jax.lax.scan(newton, theta0, None, length=self.newton_steps)
        h, _ = hessian(theta)
        return theta, jnp.linalg.inv(h)

    def posterior(self, params: Params, context: PairBatch) -> distrax.MultivariateNormalTri:
        """Laplace posterior over theta for ``context: PairBatch[..., K]`` (batch shape [...])."""
        mean, cov = self._laplace(params, context)
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        return distrax.MultivariateNormalTri(mean, jnp.linalg.cholesky(cov))

    def predictive_logits(self, params: Params, context: PairBatch, targets: PairBatch):
        """f32[..., M]: logits of ``E_theta sigmoid(theta · d)`` (probit approximation)."""
        mean, cov = self._laplace(params, context)
        d = self.feature_differences(targets)
        m = jnp.einsum("...qf,...f->...q", d, mean)
        v = jnp.einsum("...qf,...fg,...qg->...q", d, cov, d)
        return m / jnp.sqrt(1.0 + math.pi / 8.0 * v)

    def predict(self, params: Params, context: PairBatch, targets: PairBatch) -> jax.Array:
        return self.predictive_logits(params, context, targets)

    # --- training (of the prior) ---------------------------------------------------------------
    def loss(self, params: Params, batch: PairBatch, key: jax.Array, step: jax.Array):
        """Predictive NLL of all of each user's pairs given a random subset as context."""
        del step
        context = sample_context(key, batch, self.min_context, self.max_context)
        logits = self.predictive_logits(params, context, batch)
        nll = masked_mean(bradley_terry_nll(logits, batch.labels), batch.mask)
        metrics = pair_metrics(logits, batch.labels, batch.mask)
        metrics.update(loss=nll, nll=nll)
        return nll, metrics
