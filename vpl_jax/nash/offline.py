"""Offline direct preference optimisation of a control policy: DPO and IPO on trajectories.

The control analogue of the language-model methods: from labelled pairs of recorded trajectories
``(τ_a, τ_b, y)`` and a reference policy μ, train π on the trajectory log-likelihood ratio

    h = [log π(τ_a) - log μ(τ_a)] - [log π(τ_b) - log μ(τ_b)]

with DPO's logistic loss or IPO's squared loss (:mod:`vpl_jax.nash.direct`). The dynamics cancel
in ``h`` (both policies act in the same world), so only the actions' likelihoods enter:
``log π(τ) = log sum_k w_k prod_t π(a_t | s_t, ε_k)`` for the lotteries over K modes of
:mod:`vpl_jax.nash.policy`: both the network and the mode weights learn (the weights with their
own, larger step size: they are what moves probability between outcomes, as in Nash-MD).
Recorded actions can be exactly ±1; they are clipped to ``±action_bound`` before ``atanh`` (see
:func:`vpl_jax.nash.policy.pre_squash`), and tanh's Jacobian, the same for π and μ, cancels.

Training starts from the reference (π_0 = μ, uniform over the modes, so h = 0), as DPO and IPO
do from the SFT policy. Reference log-likelihoods are computed once. No environment interaction:
the whole run is one ``jit``-ed ``lax.scan`` over Adam steps on random minibatches of labelled
pairs. :func:`train_direct_on_dataset` runs it on a preference dataset's segments and pairs.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from vpl_jax.checks import Choice, Float, Int, check_config, checked
from vpl_jax.data import PreferenceDataset
from vpl_jax.nash.direct import dpo_loss, ipo_loss, log_ratio_margin
from vpl_jax.nash.policy import (
    noise_nodes,
    pre_squash,
    trajectory_log_prob,
    uniform_log_weights,
)
from vpl_jax.policies.networks import ActorCritic
from vpl_jax.rewards.batch import user_pairs

LOSSES = ("dpo", "ipo")


@dataclasses.dataclass(frozen=True)
class DirectConfig:
    """Offline DPO/IPO training.

    Attributes:
      loss: ``"dpo"`` (logistic) or ``"ipo"`` (squared).
      beta: DPO's inverse temperature on the log-ratio margin.
      tau: IPO's regularisation; the margin is regressed to ``±1 / (2 tau)``.
      num_steps: Adam steps.
      pairs_per_batch: labelled pairs per step.
      learning_rate: Adam's step size for the network. Small: a trajectory's log-likelihood sums
        every step's, so the margins move fast with the network (at 3e-4 the loss first rises).
      mode_learning_rate: Adam's step size for the mode log-weights.
      num_modes: K, the modes of the lottery (the reference is uniform over them).
      action_bound: recorded actions are clipped to ``±action_bound`` before ``atanh``.
    """

    loss: str = checked("dpo", Choice(LOSSES))
    beta: float = checked(0.1, Float(gt=0))
    tau: float = checked(0.1, Float(gt=0))
    num_steps: int = checked(300, Int(ge=1))
    pairs_per_batch: int = checked(64, Int(ge=1))
    learning_rate: float = checked(3e-5, Float(gt=0))
    mode_learning_rate: float = checked(0.02, Float(gt=0))
    num_modes: int = checked(6, Int(ge=1))
    action_bound: float = checked(0.995, Float(gt=0, lt=1))

    def validate(self) -> DirectConfig:
        check_config(self)
        return self

    def objective(self, margin: jax.Array, labels: jax.Array) -> jax.Array:
        """f32[...]: the per-pair loss of log-ratio margins ``h`` and soft labels ``y``."""
        if self.loss == "dpo":
            return dpo_loss(margin, labels, self.beta)
        return ipo_loss(margin, labels, self.tau)


@functools.partial(jax.jit, static_argnames=("network", "config"))
def train_direct(
    network: ActorCritic,
    reference_params,
    obs: jax.Array,
    actions: jax.Array,
    alive: jax.Array,
    pairs: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    config: DirectConfig,
    key: jax.Array,
):
    """DPO or IPO from the reference; returns ``((params, log_weights f32[K]), losses
    f32[num_steps])``, the learned lottery and the loss per step.

    Args:
      network: the policy network (:func:`~vpl_jax.policies.ppo.policy_network`).
      reference_params: μ's params (uniform over the modes), also π's starting point.
      obs: f32[S, T, O] the observation before each step of S recorded trajectories (no noise
        input; e.g. ``Segments.previous_obs`` of whole episodes).
      actions: f32[S, T, A] the recorded actions.
      alive: bool[S, T].
      pairs: i32[P, 2] indices (a, b) into the trajectories; labels: f32[P] (1: a preferred);
        mask: bool[P] (False: unlabelled, never drawn).
    """
    config.validate()
    nodes = noise_nodes(config.num_modes)
    u = pre_squash(actions, config.action_bound)
    reference = (reference_params, uniform_log_weights(config.num_modes))

    def log_prob(policy, index):
        params, log_weights = policy
        log_weights = jax.nn.log_softmax(log_weights)
        return trajectory_log_prob(
            network, params, obs[index], u[index], alive[index], nodes, log_weights
        )

    # μ's log-likelihood of every trajectory, once (in chunks of 256 to bound memory).
    ref_logp = jax.lax.map(
        lambda i: log_prob(reference, i), jnp.arange(obs.shape[0]), batch_size=256
    )
    weights = mask.astype(jnp.float32) / jnp.maximum(jnp.sum(mask), 1)
    tx = optax.multi_transform(
        {
            "network": optax.adam(config.learning_rate),
            "modes": optax.adam(config.mode_learning_rate),
        },
        ("network", "modes"),
    )

    def loss(params, batch):
        a, b = pairs[batch, 0], pairs[batch, 1]
        margin = log_ratio_margin(
            log_prob(params, a), ref_logp[a], log_prob(params, b), ref_logp[b]
        )
        return jnp.mean(config.objective(margin, labels[batch]))

    def step(carry, k):
        params, opt_state = carry
        batch = jax.random.choice(k, pairs.shape[0], (config.pairs_per_batch,), p=weights)
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (policy, _), losses = jax.lax.scan(
        step, (reference, tx.init(reference)), jax.random.split(key, config.num_steps)
    )
    params, log_weights = policy
    return (params, jax.nn.log_softmax(log_weights)), losses


def train_direct_on_dataset(
    network: ActorCritic,
    reference_params,
    dataset: PreferenceDataset,
    config: DirectConfig,
    key: jax.Array,
):
    """:func:`train_direct` from the labelled pairs (all K + M of each) of ``dataset``'s
    training users, pooled, over its segments as the trajectories (the observations before
    each step, the actions, ``alive``; whole recorded episodes when ``segment_horizon`` is the
    episode length, as in the Nash study). Returns ``((params, log_weights f32[K]), losses
    f32[num_steps])``."""
    train, _ = dataset.split()
    pairs = user_pairs(train, "all")
    seg = dataset.segments
    return train_direct(
        network,
        reference_params,
        seg.previous_obs,
        seg.actions,
        seg.alive,
        pairs.pairs.reshape(-1, 2),
        pairs.labels.reshape(-1),
        pairs.mask.reshape(-1),
        config,
        key,
    )
