"""The policy that serves the person, on request: VPL's, conditioned on their z, next to BTL's.

A run of ``underspecification`` saves its trained policies (seed 0, which the app uses; other seeds
in ``seed_<s>/``; :func:`~vpl_jax.policies.files.save_policy`). When the app serves such a run's
VPL, "show my policy" rolls out, offline and deterministically, the VPL policy acting on the
person's posterior mean z (from their answers so far) and BTL's one policy for everyone, from the
same start state (one per person, the same on every request, so a person sees how their answers move
their policy). Each rollout is scored by the person's own θ as LinearBayes reads it from their
answers (:func:`~vpl_jax.label.summary.theta_posterior`; like any pairwise θ, on the scale of their
rationality β).

A run without saved policies still serves; the page then says why the policy is unavailable
(:attr:`PolicyRollouts.reason`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import render
from vpl_jax.data.dataset import PreferenceDataset
from vpl_jax.keys import named_key
from vpl_jax.label.summary import LatentMap, theta_posterior
from vpl_jax.policies.files import SavedPolicy

#: The policies shown side by side, in this order: the person's (VPL, conditioned on their z),
#: then the one policy for everyone (BTL), when the run saved it.
SHOWN = ("vpl", "btl")


def unavailable_reason(
    dataset: PreferenceDataset, policies: Mapping[str, SavedPolicy], latent_map: LatentMap | None
) -> str | None:
    """Why the app cannot show the person's policy, or None when it can."""
    if not policies:
        return (
            "no saved policies: serve a run folder of underspecification (it saves the trained "
            "policies; reward_accuracy trains none)"
        )
    if "vpl" not in policies:
        return f"the run saved no VPL policy (it has {sorted(policies)})"
    if latent_map is None:
        return "the VPL policy acts on VPL's z: serve the run's VPL reward model (--method vpl)"
    vpl = policies["vpl"]
    if vpl.task != dataset.meta.task:
        return f"the VPL policy acts in task {vpl.task!r}, the dataset is of {dataset.meta.task!r}"
    z_dim = latent_map.means.shape[1]
    if vpl.latent_size != z_dim:
        return f"the VPL policy acts on a {vpl.latent_size}-entry z; the served VPL's z has {z_dim}"
    return None


class PolicyRollouts:
    """Rolls out the saved policies for a person (module docstring).

    Args:
      dataset: the served dataset (its task and feature names).
      policies: the run's saved policies by method (:func:`~vpl_jax.policies.files.load_policy`).
      latent_map: the served VPL's :class:`~vpl_jax.label.summary.LatentMap` (None without VPL).
      seed: the base of every person's start-state key.
    """

    def __init__(
        self,
        dataset: PreferenceDataset,
        policies: Mapping[str, SavedPolicy],
        latent_map: LatentMap | None,
        seed: int = 0,
    ):
        self.dataset = dataset
        self.policies = {m: policies[m] for m in SHOWN if m in policies}
        self.latent_map = latent_map
        self.seed = seed
        #: Why the policy cannot be shown (None: it can).
        self.reason = unavailable_reason(dataset, policies, latent_map)

    @property
    def methods(self) -> list[str]:
        """The methods shown, in :data:`SHOWN` order (empty when unavailable)."""
        return [] if self.reason else list(self.policies)

    def key(self, person: str) -> jax.Array:
        """The key of ``person``'s start state (the same on every request)."""
        return named_key(jax.random.PRNGKey(self.seed), f"policy/{person}")

    def rollout(self, person: str, answers: list[dict]) -> dict:
        """``{"z", "theta", "rollouts": [{"method", "path", "return"}]}``: each shown policy's
        episode from ``person``'s start state (VPL acting on their posterior mean ``z``), its
        path (:func:`vpl_jax.render.path_view`) and its return under their ``theta``."""
        if self.reason:
            raise ValueError(self.reason)
        z, _ = self.latent_map.moments(answers)
        theta = theta_posterior(self.dataset, answers)["mean"]
        theta = jnp.asarray(np.nan_to_num(np.asarray(theta, float)), jnp.float32)[None]
        rollouts = []
        for method, policy in self.policies.items():
            z_m = jnp.asarray(z if policy.latent_size else np.zeros(0), jnp.float32)[None]
            ev = policy.evaluate(z_m, theta, self.key(person), episodes=1)
            rollouts.append(
                {
                    "method": method,
                    "path": render.path_view(np.asarray(ev.positions[0, 0])),
                    "return": float(ev.true_return[0]),
                }
            )
        return {"z": z.tolist(), "theta": np.asarray(theta[0]).tolist(), "rollouts": rollouts}
