"""A trained policy on disk: saved to a folder, loaded back to act in its task.

Experiments that train policies save them (seed 0; seed s >= 1 in ``seed_<s>/``) beside their reward
models (:meth:`vpl_jax.harness.RunResults.save_policy`, into ``<run>/policies/<task>_<method>/``),
and the labelling app rolls them out for a person's z::

    save_policy("policies/nav_vpl", ppo, ppo.policy_params(state), "navigation", "vpl",
                env_kwargs={"num_goals": 2})     # one seed's state (no seed axis)
    policy = load_policy("policies/nav_vpl")
    policy.evaluate(z, theta, key, episodes=1).positions        # f32[U, E, T, 2]

A policy folder holds ``policy.json`` (the task's name and constructor arguments, the method,
the latent size Z and the :class:`~vpl_jax.policies.PPOConfig`) and ``params.msgpack`` (flax's
serialisation of :class:`~vpl_jax.policies.PolicyParams`: the network's params and the
observation statistics). Loading rebuilds the task (``envs.make(task, **env_kwargs)``; a
registered variant needs its registration imported first) and PPO's ``act`` for that config on
the task with a Z-dimensional latent, then restores the params into the structure that PPO has,
so a policy of another task or size is refused with a clear message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from vpl_jax import envs
from vpl_jax.atomic import atomic_write
from vpl_jax.envs.base import FeatureEnv
from vpl_jax.policies.evaluation import Evaluation, evaluate
from vpl_jax.policies.ppo import PPO, PolicyParams, PPOConfig, make_train
from vpl_jax.policies.wrappers import LatentReward, constant_sampler, latent_size
from vpl_jax.rewards.files import read_params, write_params


class PolicyFileError(ValueError):
    """A policy folder is missing, malformed, or does not fit its task."""


@dataclasses.dataclass(frozen=True)
class SavedPolicy:
    """A policy loaded by :func:`load_policy`.

    Attributes:
      task: the task's registered name; env: the task, built from it and its ``env_kwargs``.
      method: the method that trained it (``vpl``, ``btl``, ...).
      latent_size: Z, the latent appended to the observation (0: unconditioned).
      ppo: PPO rebuilt for the policy's config (its ``act`` is what acting needs).
      params: the trained :class:`~vpl_jax.policies.PolicyParams`.
    """

    task: str
    env: FeatureEnv
    method: str
    latent_size: int
    ppo: PPO
    params: PolicyParams

    def evaluate(
        self, z: jax.Array, theta: jax.Array, key: jax.Array, episodes: int = 1
    ) -> Evaluation:
        """Deterministic rollouts acting on ``z: f32[U, Z]``, scored with ``theta: f32[U, F]``
        (:func:`~vpl_jax.policies.evaluate`: every user, and every policy given the same
        ``key``, starts from the same states)."""
        return evaluate(self.env, self.ppo.act, self.params, z, theta, key, episodes)


def _acting_ppo(env: FeatureEnv, config: PPOConfig, num_latent: int) -> PPO:
    """PPO for ``config`` on ``env`` with a ``num_latent``-entry latent: its ``act`` and
    ``policy_params`` structure are those of every PPO trained there (neither depends on the
    reward or on which z are drawn)."""
    zero_reward = lambda next_state, z: jnp.zeros_like(next_state.reward)  # noqa: E731
    return make_train(
        LatentReward(env, constant_sampler(jnp.zeros(num_latent)), zero_reward), config
    )


def save_policy(
    folder: str | Path,
    ppo: PPO,
    params: PolicyParams,
    task: str,
    method: str,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Writes the policy ``params`` (one seed: no leading seed axis) that ``ppo`` trained on
    ``task`` (built with ``env_kwargs``) to ``folder`` (created; both files written
    atomically). Returns the folder."""
    folder = Path(folder)
    description = {
        "task": task,
        "env_kwargs": dict(env_kwargs or {}),
        "method": method,
        "latent_size": latent_size(ppo.env),
        "ppo": dataclasses.asdict(ppo.config),
    }
    with atomic_write(folder / "policy.json") as f:
        json.dump(description, f, indent=1)
    write_params(folder, params)
    return folder


def load_policy(folder: str | Path, env: FeatureEnv | None = None) -> SavedPolicy:
    """The policy saved by :func:`save_policy` in ``folder``, acting in ``env`` (None: the
    saved task built again from its name and arguments).

    Raises :class:`PolicyFileError` when a file is missing or malformed, the task is not
    registered, or the params do not have the structure and shapes of that PPO on the task.
    """
    folder = Path(folder)
    try:
        description = json.loads((folder / "policy.json").read_text(encoding="utf-8"))
        data = (folder / "params.msgpack").read_bytes()
        task, method = str(description["task"]), str(description["method"])
        num_latent = int(description["latent_size"])
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in description["ppo"].items()}
        config = PPOConfig(**fields)
        if env is None:
            env = envs.make(task, **description.get("env_kwargs", {}))
    except (OSError, json.JSONDecodeError) as e:
        raise PolicyFileError(f"cannot read the policy folder {folder}: {e}") from e
    except (KeyError, TypeError, ValueError) as e:  # missing keys, bad fields, unknown task
        raise PolicyFileError(f"{folder}/policy.json: {type(e).__name__}: {e}") from e
    ppo = _acting_ppo(env, config, num_latent)
    template = jax.eval_shape(lambda k: ppo.policy_params(ppo.init(k)), jax.random.PRNGKey(0))
    try:
        params = read_params(data, template)
    except ValueError as e:
        raise PolicyFileError(
            f"{folder}: params do not fit this policy on the task {task!r} (a policy of "
            f"another task or size?): {e}"
        ) from e
    return SavedPolicy(
        task=task,
        env=env,
        method=method,
        latent_size=num_latent,
        ppo=ppo,
        params=params,
    )
