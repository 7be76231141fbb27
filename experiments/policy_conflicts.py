"""Does a population's disagreement reach its policies? One policy per user type, each scored
under every type's reward.

    python experiments/policy_conflicts.py --tasks highway --register examples/mixed_drivers.py \
        --highway-types aggressive cautious lawful courteous commuter considerate stickler

For every user type ``t`` of each task's population, PPO trains the oracle policy conditioned on
(and rewarded by) the type's mean weights ``theta_t`` — every type and seed in one ``vmap`` — and
each policy is then evaluated under every type's ``theta_b``. ``regret[a, b] = R_b(pi_b) -
R_b(pi_a)`` is what type ``b`` loses when it is served the policy made for ``a`` (paired by seed;
``R_b`` the true return ``theta_b · sum_t phi_t`` over the task's episodes).

Pluralism shows in policies only as far as these regrets are large. If the policy made for the
majority costs a minority little, one reward for everyone (BTL) serves that minority about as
well as anything can, however well a latent model separates the types' rewards: the gap that
``underspecification.py`` can show between BTL's and VPL's policies is bounded by the regrets
here. Run it before reading a policy comparison on a new population.

Writes tidy rows (``true_return`` and ``regret``, method ``policy_<a>``, user type ``b``; one row
per seed), the regret matrix in ``summary.md`` and a heat map ``<task>_regret.png``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import harness, pipeline
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.checks import Choice, Choices, Float, Int, checked
from vpl_jax.data.rollouts import collect
from vpl_jax.keys import named_key
from vpl_jax.plotting import plt


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks: tuple[str, ...] = ("highway",)
    """Tasks to run."""
    navigation_types: tuple[str, ...] = ("goal_a", "goal_b", "cautious", "hurried")
    """User types of navigation (--population gives another mixture; shares do not matter)."""
    highway_types: tuple[str, ...] = ("aggressive", "cautious", "lawful", "courteous")
    """User types of highway."""
    locomotion_types: tuple[str, ...] = ("forward", "backward", "left", "right")
    """User types of locomotion."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Unused here (no labels are drawn); kept so populations read as in every study."""
    num_seeds: int = checked(2, Int(ge=1))
    """Independent PPO seeds per type."""
    ppo: P.PPOConfig = P.PPOConfig()
    """PPO, the same for every type."""
    reward_scaling: str = checked(pipeline.DEFAULT_REWARD_SCALING, Choice(pipeline.REWARD_SCALING))
    """Scaling of each type's reward against reference steps (as underspecification's)."""
    num_reference_episodes: int = checked(64, Int(ge=1))
    """Behaviour-policy episodes the reference steps are drawn from."""
    num_reference_states: int = checked(256, Int(ge=1))
    """Reference steps of per-type reward scaling."""
    num_eval_episodes: int = checked(64, Int(ge=1))
    """Evaluation episodes per (policy, type) pair; every pair sees the same starts."""

    def validate(self):
        super().validate()
        Choices(harness.supported_tasks(type(self))).check("tasks", self.tasks)
        harness.check_type_fields(self)  # unknown or repeated user types, naming the field
        for task in self.tasks:
            env = harness.task_env(self, task)
            pipeline.check_policy_config(self.ppo, env)
            population = harness.task_population(self, task)
            if population.num_types < 2:
                raise harness.ConfigError(
                    f"population of {task}: policy_conflicts compares user types and needs "
                    f"two or more (got {list(population.type_names)}); a Gaussian population "
                    "has one"
                )
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        num_seeds=5,
        ppo=P.PPOConfig(total_timesteps=50_000_000, num_envs=4096, num_minibatches=32),
        chunk_updates=10,
    ),
}


def reference_steps(env, key: jax.Array, config: Config) -> jax.Array:
    """f32[N, F]: live steps' features of behaviour-policy episodes (the oracle's reward input)."""
    traj = collect(env, named_key(key, "episodes"), config.num_reference_episodes)
    bank = R.SegmentBank(inputs=traj.features, alive=traj.alive, kind="features")
    return R.reference_inputs(named_key(key, "steps"), bank, config.num_reference_states)


