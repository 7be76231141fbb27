"""Active query selection: how many comparisons a new user must answer before the model knows
them, when the model chooses what to ask (information gain and the other criteria) versus random.

    python experiments/active_queries.py --preset cpu --run-name RUN

For each task (navigation with four goals: users of types goal_a..goal_d; highway: aggressive,
cautious, lawful and courteous drivers) it builds a preference dataset, trains VPL, LinearBayes
and a BTL ensemble on the training users (``num_seeds`` seeds in one ``vmap``), then elicits every
*test* user from scratch: starting from an empty context, each criterion picks the next pair from
the shared query pool, the simulated user answers with their human model, and the model's
posterior is updated — ``num_queries`` rounds in one ``lax.scan``, every user × seed in one
``jit`` (:func:`vpl_jax.active.elicit_users`).

Criteria and the model each one scores with (``method`` in the results is the criterion; the
model is the ``model`` field): ``info_gain`` and ``entropy`` with VPL, ``mutual_info_theta`` and
``volume_removal`` with LinearBayes, ``disagreement`` with the BTL ensemble, and ``random`` with
every model as its control.

Why the four goal types on navigation: they are four equally distinct users (each wants a
different goal, all mildly careful), so identifying a user is a clean two-bit problem on which
choosing queries can matter most; ``cautious`` and ``hurried`` also want goal a and differ only
near the hazard and the bystander, which random segments rarely visit.

Rows (per criterion, model, user type, seed and ``n_queries``): ``heldout_accuracy``,
``spread`` (the belief's variance of its predicted ``P(a ≻ b)`` on the held-out pairs) and,
for LinearBayes, ``theta_alignment``; ``queries_to_match_random`` (the fewest queries a
criterion needs to reach the accuracy random queries reach with ``reference_queries``); the
uncertainty report from the random-query runs —
``spread_error_correlation`` and ``calibration_ece`` per ``n_queries``, and the reliability
curve after all queries (``calibration_frequency`` per ``bin``). On the ``policy_tasks``
(navigation) a VPL latent-conditioned policy is trained once per seed (PPO on r(s, z)) and run
with each test user's posterior mean after every number of queries: ``policy_success`` and
``policy_true_return`` per VPL criterion — what asking well buys in behaviour, not only in
label accuracy. Figures: accuracy versus queries (mean and 95% band over users and seeds),
policy success versus queries, and the uncertainty report.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from vpl_jax import active, harness, pipeline
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset, build_dataset
from vpl_jax.keys import named_key
from vpl_jax.plotting import band, plt

#: Reward models with a belief about each user, in the order figures show them.
MODELS = ("vpl", "linear_bayes", "btl_ensemble")
#: The models each criterion scores with; random runs with every model, as its control.
CRITERION_MODELS = {
    "info_gain": ("vpl",),
    "entropy": ("vpl",),
    "mutual_info_theta": ("linear_bayes",),
    "volume_removal": ("linear_bayes",),
    "disagreement": ("btl_ensemble",),
    "random": MODELS,
}


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks: tuple[str, ...] = ("navigation", "highway")
    """Tasks to run (navigation, highway, locomotion)."""
    navigation_types: tuple[str, ...] = ("goal_a", "goal_b", "goal_c", "goal_d")
    """User types of the navigation population, in equal shares (--population gives any other)."""
    highway_types: tuple[str, ...] = ("aggressive", "cautious", "lawful", "courteous")
    """User types of the highway population, in equal shares (--population gives any other)."""
    locomotion_types: tuple[str, ...] = ("forward", "backward", "left", "right")
    """User types of the locomotion population, in equal shares (--population gives any other)."""
    num_goals: int = checked(4, Int(ge=2, le=6))
    """Goals of the navigation arena (goal_c needs 3, goal_d 4)."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    shipped types are rational, inf)."""
    models: tuple[str, ...] = checked(MODELS, Choices(MODELS))
    """Reward models to train and elicit with (vpl, linear_bayes, btl_ensemble)."""
    criteria: tuple[str, ...] = checked(active.CRITERIA, Choices(active.CRITERIA))
    """Acquisition criteria to compare (each runs with the models in CRITERION_MODELS)."""
    num_queries: int = checked(12, Int(ge=1))
    """Queries asked of each test user (num_queries / batch_size rounds)."""
    batch_size: int = checked(1, Int(ge=1))
    """Queries asked per round (b > 1: a diverse batch)."""
    diversity: float = checked(1.0, Float(ge=0))
    """Weight of the near-duplicate penalty when batch_size > 1."""
    num_samples: int = checked(32, Int(ge=1))
    """Posterior samples per user and round (VPL, LinearBayes)."""
    entropy_shortlist: int = checked(64, Int(ge=1))
    """entropy: re-encode only this many candidates, those of highest predictive entropy."""
    reference_queries: int = checked(8, Int(ge=1))
    """The random-query budget whose accuracy the other criteria must match."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(2, Int(ge=1))
    """Training seeds per model, trained in one vmap (each elicits every test user)."""
    data: DatasetConfig = DatasetConfig(
        num_users=128, context_size=8, heldout_size=32, pool_size=1024, num_episodes=128
    )
    """Dataset sizes (users, K context and M held-out pairs, the query pool P, episodes)."""
    train: R.TrainConfig = R.TrainConfig(num_epochs=200, users_per_batch=16)
    """Reward-model training (VPL needs the epochs: a sharper encoder is what active queries
    exploit; at 100 epochs information gain needs about one query more)."""
    sizes: R.ModelSizes = R.ModelSizes(ensemble_size=3)
    """Network sizes (VPL's and LinearBayes' context_size is set to num_queries)."""
    validation_fraction: float = checked(0.2, Float(ge=1e-6, le=1 - 1e-6))
    """Share of each type's training users held out to choose the best epoch."""
    users_per_chunk: int = checked(16, Int(ge=1))
    """(seed, user) elicitations vmapped at once (bounds memory)."""
    calibration_bins: int = checked(10, Int(ge=2))
    """Bins of the reliability diagram."""
    policy_tasks: tuple[str, ...] = ("navigation",)
    """Tasks on which a VPL latent-conditioned policy is trained (PPO on the learned r(s, z),
    z drawn from the training users' posteriors) and run with each test user's posterior mean
    after every number of queries: the policy's success and true return versus queries."""
    ppo: P.PPOConfig = P.PPOConfig(total_timesteps=1_000_000, center_rewards=True)
    """PPO of the latent-conditioned policy (rewards centred: navigation episodes have a fixed
    length; --ppo.no-center-rewards for a policy task whose episodes end early)."""
    policy_eval_episodes: int = checked(4, Int(ge=1))
    """Evaluation episodes per test user and number of queries (deterministic policy)."""

    def validate(self):
        super().validate()
        Choices(harness.supported_tasks(type(self))).check("tasks", self.tasks)
        harness.check_type_fields(self)  # unknown or repeated user types, naming the field
        Choices(self.tasks, min_count=0).check("policy_tasks", self.policy_tasks)
        if self.entropy_shortlist < self.batch_size:
            raise harness.ConfigError(
                f"entropy_shortlist={self.entropy_shortlist}: must be >= batch_size="
                f"{self.batch_size}"
            )
        if self.reference_queries > self.num_queries:
            raise harness.ConfigError(
                f"reference_queries={self.reference_queries}: must be <= num_queries="
                f"{self.num_queries}"
            )
        if self.num_queries % self.batch_size:
            raise harness.ConfigError(
                f"num_queries={self.num_queries}: must be a multiple of batch_size="
                f"{self.batch_size}"
            )
        if self.reference_queries % self.batch_size:
            raise harness.ConfigError(
                f"reference_queries={self.reference_queries}: must be a multiple of "
                f"batch_size={self.batch_size} (curves have a point every batch_size queries)"
            )
        if self.num_queries > self.data.pool_size:
            raise harness.ConfigError(
                f"num_queries={self.num_queries}: must be <= data.pool_size="
                f"{self.data.pool_size} (each query is a distinct pair of the pool)"
            )
        if not runs(self):
            raise harness.ConfigError(
                f"criteria={list(self.criteria)} and models={list(self.models)} leave nothing "
                f"to run; criteria run with these models: {CRITERION_MODELS}"
            )
        if self.policy_tasks and "vpl" not in self.models:
            raise harness.ConfigError(
                f"policy_tasks={list(self.policy_tasks)}: the latent-conditioned policy needs "
                f"'vpl' in models (models={list(self.models)}); or pass --policy-tasks with no "
                "value"
            )
        harness.reward_models(self.sizes, self.models, self.num_queries, "num_queries")
        for task in self.tasks:
            self.data.validate(harness.task_env(self, task), "data")
            if task in self.policy_tasks:
                pipeline.check_policy_config(self.ppo, harness.task_env(self, task))
            harness.task_population(self, task)
        return self


