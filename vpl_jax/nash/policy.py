"""Mixed policies in control: a tanh-Gaussian policy conditioned on per-episode noise.

The Nash policy of a cyclic population is a *lottery* over outcomes (e.g. each of three goals a
third of the time). A Gaussian policy of the state alone mixes only through its action noise or
the random start, which the outcome barely depends on once the policy is decisive. So every policy
of this module sees one extra input, drawn once per episode and appended to the observation: a
point on the unit circle, ``ε = (cos φ, sin φ)`` with ``φ ~ U[0, 2π)`` (:func:`noise_sampler`,
used as the ``z_sampler`` of :class:`~vpl_jax.policies.LatentReward`, so PPO leaves it
unnormalised):

    π(τ) = ∫ π(τ | ε(φ)) dφ / 2π,    π(a_t | s_t, ε) a tanh-Gaussian.

Why this representation:

* any lottery over outcomes is a partition of the circle into arcs, whatever the start
  distribution (conditioning on the random start position instead ties the representable
  lotteries to the start box — 0.4 x 0.2 m in navigation — and needs the network to resolve
  boundaries inside it);
* shares move *continuously* as the arcs' ends move, so a policy gradient can trade probability
  between two outcomes without passing through the bad outcomes between them;
* on a circle every arc can border every other, so probability can flow a → b → c → a, as a
  cyclic game needs (on an interval the middle outcome can be squeezed out for good);
* the choice is in the observation at every step, so a memoryless policy keeps to it;
* for a fixed ε the policy is an ordinary Gaussian policy, so the closed-form geometric mixture
  (:mod:`vpl_jax.nash.gaussian`) applies per state.

**Lotteries over modes.** The policies that Nash-MD, self-play, IPO and DPO learn draw ε from K
fixed *modes*, the nodes ``ε_k`` of :func:`noise_nodes`, with learned weights ``w`` (a policy is
its network params and ``log w: f32[K]``):

    π(τ) = sum_k w_k π(τ | ε_k).

A mode is a plan (which goal to head for) and its weight how often the policy follows it. The
network refines what each mode does; the weights carry the lottery. This splits the KL to a
reference of the same form exactly (the chain rule): ``KL(π || μ) = KL(w || w_μ) + sum_k w_k
KL(π(· | ε_k) || μ(· | ε_k))``, so a learner can move probability between outcomes by
re-weighting modes at the price ``KL(w || w_μ)``, and a mode's behaviour is pinned to the
reference's for that mode by the second term (switching one episode's goal by changing the
network costs hundreds of nats against a decisive reference). The trajectory likelihood is
``log π(τ) = logsumexp_k (log w_k + sum_t log π(a_t | s_t, ε_k))`` (:func:`trajectory_log_prob`;
without weights, a Q-point midpoint rule over the whole circle).

Actions of recorded data can be exactly ±1 (the behaviour policies clip), where ``atanh`` is
infinite. :func:`pre_squash` clips them to ``±bound`` first (default 0.995, pre-squash ±3.0): a
tanh policy gives that band of actions almost no mass, so its value only sets how hard a saturated
action counts. Log-likelihoods here are those of the *pre-squash* actions, without tanh's
Jacobian ``-sum log(1 - a^2)``: it does not depend on the policy, so it cancels in every
log-ratio (DPO, IPO, the KL to a reference) and does not move maximum likelihood.

A reference policy of this form is cloned from noise-conditioned demonstrations with
:func:`clone_demonstrations` (in navigation, scripted runs to the goal of each arc of the noise
circle: :func:`clone_reference`); :func:`network_act` acts with a network and
:func:`lottery_latents` draws the noise of a lottery's episodes for evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from vpl_jax.checks import Float, Int, check_config, checked
from vpl_jax.data.rollouts import collect
from vpl_jax.envs.base import BehaviourPolicy, FeatureEnv
from vpl_jax.envs.navigation import Navigation, noisy_goal_policy
from vpl_jax.policies.networks import ActorCritic
from vpl_jax.policies.ppo import PPOConfig, policy_network
from vpl_jax.policies.wrappers import LatentReward

#: Size of the per-episode noise input ``(cos φ, sin φ)``.
NOISE_SIZE = 2


def on_circle(phi: jax.Array) -> jax.Array:
    """f32[..., 2]: the noise input ``(cos φ, sin φ)`` of angles ``phi: f32[...]``."""
    return jnp.stack([jnp.cos(phi), jnp.sin(phi)], axis=-1)


def noise_angle(eps: jax.Array) -> jax.Array:
    """f32[...]: the angle ``φ`` in ``[0, 2π)`` of noise inputs ``eps: f32[..., 2]``."""
    return jnp.mod(jnp.arctan2(eps[..., 1], eps[..., 0]), 2 * jnp.pi)


def noise_sampler():
    """``key -> ε: f32[2]``, uniform on the unit circle (a ``z_sampler`` for ``LatentReward``)."""
    return lambda key: on_circle(jax.random.uniform(key, (), maxval=2 * jnp.pi))


def noise_nodes(num_nodes: int) -> jax.Array:
    """f32[Q, 2]: the noise at the midpoints of Q equal arcs (quadrature nodes over φ; also
    a stratified sample of episodes' noise for evaluation)."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
    return on_circle(2 * jnp.pi * (jnp.arange(num_nodes) + 0.5) / num_nodes)


def gaussian(network: ActorCritic, params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)``, each f32[..., A]: the pre-squash Gaussian at raw ``obs: f32[..., O]``
    (the policies here do not normalise observations)."""
    mean, log_std, _ = network.apply(params, obs)
    return mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape)


@functools.cache
def network_act(network: ActorCritic):
    """``act(params, obs, key) -> f32[A]``: a stochastic action (``tanh`` of a draw from the
    pre-squash Gaussian at raw ``obs``, noise input included) of a noise-conditioned policy
    network. One function per network, so jitted consumers keyed on ``act`` (e.g.
    :func:`vpl_jax.nash.evaluation.policy_episodes`) compile once for all its params."""

    def act(params, obs, key):
        mean, std = gaussian(network, params, obs)
        return jnp.tanh(mean + std * jax.random.normal(key, mean.shape))

    return act


def pre_squash(actions: jax.Array, bound: float = 0.995) -> jax.Array:
    """f32[..., A]: ``atanh(clip(a, -bound, bound))`` (see the module docstring for why clip)."""
    if not 0.0 < bound < 1.0:
        raise ValueError(f"action bound must be in (0, 1), got {bound}")
    return jnp.arctanh(jnp.clip(actions, -bound, bound))


def gaussian_log_prob(mean: jax.Array, std: jax.Array, u: jax.Array) -> jax.Array:
    """f32[...]: ``log N(u; mean, diag(std^2))`` summed over the last (action) axis."""
    z = (u - mean) / std
    return jnp.sum(-0.5 * jnp.square(z) - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def trajectory_log_prob(
    network: ActorCritic,
    params,
    obs: jax.Array,
    u: jax.Array,
    alive: jax.Array,
    nodes: jax.Array,
    log_weights: jax.Array | None = None,
) -> jax.Array:
    """f32[...]: ``log sum_q w_q prod_t N(u_t; mean(s_t, ε_q), std)`` over the live steps.

    Args:
      network, params: the policy.
      obs: f32[..., T, O] the observation *before* each step, without the noise input.
      u: f32[..., T, A] pre-squash actions (:func:`pre_squash` of recorded actions).
      alive: bool[..., T].
      nodes: f32[Q, 2] noise values (:func:`noise_nodes`).
      log_weights: f32[Q] a lottery's normalised log-weights over the nodes; ``None``: ``1/Q``
        each (a quadrature over the noise circle).
    """
    if log_weights is None:
        log_weights = uniform_log_weights(nodes.shape[0])

    def at(eps):
        x = jnp.concatenate([obs, jnp.broadcast_to(eps, (*obs.shape[:-1], NOISE_SIZE))], -1)
        mean, std = gaussian(network, params, x)
        return jnp.sum(jnp.where(alive, gaussian_log_prob(mean, std, u), 0.0), axis=-1)

    per_node = jax.lax.map(at, nodes)  # [Q, ...]: one network pass over the data per node
    log_weights = log_weights.reshape((-1,) + (1,) * (per_node.ndim - 1))
    return jax.nn.logsumexp(per_node + log_weights, axis=0)


# --- lotteries over modes ---------------------------------------------------------------------
def uniform_log_weights(num_modes: int) -> jax.Array:
    """f32[K]: the log-weights of the uniform lottery over K modes."""
    return jnp.full((num_modes,), -jnp.log(num_modes))


def mode_of(eps: jax.Array, nodes: jax.Array) -> jax.Array:
    """i32[...]: the index of the node nearest to each noise input ``eps: f32[..., 2]``."""
    return jnp.argmax(eps @ nodes.T, axis=-1)


def stratified_modes(log_weights: jax.Array, n: int) -> jax.Array:
    """i32[n]: modes of n episodes in the proportions of the lottery ``log_weights: f32[K]``
    (inverse CDF at ``(i + 1/2) / n``: an even, deterministic sample for evaluation)."""
    cdf = jnp.cumsum(jax.nn.softmax(log_weights))
    modes = jnp.searchsorted(cdf, (jnp.arange(n) + 0.5) / n)
    return jnp.minimum(modes, log_weights.shape[0] - 1)


def lottery_latents(log_weights: jax.Array):
    """``latents(n) -> f32[n, 2]``: the noise inputs of n episodes of the lottery
    ``log_weights: f32[K]`` over the modes :func:`noise_nodes` (stratified: an even sample of
    its proportions, :func:`stratified_modes`)."""
    nodes = noise_nodes(log_weights.shape[0])
    return lambda n: nodes[stratified_modes(log_weights, n)]


def user_lottery_latents(log_weights: jax.Array, key: jax.Array):
    """``latents(n) -> f32[n, 2]``: the noise inputs of n episodes of per-user lotteries
    ``log_weights: f32[U, K]`` (e.g. :func:`~vpl_jax.nash.control.latent_lotteries`): episode
    n goes to user ``n mod U`` and draws a mode from that user's weights with ``key``."""
    nodes = noise_nodes(log_weights.shape[-1])

    def latents(n):
        users = jnp.arange(n) % log_weights.shape[0]
        return nodes[jax.random.categorical(key, log_weights[users])]

    return latents


@dataclasses.dataclass(frozen=True)
class CloneConfig:
    """Behaviour cloning (the "SFT" reference policy).

    Attributes:
      num_steps: Adam steps.
      batch_size: transitions per step.
      learning_rate: Adam's step size.
    """

    num_steps: int = checked(2000, Int(ge=1))
    batch_size: int = checked(1024, Int(ge=1))
    learning_rate: float = checked(3e-3, Float(gt=0))

    def validate(self) -> CloneConfig:
        check_config(self)
        return self


@functools.partial(jax.jit, static_argnames=("network", "config"))
def clone(
    network: ActorCritic,
    params,
    obs: jax.Array,
    u: jax.Array,
    config: CloneConfig,
    key: jax.Array,
):
    """Maximum likelihood of demonstrated pre-squash actions: returns the cloned params.

    ``obs: f32[N, O]`` (noise input included), ``u: f32[N, A]``. Only the actor (mean and
    log-std) learns; the critic keeps its initial weights (PPO trains it later).
    """
    tx = optax.adam(config.learning_rate)

    def loss(p, idx):
        mean, std = gaussian(network, p, obs[idx])
        return -jnp.mean(gaussian_log_prob(mean, std, u[idx]))

    def step(carry, k):
        p, opt_state = carry
        idx = jax.random.randint(k, (config.batch_size,), 0, obs.shape[0])
        value, grads = jax.value_and_grad(loss)(p, idx)
        updates, opt_state = tx.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), value

    (params, _), losses = jax.lax.scan(
        step, (params, tx.init(params)), jax.random.split(key, config.num_steps)
    )
    return params, losses