def type_policies(
    config: Config, env, theta: jax.Array, key: jax.Array, checkpointer=None
) -> tuple[np.ndarray, dict]:
    """``(returns, history)``: ``returns: f32[T, S, T]``, ``returns[a, s, b]`` the true return
    under ``theta[b]`` of seed ``s`` of the policy trained for ``theta[a]`` (``theta: f32[T, F]``,
    each type's mean weights), and PPO's training history (``[updates, T * S]``)."""
    num_types, num_seeds = theta.shape[0], config.num_seeds
    references = reference_steps(env, named_key(key, "references"), config)
    trainer = pipeline.PolicyTrainer(
        env, "oracle", None, config.ppo, config.chunk_updates, config.reward_scaling
    )
    runs = jnp.repeat(theta, num_seeds, axis=0)  # f32[T * S, F], type-major
    inputs = {
        "theta": runs[:, None, :],  # each run's table holds its one type
        "references": jnp.broadcast_to(references, (runs.shape[0], *references.shape)),
    }
    keys = jax.random.split(named_key(key, "ppo"), runs.shape[0])
    states, history = trainer.train(keys, inputs, "PPO, one policy per type", checkpointer)
    k_eval = named_key(key, "evaluation")

    def score(state, z):
        z_all = jnp.broadcast_to(z, theta.shape)  # the policy of one type, scored by every type
        return trainer.evaluate(state, z_all, theta, k_eval, config.num_eval_episodes).true_return

    returns = jax.vmap(score)(states, runs)  # f32[T * S, T]
    return np.asarray(returns).reshape(num_types, num_seeds, num_types), history


def regrets(returns: np.ndarray) -> np.ndarray:
    """f32[T, S, T]: ``R_b(pi_b) - R_b(pi_a)`` per seed, from ``returns[a, s, b]``."""
    own = np.einsum("bsb->sb", returns)  # f32[S, T]: each type served by its own policy
    return own[None] - returns


def plot_regret(task: str, type_names, regret: np.ndarray) -> plt.Figure:
    mean = regret.mean(axis=1)  # f32[T, T] over seeds
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(type_names), 1.0 + 0.6 * len(type_names)))
    image = ax.imshow(mean, cmap="Reds", vmin=min(0.0, mean.min()))
    ax.set_xticks(range(len(type_names)), type_names, rotation=45, ha="right")
    ax.set_yticks(range(len(type_names)), [f"policy for {t}" for t in type_names])
    ax.set_xlabel("user type served")
    for a in range(len(type_names)):
        for b in range(len(type_names)):
            ax.text(b, a, f"{mean[a, b]:.1f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="regret (true return lost)")
    ax.set_title(f"{task}: what each type loses under another type's policy")
    fig.tight_layout()
    return fig


def regret_table(type_names, regret: np.ndarray) -> str:
    """Markdown: the mean regret over seeds, a row per policy, a column per type served."""
    mean = regret.mean(axis=1)
    lines = [
        "| policy made for \\ type served | " + " | ".join(type_names) + " |",
        "|---|" + "---|" * len(type_names),
    ]
    for a, name in enumerate(type_names):
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in mean[a]) + " |")
    return "\n".join(lines)


def main(config: Config, results: harness.RunResults) -> str:
    key = jax.random.PRNGKey(config.seed)
    notes = []
    for task in config.tasks:
        env = harness.task_env(config, task)
        population = harness.task_population(config, task)
        names = list(population.type_names)
        theta = jnp.asarray(population.theta_mean)
        checkpointer = results.checkpointer(task, config.checkpoint_every)
        returns, history = type_policies(config, env, theta, named_key(key, task), checkpointer)
        results.log_ppo_history(f"{task}/ppo", history, config.ppo.env_steps_per_update)
        regret = regrets(returns)
        for a, policy in enumerate(names):
            for s in range(config.num_seeds):
                for b, served in enumerate(names):
                    common = dict(method=f"policy_{policy}", task=task, user_type=served, seed=s)
                    results.add(metric="true_return", value=float(returns[a, s, b]), **common)
                    results.add(metric="regret", value=float(regret[a, s, b]), **common)
        results.figure(plot_regret(task, names, regret), f"{task}_regret")
        worst = regret.mean(axis=1).max(axis=0)  # per type served: its largest mean regret
        notes.append(
            f"### {task}: regret (mean over {config.num_seeds} seeds)\n\n"
            + regret_table(names, regret)
            + "\n\nLargest regret per type served: "
            + ", ".join(f"{n} {w:.1f}" for n, w in zip(names, worst, strict=True))
        )
    return "\n\n".join(notes)


if __name__ == "__main__":
    harness.run_experiment("policy_conflicts", Config, PRESETS, main, description=__doc__)