PRESETS = {
    "cpu": Config(),  # within 10 minutes on an idle 2-core machine
    "paper": Config(
        num_queries=24,
        num_samples=64,
        entropy_shortlist=512,
        num_seeds=5,
        data=DatasetConfig(
            num_users=512, context_size=16, heldout_size=64, pool_size=4096, num_episodes=1024
        ),
        train=R.TrainConfig(num_epochs=200, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16, ensemble_size=5),
        users_per_chunk=64,
        ppo=P.PPOConfig(total_timesteps=2_000_000, center_rewards=True),
    ),
}


def runs(config: Config) -> list[tuple[str, str]]:
    """The (model, criterion) pairs to elicit with, models in figure order."""
    return [
        (model, criterion)
        for model in MODELS
        if model in config.models
        for criterion in config.criteria
        if model in CRITERION_MODELS[criterion]
    ]


def train(config: Config, dataset: PreferenceDataset, method: str, key: jax.Array):
    """Trains ``method`` on the training users, S seeds in one vmap; returns
    ``(model, params, history)``."""
    sizes = dataclasses.replace(config.sizes, context_size=config.num_queries)
    model = R.make_model(method, sizes)
    keys = jax.random.split(key, config.num_seeds)
    params, history = pipeline.train_reward(
        model, config.train, keys, dataset, config.validation_fraction
    )
    return model, params, history