def clone_demonstrations(
    env: FeatureEnv,
    demo: BehaviourPolicy,
    num_episodes: int,
    ppo_config: PPOConfig,
    config: CloneConfig,
    key: jax.Array,
    action_bound: float = 0.999,
):
    """A noise-conditioned policy cloned from demonstrations: the "SFT" reference.

    ``demo`` acts on the raw task ``env`` with the episode's noise input (:func:`noise_sampler`,
    uniform on the circle) appended to the observation, ``state.obs[-NOISE_SIZE:]``, so the
    demonstrator can pick its plan by the noise (e.g. a goal per arc of the circle). Its
    ``num_episodes`` episodes train :func:`~vpl_jax.policies.ppo.policy_network` of
    ``ppo_config`` (raw observations, noise included) by maximum likelihood of the pre-squash
    actions (:func:`pre_squash` at ``action_bound``; :func:`clone`).

    Returns ``(network, params, losses f32[num_steps])``.
    """
    noisy = LatentReward(env, noise_sampler(), lambda state, z: jnp.zeros(()))
    k_demo, k_init, k_clone = jax.random.split(key, 3)
    episodes = collect(noisy, k_demo, num_episodes, policy=demo)
    before = jnp.concatenate([episodes.initial_obs[:, None], episodes.obs[:, :-1]], axis=1)
    network = policy_network(ppo_config, env.action_size)
    params = network.init(k_init, before[0, 0])
    obs = before.reshape(-1, before.shape[-1])
    u = pre_squash(episodes.actions, action_bound).reshape(-1, env.action_size)
    params, losses = clone(network, params, obs, u, config, k_clone)
    return network, params, losses


