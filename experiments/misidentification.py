"""Reward misidentification: a reward that fits its data, and a policy that fails — and the
iterate loop that repairs it.

    python experiments/misidentification.py --preset cpu --run-name RUN

Navigation users (default: ``goal_a`` and ``cautious``, who both want goal a, the cautious ones
far from the hazard and the bystander) label segments of *narrow* behaviour data: every episode
steers around the hazard and the bystander (``Navigation.behaviour(avoid_hazard=1,
avoid_bystander=1)``), so the data never show what lies on the straight route through the
hazard. A reward learned from it predicts the test users' held-out pairs well; the policy
optimised on it is poor. ``misidentification_gap`` = held-out accuracy − normalised true return
makes that one number, where the normalised return is ``(R - R_still) / (R_oracle - R_still)``
(``R_still``: a policy that never moves; ``R_oracle``: PPO on the users' true reward), both means
over the test users.

Then the iterate loop (:func:`vpl_jax.iterate.iterate`; PEBBLE / preference comparisons): roll
out the current policy, ask the users about its segments (``random`` pairs, or the ones with the
highest ``info_gain`` about each user), retrain the reward and the policy, for
``len(iterate.schedule)`` rounds. Round 0 is the offline pipeline and is shared by both criteria.
Methods: ``btl_ensemble`` (BTL as PEBBLE trains it: a small bootstrap ensemble whose members'
disagreement is its belief for information gain; the policy maximises the members' mean
reward) and ``vpl``. For reference, the same offline pipeline on *broad* data of the same size
(``data = broad`` rows).

Rows (``user_type`` all: means over test users): ``heldout_accuracy`` (the original held-out
pairs), ``onpolicy_accuracy`` (the users' rational answers about pairs of the round's policy
segments against any segment), ``true_return``, ``normalized_return``, ``success`` and
``misidentification_gap``, with ``round``, ``n_queries`` (new queries per user so far),
``criterion`` and ``data`` fields; ``oracle`` and ``still`` rows give the references.

Seeds: ``num_seeds`` training seeds on the one dataset (the narrow data, and the broad data of
the reference). Each seed's loop diverges (its own rewards, policies, rolled-out segments and
answers), and every step trains or draws the S seeds in one ``vmap``
(:func:`vpl_jax.iterate.iterate` with S keys; the oracle: :func:`vpl_jax.iterate.offline_seeds`).
Every trained number is written per seed (``summary.md`` and ``intervals.json``: mean and 95 %
interval; the figure: error bars; the notes table: the mean); standing still is not trained and
is written once. Seed 0 is the run of one seed: ``--num-seeds 1`` gives the numbers of a
one-seed run exactly.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import tyro

from vpl_jax import envs, harness
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.active import has_belief
from vpl_jax.checks import Choices, Float, Int, checked
from vpl_jax.data import DatasetConfig, build_dataset
from vpl_jax.iterate import (
    LOOP_CRITERIA,
    IterateConfig,
    RoundResult,
    iterate,
    misidentification_gap,
    normalized_return,
    offline_seeds,
    seed_keys,
    with_seeds,
)
from vpl_jax.pipeline import PolicyTrainer, check_policy_config
from vpl_jax.plotting import draw_arena, errorbars, plot_paths, plt
from vpl_jax.users import Population

METHODS = ("btl", "btl_ensemble", "vpl")
TASK = "navigation"


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks = (TASK,)  # not a field: the deviations and the narrow data are navigation's
    tensorboard: tyro.conf.Suppress[bool] = False
    """Not offered here: the iterate loop's trainings keep no training curves."""
    navigation_types: tuple[str, ...] = ("goal_a", "cautious")
    """Navigation user types, in equal shares (--population gives any other)."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(2, Int(ge=1))
    """Training seeds (every round's reward and policy, the oracle), trained in one vmap on the
    one dataset; each seed's loop asks its own questions."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    shipped types are rational, inf)."""
    methods: tuple[str, ...] = checked(("btl_ensemble", "vpl"), Choices(METHODS))
    """Reward models (btl: random queries only; it has no belief for information gain)."""
    criteria: tuple[str, ...] = checked(LOOP_CRITERIA, Choices(LOOP_CRITERIA))
    """Query criteria of the iterate loop."""
    avoid_hazard: float = checked(1.0, Float(ge=0, le=1))
    """Share of the narrow data's episodes that steer around the hazard."""
    avoid_bystander: float = checked(1.0, Float(ge=0, le=1))
    """Share of the narrow data's episodes that steer around the bystander."""
    broad_reference: bool = True
    """Also run the offline pipeline on broad data (the default behaviour policy)."""
    data: DatasetConfig = DatasetConfig(
        num_users=48, context_size=8, heldout_size=24, pool_size=2048, num_episodes=256
    )
    """Preference data (users, K context and M held-out pairs per user, pool, episodes)."""
    reward_train: R.TrainConfig = R.TrainConfig(num_epochs=100, users_per_batch=8)
    """Reward-model training (every round from scratch)."""
    sizes: R.ModelSizes = R.ModelSizes(ensemble_size=3)
    """Reward-network sizes (VPL's context size is set to the loop's final context size)."""
    ppo: P.PPOConfig = P.PPOConfig(total_timesteps=600_000, center_rewards=True)
    """PPO (every round from scratch; navigation episodes have a fixed length, so centring the
    reward is safe)."""
    iterate: IterateConfig = IterateConfig(schedule=(8, 8), episodes_per_round=32)
    """The iterate loop (schedule: new queries per user in each round; its length is the
    number of rounds after round 0; the criterion is set by criteria, one loop each)."""

    def validate(self):
        super().validate()
        if self.tensorboard:
            raise harness.ConfigError(
                "tensorboard: misidentification logs no training curves (its iterate loop "
                "keeps none)"
            )
        if self.iterate.criterion != IterateConfig.criterion:
            raise harness.ConfigError(
                f"iterate.criterion={self.iterate.criterion!r}: set by criteria, which runs the "
                f"loop once per criterion (now {list(self.criteria)}); use --criteria instead"
            )
        self.data.validate(task_env(self), "data")
        check_policy_config(self.ppo, task_env(self))
        population(self)  # unknown or repeated user types raise, naming the field
        for method, model in reward_models(self).items():
            for criterion in self.criteria:
                if criterion == "info_gain" and not has_belief(model):
                    raise harness.ConfigError(
                        f"methods: {method!r} has no belief about a user for criterion "
                        "'info_gain'; use btl_ensemble or vpl, or criteria ['random']"
                    )
                dataclasses.replace(self.iterate, criterion=criterion).validate(model, "iterate")
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        data=DatasetConfig(
            num_users=256, context_size=16, heldout_size=48, pool_size=16384, num_episodes=2048
        ),
        reward_train=R.TrainConfig(num_epochs=200, users_per_batch=32, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16, ensemble_size=5),
        ppo=P.PPOConfig(
            total_timesteps=20_000_000, num_envs=2048, num_minibatches=32, center_rewards=True
        ),
        iterate=IterateConfig(
            schedule=(16, 16, 16, 16, 16),
            episodes_per_round=256,
            offered_per_user=256,
            num_samples=32,
            onpolicy_pairs=64,
            num_eval_episodes=32,
        ),
        num_seeds=5,
        chunk_updates=10,
    ),
}