def elicit(config, dataset, model, params, criterion, key) -> active.Trace:
    """Elicits every test user with ``criterion``: a Trace with leading axes [S, U]."""
    _, test = dataset.split()
    acq = active.Acquisition(
        criterion,
        batch_size=config.batch_size,
        diversity=config.diversity,
        shortlist=config.entropy_shortlist,
    )
    return active.elicit_users(
        active.make_belief(model, config.num_samples),
        acq,
        params,
        active.candidates(dataset, model.inputs),
        test.users,
        R.user_pairs(test, "heldout", model.inputs).batch(),
        key,
        num_rounds=config.num_queries // config.batch_size,
        seeds=True,
        users_per_chunk=config.users_per_chunk,
        exclude=test.heldout.pairs,  # never ask a pair that is then scored as held-out
    )


# --- the latent-conditioned policy --------------------------------------------------------------
def train_policy(
    config: Config, dataset: PreferenceDataset, env, model, params, key, results, task: str
):
    """PPO on VPL's learned reward r(s, z) with z from the training users' posteriors, one run
    per reward seed (vmapped), checkpointed in ``checkpoints/<task>_vpl`` when asked. Returns
    ``(trainer, states, history)``; states lead with the seed axis."""
    trainer = pipeline.PolicyTrainer(env, "vpl", model, config.ppo, config.chunk_updates)
    inputs = jax.vmap(lambda p: pipeline.policy_inputs("vpl", model, p, dataset))(params)
    states, history = trainer.train(
        jax.random.split(key, config.num_seeds),
        inputs,
        desc="VPL policy",
        checkpointer=results.checkpointer(f"{task}_vpl", config.checkpoint_every),
    )
    return trainer, states, history


def add_policy_rows(results, task, type_names, type_id, criterion, ev, n_queries):
    metrics = [("policy_success", ev.success), ("policy_true_return", ev.true_return)]
    for metric, values in metrics:  # [S, R+1, U] -> [S, U, R+1]
        add_type_rows(results, task, type_names, type_id, "vpl", criterion, metric,
                      np.moveaxis(np.asarray(values), 1, 2), n_queries)  # fmt: skip


