"""The actor-critic network and its tanh-squashed Gaussian action distribution.

The policy samples a pre-squash action ``u ~ N(mean(s), diag(std²))`` and acts with
``a = tanh(u)``, so actions always lie in the tasks' ``[-1, 1]`` box. Its log-density is the
change-of-variables formula ``log pi(a|s) = log N(u) - sum log|d tanh(u)/du|``; we evaluate it at
the stored ``u`` rather than at ``atanh(a)``, because ``atanh`` of a float32 action that rounded to
±1 is infinite. The standard deviation is either a learned, state-independent parameter
(PureJaxRL's continuous-action PPO) or, with ``state_dependent_std``, a second head of the actor,
a function of the observation *and the latent z* (Brax's PPO is state-dependent too). A policy
conditioned on z serves users who want different amounts of exploration — a commuter's
aggressive driving tolerates noisy acceleration, a comfort-minded user's reward punishes every
jolt — and one shared standard deviation makes the majority set it for everyone. The critic is
a separate MLP on the same input.
"""

from __future__ import annotations

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "swish": nn.swish, "elu": nn.elu}
#: The names :func:`activation` knows.
ACTIVATIONS = tuple(_ACTIVATIONS)

#: The squashing bijector, applied to the last (action) axis as one event.
TANH = distrax.Block(distrax.Tanh(), ndims=1)


def _init(gain: float):
    """Glorot-uniform scaled by ``gain``: weights of variance ``gain² * 2 / (fan_in + fan_out)``.

    Used instead of ``orthogonal(gain)``: ``jax.jit(jax.vmap(train))`` with an orthogonal init
    hung in 6 of 6 runs on XLA CPU (all workers idle, the result never ready), and in 0 of 3 with
    this init, everything else equal.
    """
    return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def activation(name: str):
    """The activation function called ``name`` (raises naming the allowed ones)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs on one (already normalised) observation.

    ``__call__(obs: f32[..., O]) -> (mean f32[..., A], log_std, value f32[...])``: the
    pre-squash Gaussian's mean and log standard deviation (f32[A], or f32[..., A] with
    ``state_dependent_std``), and the state value. The state-dependent head starts at
    ``init_log_std`` for every state (zero kernel), so both variants begin with the same std.
    """

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0
    state_dependent_std: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        act = activation(self.activation)
        # Small output gains, as in PureJaxRL: the initial policy is close to N(0, std²) for every
        # state and the initial values are close to 0. PureJaxRL's gains are for orthogonal init;
        # we take Glorot-uniform with the same gains because orthogonal init's QR decomposition,
        # batched over seeds inside one jit, intermittently deadlocked XLA's CPU runtime (jax
        # 0.10.2, 2 cores) — see ``_init``.
        hidden = _init(np.sqrt(2))
        zeros = nn.initializers.zeros

        x = obs
        for width in self.hidden_sizes:
            x = act(nn.Dense(width, kernel_init=hidden, bias_init=zeros)(x))
        mean = nn.Dense(self.action_size, kernel_init=_init(0.01), bias_init=zeros)(x)
        if self.state_dependent_std:
            log_std = nn.Dense(
                self.action_size,
                kernel_init=zeros,
                bias_init=nn.initializers.constant(self.init_log_std),
                name="log_std",
            )(x)
        else:
            log_std = self.param(
                "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
            )

        v = obs
        for width in self.hidden_sizes:
            v = act(nn.Dense(width, kernel_init=hidden, bias_init=zeros)(v))
        value = nn.Dense(1, kernel_init=_init(1.0), bias_init=zeros)(v)
        return mean, log_std, jnp.squeeze(value, -1)


def tanh_gaussian(mean: jax.Array, log_std: jax.Array) -> distrax.Transformed:
    """The policy's action distribution: ``tanh`` of ``N(mean, diag(exp(log_std)²))``.

    ``mean: f32[..., A]``, ``log_std: f32[A]`` or ``f32[..., A]`` (broadcast against ``mean``).
    """
    std = jnp.broadcast_to(jnp.exp(log_std), mean.shape)
    return distrax.Transformed(distrax.MultivariateNormalDiag(mean, std), TANH)


def log_prob_of_pre_squash(dist: distrax.Transformed, u: jax.Array) -> jax.Array:
    """f32[...]: ``log pi(tanh(u))`` for pre-squash actions ``u: f32[..., A]``.

    The same value as ``dist.log_prob(tanh(u))``, without inverting ``tanh``.
    """
    return dist.distribution.log_prob(u) - dist.bijector.forward_log_det_jacobian(u)


def entropy_estimate(dist: distrax.Transformed, key: jax.Array) -> jax.Array:
    """f32[...]: one-sample estimate of the squashed distribution's entropy.

    ``H[tanh(u)] = H[u] + E_u[log|d tanh(u)/du|]`` has no closed form; the Gaussian part is exact
    and the Jacobian term uses one reparameterised sample (as Brax's PPO does).
    """
    u = dist.distribution.sample(seed=key)
    return dist.distribution.entropy() + dist.bijector.forward_log_det_jacobian(u)