def task_env(config: Config) -> envs.FeatureEnv:
    return envs.make(TASK, num_goals=config.num_goals)


def population(config: Config) -> Population:
    """``--population`` if given, else ``navigation_types`` in equal shares (every user with
    ``beta``, when given)."""
    return harness.task_population(config, TASK)


def reward_models(config: Config) -> dict[str, R.RewardModel]:
    """Each method's model; VPL's encoder is trained on contexts up to the loop's final size."""
    final_context = config.data.context_size + sum(config.iterate.schedule)
    return harness.reward_models(
        config.sizes,
        config.methods,
        final_context,
        "data.context_size + sum(iterate.schedule)",
    )


def checkpointers(config: Config, results: harness.RunResults, name: str):
    """Round r's PPO checkpoints of one loop, in ``checkpoints/<name>_round<r>``."""
    return lambda r: results.checkpointer(f"{name}_round{r}", config.checkpoint_every)


def still(policy_params, obs):
    """A policy that never moves: the baseline of the normalised return."""
    del policy_params
    return jnp.zeros((*obs.shape[:-1], 2))


# --- rows and figures -----------------------------------------------------------------------------
def add_round_rows(
    results, method, criterion, data, round_result: RoundResult, refs, seed: int
) -> dict:
    """Seed ``seed``'s rows of one round (``round_result`` without a seed axis, ``refs`` that
    seed's oracle and standing still)."""
    pipe = round_result.pipeline
    norm = normalized_return(pipe.policy.true_return, refs["oracle"], refs["still"])
    values = {
        "heldout_accuracy": pipe.heldout_accuracy,
        "onpolicy_accuracy": round_result.onpolicy_accuracy,
        "true_return": pipe.true_return,
        "normalized_return": norm,
        "success": float(np.mean(np.asarray(pipe.policy.success))),
        "misidentification_gap": misidentification_gap(pipe.heldout_accuracy, norm),
    }
    for metric, value in values.items():
        results.add(
            method=method,
            task=TASK,
            metric=metric,
            value=value,
            round=round_result.round,
            n_queries=round_result.n_queries,
            criterion=criterion,
            data=data,
            seed=seed,
        )
    return values


