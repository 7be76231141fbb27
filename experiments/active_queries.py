"""Active query selection: how many comparisons a new user must answer before the model knows
them, when the model chooses what to ask (information gain and the other criteria) versus random.

    python experiments/active_queries.py --preset cpu --run-name RUN

For each task (navigation with four goals: users of types goal_a..goal_d; highway: aggressive,
cautious, lawful and courteous drivers) it builds a preference dataset, trains VPL, LinearBayes
and a BTL ensemble on the training users (``num_seeds`` seeds in one ``vmap``), then elicits every
*test* user from scratch: starting from an empty context, each criterion picks the next pair from
the shared query pool, the simulated user answers with their human model, and the model's
posterior is updated — ``num_queries`` rounds in one ``lax.scan``, every user × seed in one
``jit`` (:func:`vpl_jax.active.elicit_test_users`).

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
label accuracy. Figures (:mod:`vpl_jax.active.figures`): accuracy versus queries (mean and 95%
band over seeds), policy success versus queries, and the uncertainty report.
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
from vpl_jax.active import figures
from vpl_jax.checks import Choices, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset, build_dataset
from vpl_jax.keys import named_key

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
    model = harness.reward_models(config.sizes, [method], config.num_queries, "num_queries")[method]
    keys = jax.random.split(key, config.num_seeds)
    params, history = pipeline.train_reward(
        model, config.train, keys, dataset, config.validation_fraction
    )
    return model, params, history


def train_policy(config: Config, dataset, env, model, params, key, results, task: str):
    """PPO on VPL's learned reward r(s, z) with z from the training users' posteriors, one run
    per reward seed (vmapped), checkpointed in ``checkpoints/<task>_vpl`` when asked and logged.
    Returns ``(trainer, states)``; states lead with the seed axis."""
    start = time.time()
    trainer = pipeline.PolicyTrainer(env, "vpl", model, config.ppo, config.chunk_updates)
    inputs = jax.vmap(lambda p: pipeline.policy_inputs("vpl", model, p, dataset))(params)
    states, history = trainer.train(
        jax.random.split(key, config.num_seeds),
        inputs,
        desc="VPL policy",
        checkpointer=results.checkpointer(f"{task}_vpl", config.checkpoint_every),
    )
    jax.block_until_ready(states)
    results.log_ppo_history(f"{task}/vpl/ppo", history, config.ppo.env_steps_per_update)
    print(f"[{task}] trained the VPL policy ({time.time() - start:.0f} s)", flush=True)
    return trainer, states


def run_task(config: Config, task: str, key: jax.Array, results, n_queries):
    """Builds the task's dataset, trains each model and elicits every test user with each of
    its criteria, adding the rows. Returns ``(traces, reports, policy)``: traces keyed by
    (model, criterion), uncertainty reports by model, policy evaluations
    (:func:`vpl_jax.pipeline.policy_curves`) by criterion."""
    k_data, k_train, k_elicit = jax.random.split(key, 3)
    k_policy, k_policy_eval = jax.random.split(jax.random.fold_in(key, 1))
    pop = harness.task_population(config, task)
    env = harness.task_env(config, task)
    dataset = build_dataset(k_data, env, pop, config.data, task=task)
    _, test = dataset.split()
    type_id = np.asarray(test.users.type_id)
    todo, rounds = runs(config), config.num_queries // config.batch_size
    traces, reports, policy = {}, {}, {}

    def add_rows(values, model: str, **fields):
        """Rows of ``values: f32[S, U, R+1]`` per user type, seed and number of queries."""
        columns = [(r, {"n_queries": int(n), "model": model}) for r, n in enumerate(n_queries)]
        results.add_type_rows(
            values, type_id, pop.type_names, columns, axis=1, overall=False, task=task, **fields
        )

    for model_name in dict.fromkeys(m for m, _ in todo):
        # Keys by name: leaving a model or criterion out does not change the others' numbers.
        start = time.time()
        model, params, history = train(config, dataset, model_name, named_key(k_train, model_name))
        jax.block_until_ready(params)
        results.log_reward_history(f"{task}/{model_name}/reward", history)
        print(f"[{task}] trained {model_name} ({time.time() - start:.0f} s)", flush=True)
        trainer = None
        if model_name == "vpl" and task in config.policy_tasks:
            trainer, states = train_policy(
                config, dataset, env, model, params, k_policy, results, task
            )
        for criterion in [c for m, c in todo if m == model_name]:
            start = time.time()
            acq = active.Acquisition(
                criterion, config.batch_size, config.diversity, config.entropy_shortlist
            )
            # The key depends on the criterion only: random asks every model the same queries.
            k = named_key(k_elicit, criterion)
            trace = active.elicit_test_users(dataset, model, params, acq, k, num_rounds=rounds,
                num_samples=config.num_samples, users_per_chunk=config.users_per_chunk)  # fmt: skip
            traces[model_name, criterion] = trace = jax.tree.map(np.asarray, trace)
            metrics = active.curve_metrics(trace, alignment=model_name == "linear_bayes")
            for metric, values in metrics.items():  # [S, U, R+1]
                add_rows(values, model_name, method=criterion, metric=metric)
            curve = " ".join(f"{a:.3f}" for a in active.mean_curve(trace))
            print(
                f"[{task}] {model_name:12s} {criterion:17s} accuracy by queries: {curve}"
                f"  ({time.time() - start:.0f} s)",
                flush=True,
            )
            if trainer is not None:
                policy[criterion] = ev = pipeline.policy_curves(trainer, states, trace.latent_mean,
                    test.users.theta, k_policy_eval, config.policy_eval_episodes)  # fmt: skip
                for metric, values in [("policy_success", ev.success),
                                       ("policy_true_return", ev.true_return)]:  # fmt: skip
                    # [S, R+1, U] -> [S, U, R+1]
                    add_rows(np.moveaxis(values, 1, 2), "vpl", method=criterion, metric=metric)
                curve = " ".join(f"{a:.2f}" for a in np.asarray(ev.success).mean((0, 2)))
                print(f"[{task}] {'':12s} {criterion:17s} policy success by queries: {curve}")
        if (model_name, "random") in traces:
            heldout = R.user_pairs(test, "heldout", model.inputs)
            report = active.uncertainty_report(
                traces[model_name, "random"], heldout, config.calibration_bins
            )
            reports[model_name] = report
            for row in active.uncertainty_rows(report, n_queries):
                results.add(method="random", task=task, **row, model=model_name)
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
        found = active.queries_to_match(per_task[task], n_queries, config.reference_queries)
        for m, row in zip(found, active.match_rows(found, config.reference_queries), strict=True):
            m["task"] = task
            matches.append(m)
            results.add(task=task, **row)
            print(f"[{task}] {active.match_text(m, config.reference_queries)}", flush=True)
    accuracy = figures.plot_accuracy(per_task, n_queries, config.reference_queries)
    results.figure(accuracy, "accuracy_vs_queries")
    if policy:
        results.figure(figures.plot_policy_success(policy, n_queries), "policy_success_vs_queries")
    if reports:
        round_index = min(2, len(n_queries) - 1)
        results.figure(figures.plot_uncertainty(per_task, reports, round_index), "uncertainty")
    headline = _headline(config, matches)
    if headline:
        print(headline, flush=True)
    return notes(config, per_task, reports, matches, n_queries, headline)


def _headline(config: Config, matches: list[dict]) -> str:
    """The issue's success criterion: on navigation, information gain reaches random's accuracy
    after ``reference_queries`` with at most half as many queries."""
    for m in matches:
        if (m["task"], m["model"], m["criterion"]) == ("navigation", "vpl", "info_gain"):
            budget = config.reference_queries // 2
            met = not math.isnan(m["needed"]) and m["needed"] <= budget
            return (
                f"Headline (navigation, {len(config.navigation_types)} user types, VPL): "
                f"information gain needs {active.needed_text(m['needed'])} queries to reach the "
                f"accuracy random queries reach with {config.reference_queries} "
                f"({m['target']:.3f}); target <= {budget}: {'met' if met else 'NOT met'}."
            )
    return ""


def notes(config, per_task, reports, matches, n_queries, headline) -> str:
    """summary.md's notes: the headline, the queries each criterion needs, the accuracy curves
    and the uncertainty report."""
    out = [
        *([headline, ""] if headline else []),
        *active.match_table(matches, config.reference_queries),
        "",
        *active.accuracy_table(per_task, n_queries),
    ]
    if reports:
        out += ["", *active.uncertainty_table(reports)]
    return "\n".join(out)


if __name__ == "__main__":
    harness.run_experiment("active_queries", Config, PRESETS, main, description=__doc__)
