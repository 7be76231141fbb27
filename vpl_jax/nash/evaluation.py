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

In navigation the outcome is the goal an episode ends at and the pure strategies are the
scripted single-goal controllers (:func:`vpl_jax.envs.navigation.goal_policy`):
:func:`policy_episodes` and :func:`pure_episodes` roll them out from shared starts,
:func:`policy_scores` gives all of the above for one policy (:func:`score_policy`: from its
episodes; :func:`score_rows`: as result rows), and :func:`goal_preference_table` reads off the
goal-level preferences a learned :class:`~vpl_jax.nash.preference.PreferenceModel` found.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax.data.rollouts import rollout_episode
from vpl_jax.envs.navigation import Navigation, goal_policy
from vpl_jax.nash.preference import PreferenceModel
from vpl_jax.policies.evaluation import latent_episode


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


# --- episodes with outcomes (navigation's goals) -------------------------------------------------
def _features_and_goal(env: Navigation, final_state, traj):
    return traj.features.sum(0), env.goal_reached(final_state)


@functools.partial(jax.jit, static_argnames=("env", "act"))
def policy_episodes(env: Navigation, act, params, latents: jax.Array, keys: jax.Array):
    """``(phi f32[N, F], outcome i32[N])``: summed features and the goal reached (-1: none) of
    N episodes of ``act(params, obs, key)`` (e.g. :func:`~vpl_jax.nash.policy.network_act`),
    episode n with the latent ``latents[n]`` appended to its observations
    (:func:`~vpl_jax.policies.evaluation.latent_episode`) from start ``keys[n]``."""

    def one(z, key):
        return _features_and_goal(env, *latent_episode(env, act, params, z, key))

    return jax.vmap(one)(latents, keys)


@functools.partial(jax.jit, static_argnames=("env",))
def pure_episodes(env: Navigation, keys: jax.Array):
    """``(phi f32[G, N, F], outcome i32[G, N])`` of each scripted single-goal policy (the pure
    strategies, :func:`~vpl_jax.envs.navigation.goal_policy`) from the same starts as
    :func:`policy_episodes` with the same keys."""

    def per_goal(g):
        policy = goal_policy(env, g)

        def one(key):
            return _features_and_goal(env, *rollout_episode(env, policy, key, env.episode_length))

        return jax.vmap(one)(keys)

    phis, outcomes = zip(*[per_goal(g) for g in range(env.num_goals)], strict=True)
    return jnp.stack(phis), jnp.stack(outcomes)


def policy_scores(theta, shares, phi, outcome, pure, outcome_names) -> dict:
    """One policy's scores under a population of rational types (``theta: f32[K, F]``,
    ``shares: f32[K]``) from its episodes (``phi f32[N, F]``, ``outcome i32[N]``,
    :func:`policy_episodes`) and the pure strategies' (``pure``, :func:`pure_episodes`):

    * ``goal_share``: ``{name: share of episodes with that outcome}`` for ``outcome_names``
      (outcome i is ``outcome_names[i]``), and ``none`` for outcome -1;
    * ``margin``: f32[G] :func:`pure_strategy_margins`; ``exploitability``: their max;
    * ``win_rate``: f32[K] :func:`type_win_rates`.
    """
    phi_pure, _ = pure
    outcome = np.asarray(outcome)
    share = {g: float(np.mean(outcome == i)) for i, g in enumerate(outcome_names)}
    share["none"] = float(np.mean(outcome < 0))
    return {
        "goal_share": share,
        "margin": np.asarray(pure_strategy_margins(theta, shares, phi, outcome, phi_pure)),
        "exploitability": float(exploitability(theta, shares, phi, outcome, phi_pure)),
        "win_rate": np.asarray(type_win_rates(theta, phi, outcome, phi_pure)),
    }


def score_policy(
    env: Navigation,
    act,
    params,
    latents: jax.Array,
    keys: jax.Array,
    theta: jax.Array,
    shares: jax.Array,
    pure,
    outcome_names,
) -> dict:
    """:func:`policy_scores` of N episodes of a policy (:func:`policy_episodes` of ``act``,
    ``params`` and ``latents: f32[N, Z]`` from the N starts ``keys``) under the population
    ``theta: f32[K, F]``, ``shares: f32[K]``, against the pure strategies' episodes from the same
    starts (``pure``, :func:`pure_episodes` of ``keys``)."""
    phi, outcome = policy_episodes(env, act, params, latents, keys)
    return policy_scores(theta, shares, phi, outcome, pure, outcome_names)


def score_rows(scores: dict, outcome_names, type_names) -> list[dict]:
    """One policy's :func:`policy_scores` as long-format rows (``metric``, ``value``, and
    ``goal`` or ``user_type``): ``goal_share`` per outcome and ``none``, ``margin`` per pure
    strategy (outcome ``outcome_names[g]``), ``exploitability``, and ``win_rate`` per type
    (``type_names``)."""
    shares = scores["goal_share"].items()
    rows = [{"metric": "goal_share", "value": v, "goal": g} for g, v in shares]
    rows += [
        {"metric": "margin", "value": v, "goal": g}
        for g, v in zip(outcome_names, scores["margin"], strict=True)
    ]
    rows.append({"metric": "exploitability", "value": scores["exploitability"]})
    return rows + [
        {"metric": "win_rate", "value": v, "user_type": name}
        for name, v in zip(type_names, scores["win_rate"], strict=True)
    ]


def goal_preference_table(
    env: Navigation, model: PreferenceModel, params, keys: jax.Array
) -> np.ndarray:
    """f32[G, G]: the learned ``P(g ≻ h)``, averaged over pairs of scripted episodes
    (:func:`~vpl_jax.envs.navigation.goal_policy`, one from each start in ``keys``) ending at
    goals g and h: the goal-level cycle a population preference model found, if any. One
    compiled program per task and model (params and starts are its arguments)."""
    return np.asarray(_goal_preferences(env, model, params, keys))


@functools.partial(jax.jit, static_argnames=("env", "model"))
def _goal_preferences(env: Navigation, model: PreferenceModel, params, keys: jax.Array):
    def episodes(g):
        policy = goal_policy(env, g)
        return jax.vmap(lambda k: rollout_episode(env, policy, k, env.episode_length)[1].obs)(keys)

    obs = jnp.stack([episodes(g) for g in range(env.num_goals)])  # [G, N, T, O]
    e = model.embed(params, obs, jnp.ones(obs.shape[:-1], bool))  # [G, N, E]
    logits = model.embedding_logit(params, e[:, None, :, None], e[None, :, None, :])
    return jax.nn.sigmoid(logits).mean((2, 3))