def plot_rounds(curves: dict, broad: dict) -> plt.Figure:
    """Gap, held-out accuracy and normalised return against the round, per method × criterion:
    the mean over seeds with its 95 % interval (``curves[(method, criterion)]``: per round
    ``{"round", metric: f64[S]}``; ``broad[method]``: ``{metric: f64[S]}``, dotted at its
    mean)."""
    metrics = (
        ("misidentification_gap", "misidentification gap"),
        ("heldout_accuracy", "held-out accuracy (narrow data)"),
        ("onpolicy_accuracy", "accuracy on the policy's segments"),
        ("normalized_return", "normalised true return"),
    )
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for i, ((method, criterion), rows) in enumerate(curves.items()):
            color = colors[list(dict.fromkeys(m for m, _ in curves)).index(method)]
            dodge = 0.04 * (i - (len(curves) - 1) / 2)  # error bars side by side, not on top
            errorbars(
                ax,
                [r["round"] + dodge for r in rows],
                np.stack([r[metric] for r in rows], axis=1),  # [S, rounds]
                f"{method} · {criterion}",
                marker="o" if criterion == "info_gain" else "s",
                ls="-" if criterion == "info_gain" else "--",
                color=color,
                zorder=3 + i,
            )
        for method, values in broad.items():
            color = colors[list(dict.fromkeys(m for m, _ in curves)).index(method)]
            ax.axhline(np.mean(values[metric]), color=color, ls=":", lw=1)
        ax.set_xticks(sorted({r["round"] for rows in curves.values() for r in rows}))
        ax.set_xlabel("round")
        ax.set_title(label, fontsize=10)
    axes[0].legend(fontsize=7, title="dotted: broad data, offline", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_paths_by_round(env, test_type_id, type_names, panels: dict) -> plt.Figure:
    """Test users' paths of the first and last round's policies (seed 0's)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    type_id = np.asarray(test_type_id)
    for ax, (title, positions) in zip(axes[0], panels.items(), strict=True):
        draw_arena(ax, env)
        positions = np.asarray(positions)  # [U, E, T, 2]
        for t, name in enumerate(type_names):
            paths = positions[type_id == t][:, :3].reshape(-1, *positions.shape[2:])
            plot_paths(ax, paths, [colors[t]] * len(paths))
            ax.plot([], [], color=colors[t], label=name)
        ax.set_title(title, fontsize=9)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# --- the experiment -------------------------------------------------------------------------------
def main(config: Config, results: harness.RunResults) -> str:
    env = task_env(config)
    pop = population(config)
    key = jax.random.PRNGKey(config.seed)
    k_data, k_broad, k_oracle, k_methods = jax.random.split(key, 4)
    narrow_policy = env.behaviour(config.avoid_hazard, config.avoid_bystander)
    narrow = build_dataset(k_data, env, pop, config.data, task=TASK, policy=narrow_policy)
    _, test = narrow.split()
    num_seeds, lines = config.num_seeds, []

    # References: the oracle (PPO on the true reward, conditioned on theta; S seeds in one
    # vmap) and standing still (nothing trained: one).
    start = time.time()
    oracle_trainer = PolicyTrainer(env, "oracle", None, config.ppo, config.chunk_updates)
    oracle = offline_seeds(
        seed_keys(k_oracle, num_seeds), with_seeds(narrow, num_seeds), None, "oracle",
        config.reward_train, oracle_trainer, config.iterate.num_eval_episodes, desc="oracle PPO",
        checkpointer=results.checkpointer("oracle", config.checkpoint_every),
    )  # fmt: skip
    baseline = P.evaluate(
        env, still, None, jnp.zeros((test.num_users, 0)), test.users.theta,
        jax.random.fold_in(k_oracle, 1), config.iterate.num_eval_episodes,
    )  # fmt: skip
    oracle_return = oracle.policy.true_return  # [S, U_test]
    refs = [{"oracle": oracle_return[s], "still": baseline.true_return} for s in range(num_seeds)]
    for s in range(num_seeds):
        results.add(method="oracle", task=TASK, metric="true_return",
                    value=oracle_return[s].mean(), seed=s)  # fmt: skip
    results.add(method="still", task=TASK, metric="true_return", value=baseline.true_return.mean())
    print(
        f"oracle true return {float(oracle_return.mean()):.2f} (mean of {num_seeds} seeds), "
        f"standing still {float(np.mean(baseline.true_return)):.2f} ({time.time() - start:.0f} s)"
    )

    def add_rows(method, criterion, data, r: RoundResult) -> dict:
        """Every seed's rows of round ``r``; returns each metric's ``f64[S]``."""
        per_seed = [add_round_rows(results, method, criterion, data, r.seed(s), refs[s], s)
                    for s in range(r.num_seeds)]  # fmt: skip
        return {m: np.array([v[m] for v in per_seed]) for m in per_seed[0]}

    curves, broad_values, panels = {}, {}, {}
    models = reward_models(config)
    for method, k_method in zip(
        config.methods, jax.random.split(k_methods, len(config.methods)), strict=True
    ):
        model = models[method]
        keys = seed_keys(k_method, num_seeds)  # seed 0: the one-seed run's key
        trainer = PolicyTrainer(env, method, model, config.ppo, config.chunk_updates)
        if config.broad_reference:
            start = time.time()
            broad = build_dataset(k_broad, env, pop, config.data, task=TASK)
            loop = dataclasses.replace(config.iterate, schedule=())
            (result,) = iterate(
                keys, broad, model, method, config.reward_train, trainer, loop,
                checkpointers=checkpointers(config, results, f"{method}_broad"),
            )  # fmt: skip
            broad_values[method] = add_rows(method, "offline", "broad", result)
            print(
                f"[{method}] broad data: gap "
                f"{broad_values[method]['misidentification_gap'].mean():.2f} "
                f"({time.time() - start:.0f} s)"
            )
        round0 = None
        for criterion in config.criteria:
            start = time.time()
            loop = dataclasses.replace(config.iterate, criterion=criterion)

            def report(r: RoundResult, method=method, criterion=criterion):
                values = add_rows(method, criterion, "narrow", r)
                curves.setdefault((method, criterion), []).append({"round": r.round, **values})
                mean = {m: v.mean() for m, v in values.items()}
                print(
                    f"[{method} {criterion}] round {r.round} (mean of {r.num_seeds} seeds): "
                    f"held-out acc {mean['heldout_accuracy']:.3f}, on-policy acc "
                    f"{mean['onpolicy_accuracy']:.3f}, true return {mean['true_return']:.2f}"
                    f" (normalised {mean['normalized_return']:.2f}), gap "
                    f"{mean['misidentification_gap']:.2f}"
                )

            rounds = iterate(
                keys, narrow, model, method, config.reward_train, trainer, loop,
                on_round=report, round0=round0,
                checkpointers=checkpointers(config, results, f"{method}_{criterion}"),
            )  # fmt: skip
            round0 = rounds[0]
            panels.setdefault(
                f"{method}: round 0 (narrow data)", round0.seed(0).pipeline.policy.positions
            )
            panels[f"{method} · {criterion}: round {rounds[-1].round}"] = (
                rounds[-1].seed(0).pipeline.policy.positions
            )
            first, last = curves[(method, criterion)][0], curves[(method, criterion)][-1]
            lines.append(
                f"| {method} | {criterion} | {first['heldout_accuracy'].mean():.3f} → "
                f"{last['heldout_accuracy'].mean():.3f} | {first['normalized_return'].mean():.2f}"
                f" → {last['normalized_return'].mean():.2f} | "
                f"{first['misidentification_gap'].mean():.2f} → "
                f"{last['misidentification_gap'].mean():.2f} |"
            )
            print(f"[{method} {criterion}] {time.time() - start:.0f} s")

    results.figure(plot_rounds(curves, broad_values), "misidentification_rounds")
    results.figure(
        plot_paths_by_round(env, test.users.type_id, pop.type_names, panels), "paths_by_round"
    )
    broad_lines = [
        f"| {m} | broad data, offline | {v['heldout_accuracy'].mean():.3f} | "
        f"{v['normalized_return'].mean():.2f} | {v['misidentification_gap'].mean():.2f} |"
        for m, v in broad_values.items()
    ]
    return "\n".join(
        [
            "## Narrow data, then the iterate loop (round 0 → last round; test users; mean over "
            f"{num_seeds} seed{'s' * (num_seeds > 1)})",
            "",
            "| method | criterion | held-out accuracy | normalised return | gap |",
            "|---|---|---|---|---|",
            *lines,
            *broad_lines,
        ]
    )


if __name__ == "__main__":
    harness.run_experiment("misidentification", Config, PRESETS, main, description=__doc__)