def plot_policy_success(policy: dict, n_queries) -> plt.Figure:
    fig, axes = plt.subplots(1, len(policy), figsize=(4.8 * len(policy), 3.6), squeeze=False)
    for ax, (task, evaluations) in zip(axes[0], policy.items(), strict=True):
        for criterion, ev in evaluations.items():
            success = np.moveaxis(np.asarray(ev.success), 1, -1)  # [S, U, R+1]
            style = {"ls": "--", "color": "grey"} if criterion == "random" else {}
            # The band is over seeds: each seed's mean over its users.
            band(ax, n_queries, np.nanmean(success, axis=1), criterion, marker=".", **style)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}: VPL policy on the elicited z")
        ax.set_xlabel("queries asked")
        ax.set_ylabel("success (test users)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- rows ----------------------------------------------------------------------------------------
def add_type_rows(results, task, type_names, type_id, model, criterion, metric, values, n_queries):
    """Rows of ``values: f32[S, U, R+1]`` averaged over each type's users, per seed and
    number of queries."""
    for t, name in enumerate(type_names):
        per_type = np.nanmean(values[:, type_id == t], axis=1)  # [S, R+1]
        for s in range(per_type.shape[0]):
            for r, n in enumerate(n_queries):
                results.add(
                    method=criterion,
                    task=task,
                    user_type=name,
                    metric=metric,
                    value=per_type[s, r],
                    seed=s,
                    n_queries=int(n),
                    model=model,
                )


def add_curve_rows(results, task, type_names, type_id, model, criterion, trace, n_queries):
    metrics = [("heldout_accuracy", trace.accuracy), ("spread", trace.spread)]
    if model == "linear_bayes":
        metrics.append(("theta_alignment", trace.alignment))
    for metric, values in metrics:  # [S, U, R+1]
        add_type_rows(results, task, type_names, type_id, model, criterion, metric,
                      np.asarray(values), n_queries)  # fmt: skip


def add_uncertainty_rows(results, task, model, report, n_queries):
    for r, n in enumerate(n_queries):
        for metric, value in (
            ("spread_error_correlation", report.correlation[r]),
            ("calibration_ece", report.calibration.ece[r]),
        ):
            results.add(
                method="random",
                task=task,
                metric=metric,
                value=value,
                n_queries=int(n),
                model=model,
            )
    final = jax.tree.map(lambda x: x[-1], report.calibration)
    for b in range(final.count.shape[0]):
        results.add(
            method="random",
            task=task,
            metric="calibration_frequency",
            value=final.frequency[b],
            predicted=final.predicted[b],
            count=final.count[b],
            bin=b,
            n_queries=int(n_queries[-1]),
            model=model,
        )


# --- figures -------------------------------------------------------------------------------------
def plot_accuracy(per_task: dict, config: Config, n_queries) -> plt.Figure:
    models = [m for m in MODELS if any(k[0] == m for t in per_task.values() for k in t)]
    fig, axes = plt.subplots(
        len(per_task),
        len(models),
        figsize=(4.6 * len(models), 3.6 * len(per_task)),
        squeeze=False,
        sharex=True,
    )
    for row, (task, traces) in zip(axes, per_task.items(), strict=True):
        for ax, model in zip(row, models, strict=True):
            for (m, criterion), trace in traces.items():
                if m != model:
                    continue
                acc = np.nanmean(np.asarray(trace.accuracy), axis=1)  # [S, U, R+1] -> [S, R+1]
                style = {"ls": "--", "color": "grey"} if criterion == "random" else {}
                band(ax, n_queries, acc, criterion, marker=".", **style)
            if (model, "random") in traces:
                ref = list(n_queries).index(config.reference_queries)
                ax.axhline(
                    active.mean_curve(traces[model, "random"])[ref], color="grey", lw=0.7, ls=":"
                )
            ax.set_title(f"{task}: {model}")
            ax.set_xlabel("queries asked")
            ax.set_ylabel("held-out accuracy (test users)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_uncertainty(per_task: dict, reports: dict, round_index: int) -> plt.Figure:
    fig, axes = plt.subplots(len(per_task), 2, figsize=(10, 3.8 * len(per_task)), squeeze=False)
    for (ax_scatter, ax_rel), (task, traces) in zip(axes, per_task.items(), strict=True):
        for model in MODELS:
            if (model, "random") not in traces:
                continue
            trace = traces[model, "random"]
            spread = np.asarray(trace.spread[..., round_index]).ravel()
            error = 1.0 - np.asarray(trace.accuracy[..., round_index]).ravel()
            # Spreads of different models are on different scales: rank within each model.
            rank = np.argsort(np.argsort(spread)) / max(len(spread) - 1, 1)
            corr = reports[task, model].correlation[round_index]
            ax_scatter.scatter(rank, error, s=10, alpha=0.6, label=f"{model} (ρ={corr:.2f})")
            cal = jax.tree.map(lambda x: x[-1], reports[task, model].calibration)
            ax_rel.plot(
                cal.predicted,
                cal.frequency,
                marker="o",
                label=f"{model} (ECE {float(cal.ece):.3f})",
            )
        ax_scatter.set_xlabel(f"posterior spread, rank within model (after {round_index} queries)")
        ax_scatter.set_ylabel("held-out error")
        ax_scatter.set_title(f"{task}: does uncertainty predict error?")
        ax_scatter.legend(fontsize=8)
        ax_rel.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax_rel.set_xlabel("predicted P(a ≻ b)")
        ax_rel.set_ylabel("empirical frequency of a ≻ b")
        ax_rel.set_title(f"{task}: calibration after all queries (random)")
        ax_rel.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run_task(config: Config, task: str, key: jax.Array, results, n_queries):
    """Builds the task's dataset, trains each model and elicits every test user with each of
    its criteria. Returns ``(traces, reports, policy)``: traces keyed by (model, criterion),
    uncertainty reports by model, policy evaluations
    (:func:`vpl_jax.pipeline.policy_curves`) by criterion."""
    k_data, k_train, k_elicit = jax.random.split(key, 3)
    k_policy, k_policy_eval = jax.random.split(jax.random.fold_in(key, 1))
    pop = harness.task_population(config, task)
    env = harness.task_env(config, task)
    dataset = build_dataset(k_data, env, pop, config.data, task=task)
    _, test = dataset.split()
    type_id = np.asarray(test.users.type_id)
    todo = runs(config)
    models = list(dict.fromkeys(m for m, _ in todo))
    traces, reports, policy = {}, {}, {}
    for model_name in models:
        # Keys by name: leaving a model or criterion out does not change the others' numbers.
        k_model = named_key(k_train, model_name)
        start = time.time()
        model, params, history = train(config, dataset, model_name, k_model)
        jax.block_until_ready(params)
        results.log_reward_history(f"{task}/{model_name}/reward", history)
        print(f"[{task}] trained {model_name} ({time.time() - start:.0f} s)", flush=True)
        trainer = None
        if model_name == "vpl" and task in config.policy_tasks:
            start = time.time()
            trainer, states, history = train_policy(
                config, dataset, env, model, params, k_policy, results, task
            )
            jax.block_until_ready(states)
            results.log_ppo_history(f"{task}/vpl/ppo", history, config.ppo.env_steps_per_update)
            print(f"[{task}] trained the VPL policy ({time.time() - start:.0f} s)", flush=True)
        for criterion in [c for m, c in todo if m == model_name]:
            start = time.time()
            # The key depends on the criterion only: random asks every model the same queries.
            k = named_key(k_elicit, criterion)
            trace = jax.tree.map(np.asarray, elicit(config, dataset, model, params, criterion, k))
            traces[model_name, criterion] = trace
            add_curve_rows(
                results, task, pop.type_names, type_id, model_name, criterion, trace, n_queries
            )
            curve = " ".join(f"{a:.3f}" for a in active.mean_curve(trace))
            print(
                f"[{task}] {model_name:12s} {criterion:17s} accuracy by queries: {curve}"
                f"  ({time.time() - start:.0f} s)",
                flush=True,
            )
            if trainer is not None:
                ev = pipeline.policy_curves(
                    trainer,
                    states,
                    trace.latent_mean,
                    test.users.theta,
                    k_policy_eval,
                    config.policy_eval_episodes,
                )
                policy[criterion] = ev
                add_policy_rows(results, task, pop.type_names, type_id, criterion, ev, n_queries)
                curve = " ".join(f"{a:.2f}" for a in np.asarray(ev.success).mean((0, 2)))
                print(f"[{task}] {'':12s} {criterion:17s} policy success by queries: {curve}")
        if (model_name, "random") in traces:
            heldout = R.user_pairs(test, "heldout", model.inputs)
            report = active.uncertainty_report(
                traces[model_name, "random"], heldout, config.calibration_bins
            )
            reports[model_name] = report
            add_uncertainty_rows(results, task, model_name, report, n_queries)
    return traces, reports, policy


def main(config: Config, results: harness.RunResults) -> str:
    n_queries = np.arange(config.num_queries // config.batch_size + 1) * config.batch_size
    per_task, reports, policy, matches = {}, {}, {}, []
    for task in config.tasks:
        key = named_key(jax.random.PRNGKey(config.seed), task)
        per_task[task], task_reports, task_policy = run_task(config, task, key, results, n_queries)
        if task_policy:
            policy[task] = task_policy
        reports.update({(task, model): r for model, r in task_reports.items()})
        for m in active.queries_to_match(per_task[task], n_queries, config.reference_queries):
            m["task"] = task
            matches.append(m)
            results.add(
                method=m["criterion"],
                task=task,
                metric="queries_to_match_random",
                value=m["needed"],
                model=m["model"],
                target=m["target"],
                reference_queries=config.reference_queries,
            )
            print(
                f"[{task}] {m['criterion']} ({m['model']}) reaches random's accuracy after "
                f"{config.reference_queries} queries ({m['target']:.3f}) with "
                f"{_count(m['needed'])} queries",
                flush=True,
            )
    results.figure(plot_accuracy(per_task, config, n_queries), "accuracy_vs_queries")
    if policy:
        results.figure(plot_policy_success(policy, n_queries), "policy_success_vs_queries")
    if reports:
        round_index = min(2, len(n_queries) - 1)
        results.figure(plot_uncertainty(per_task, reports, round_index), "uncertainty")
    headline = _headline(config, matches)
    if headline:
        print(headline, flush=True)
    return notes(config, per_task, reports, matches, n_queries, headline)


def _count(needed: float) -> str:
    return "never" if math.isnan(needed) else f"{needed:.0f}"


def _headline(config: Config, matches: list[dict]) -> str:
    """The issue's success criterion: on navigation, information gain reaches random's accuracy
    after ``reference_queries`` with at most half as many queries."""
    for m in matches:
        if (m["task"], m["model"], m["criterion"]) == ("navigation", "vpl", "info_gain"):
            budget = config.reference_queries // 2
            met = not math.isnan(m["needed"]) and m["needed"] <= budget
            return (
                f"Headline (navigation, {len(config.navigation_types)} user types, VPL): "
                f"information gain needs {_count(m['needed'])} queries to reach the accuracy "
                f"random queries reach with {config.reference_queries} ({m['target']:.3f}); "
                f"target <= {budget}: {'met' if met else 'NOT met'}."
            )
    return ""


def notes(config, per_task, reports, matches, n_queries, headline) -> str:
    lines = [
        f"| {m['task']} | {m['model']} | {m['criterion']} | {m['target']:.3f} | "
        f"{_count(m['needed'])} |"
        for m in matches
    ]
    out = [
        *([headline, ""] if headline else []),
        f"## Queries needed to reach random's accuracy after {config.reference_queries}",
        "",
        "| task | model | criterion | random's accuracy | queries needed |",
        "|---|---|---|---|---|",
        *lines,
        "",
        "## Mean held-out accuracy by number of queries (users and seeds pooled)",
        "",
        "| task | model | criterion | " + " | ".join(str(int(n)) for n in n_queries) + " |",
        "|---" * (len(n_queries) + 3) + "|",
    ]
    for task, traces in per_task.items():
        for (model, criterion), trace in traces.items():
            cells = " | ".join(f"{a:.3f}" for a in active.mean_curve(trace))
            out.append(f"| {task} | {model} | {criterion} | {cells} |")
    if reports:
        out += [
            "",
            "## Uncertainty (random queries)",
            "",
            "| task | model | Spearman ρ(spread, error) by queries | ECE after all |",
            "|---|---|---|---|",
        ]
        for (task, model), report in reports.items():
            corr = " ".join(f"{c:.2f}" for c in report.correlation)
            ece = float(report.calibration.ece[-1])
            out.append(f"| {task} | {model} | {corr} | {ece:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    harness.run_experiment("active_queries", Config, PRESETS, main, description=__doc__)