def reference_goal(arc_goals: Sequence[int], eps: jax.Array) -> jax.Array:
    """i32[...]: ``arc_goals[i]`` for noise inputs ``eps: f32[..., 2]`` on the i-th of
    ``len(arc_goals)`` equal arcs of the circle (counter-clockwise from φ = 0): the goal a
    reference's demonstrations head for on each arc."""
    arcs = jnp.asarray(arc_goals)
    arc = jnp.floor(noise_angle(eps) / (2 * jnp.pi) * len(arcs)).astype(jnp.int32)
    return arcs[jnp.clip(arc, 0, len(arcs) - 1)]


def clone_reference(
    env: Navigation,
    arc_goals: Sequence[int],
    demo_noise: float,
    num_episodes: int,
    ppo_config: PPOConfig,
    config: CloneConfig,
    key: jax.Array,
):
    """The "SFT" reference of navigation's goal game: :func:`clone_demonstrations` of
    ``num_episodes`` noisy scripted runs (pre-squash noise std ``demo_noise``,
    :func:`~vpl_jax.envs.navigation.noisy_goal_policy`) to the goal of the episode's noise arc
    (:func:`reference_goal` of ``arc_goals``, goal indices), so the lottery of the arcs is
    the reference's. Returns ``(network, params, losses f32[num_steps])``."""
    demo = noisy_goal_policy(
        env, lambda state: reference_goal(arc_goals, state.obs[-NOISE_SIZE:]), demo_noise
    )
    return clone_demonstrations(env, demo, num_episodes, ppo_config, config, key)
