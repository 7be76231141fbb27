"""Misspecified human models: how wrong is the inferred reward when people are not the
noisy-rational partial-return labellers the reward model assumes?

    python experiments/misspecification.py --preset cpu --run-name RUN

One navigation dataset (default users: ``goal_a`` and ``cautious``) is labelled again and again
by the same users with a deviation of growing size from the Boltzmann partial-return model
(``deviation_kind``, and ``deviation`` = the size of the model error, 0 = none):

* ``beta`` — the temperature ``1/beta`` (rational users are beta = inf);
* ``gamma`` — myopia ``1 - gamma``: the user discounts earlier steps of a segment (B-Pref);
* ``epsilon`` — the probability of a flipped answer;
* ``regret`` — the regret weight w: the user scores a segment by its partial return plus
  ``w (V*(end) - V*(start))``, with ``V*`` the critic of an oracle policy trained on the users'
  true rewards (:func:`vpl_jax.policies.critic_values`, :func:`vpl_jax.users.segment_values`);
* ``belief`` — a false belief: the user thinks the hazard is ``deviation`` metres to the right
  of where it is and judges segments by the features of that world
  (:mod:`vpl_jax.data.beliefs`).

Every reward model assumes Boltzmann partial-return labels (``human_model = boltzmann``). The
inferred-reward error is measured on the test users: ``alignment`` (LinearBayes: cosine between
the posterior mean of theta from all of a user's pairs and the true theta), ``rational_accuracy``
(every model, given the user's own K context answers: accuracy on the user's *rational* answers
about their held-out pairs) and ``true_return`` (PPO on the learned reward, at no deviation and
at the largest deviation of each kind in ``policy_kinds``; ``oracle`` rows: PPO on the true
reward). Then, where the framework can express the correct human model, the same data are fitted
with it (``human_model = correct``): a known myopic discount (every model's likelihood
discounts the segment return, ``rewards.with_discount``) and a known belief (LinearBayes on the
features of the world the user believes in). The zero-deviation point is shared by every kind
(its rows repeat under each kind, so each curve starts at 0).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import envs, harness
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Each, Float, Int, checked
from vpl_jax.data import (
    DatasetConfig,
    build_dataset,
    label_queries,
    perceived,
    relabel_deviating,
    shifted_hazard,
)
from vpl_jax.harness import SweepPoint, sweep_points
from vpl_jax.pipeline import (
    PolicyTrainer,
    check_policy_config,
    fit_labellings,
    labelling_scores,
    policy_inputs,
    test_latents,
)
from vpl_jax.plotting import plt
from vpl_jax.users import Population

TASK = "navigation"
KINDS = ("beta", "gamma", "epsilon", "regret", "belief")
#: The deviation sizes each kind accepts (at least one per kind swept).
SIZES = {
    "beta": Each(Float(gt=0), min_count=1),  # temperatures 1/beta
    "gamma": Each(Float(ge=0, lt=1), min_count=1),  # myopia 1 - gamma
    "epsilon": Each(Float(gt=0, le=0.5), min_count=1),
    "regret": Each(Float(gt=0, le=1), min_count=1),
    "belief": Each(Float(gt=0), min_count=1),
}
#: The size of each kind's model error, as plotted.
UNITS = {
    "beta": "temperature 1/β",
    "gamma": "myopia 1 − γ",
    "epsilon": "mistake probability ε",
    "regret": "regret weight w",
    "belief": "believed hazard shift (m)",
}
#: Kinds whose correct human model the framework expresses, and for which methods.
CORRECTABLE = {"gamma": ("linear_bayes", "btl", "vpl"), "belief": ("linear_bayes",)}
METHODS = ("linear_bayes", "btl", "vpl")


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks = (TASK,)  # not a field: the deviations and the narrow data are navigation's
    navigation_types: tuple[str, ...] = ("goal_a", "cautious")
    """Navigation user types, in equal shares (--population gives any other)."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    methods: tuple[str, ...] = checked(METHODS, Choices(METHODS))
    """Reward models (all assume Boltzmann partial-return labels)."""
    kinds: tuple[str, ...] = checked(KINDS, Choices(KINDS))
    """Deviations from the assumed human model to sweep."""
    beta_sizes: tuple[float, ...] = (1.0, 4.0)
    """Temperatures 1/beta (> 0)."""
    gamma_sizes: tuple[float, ...] = (0.2, 0.5)
    """Myopia 1 - gamma, in [0, 1)."""
    epsilon_sizes: tuple[float, ...] = (0.15, 0.3)
    """Mistake probabilities, in (0, 0.5]."""
    regret_sizes: tuple[float, ...] = (0.5, 1.0)
    """Regret weights, in (0, 1]."""
    belief_sizes: tuple[float, ...] = (0.15, 0.4)
    """How far right (m) the users believe the hazard is."""
    correct: bool = True
    """Also fit with the correct human model where it is expressible (known gamma, belief)."""
    policy_methods: tuple[str, ...] = ("btl",)
    """Methods whose learned rewards PPO optimises (true_return)."""
    policy_kinds: tuple[str, ...] = KINDS
    """Kinds at whose largest deviation PPO runs (plus no deviation, and the corrected gamma)."""
    data: DatasetConfig = DatasetConfig(
        num_users=48, context_size=8, heldout_size=24, pool_size=2048, num_episodes=256
    )
    """Preference data (users, K context and M held-out pairs per user, pool, episodes)."""
    reward_train: R.TrainConfig = R.TrainConfig(num_epochs=100, users_per_batch=8)
    """Reward-model training (the same for every point of the sweep)."""
    sizes: R.ModelSizes = R.ModelSizes()
    """Reward-network sizes (VPL's context size is set to data.context_size)."""
    ppo: P.PPOConfig = P.PPOConfig(total_timesteps=600_000, center_rewards=True)
    """PPO for the oracle (whose critic gives V*) and the learned rewards."""
    num_eval_episodes: int = checked(8, Int(ge=1))
    """Evaluation episodes per test user."""

    def sizes_of(self, kind: str) -> tuple[float, ...]:
        return getattr(self, f"{kind}_sizes")

    def validate(self):
        super().validate()
        Choices(self.methods, min_count=0).check("policy_methods", self.policy_methods)
        Choices(self.kinds, min_count=0).check("policy_kinds", self.policy_kinds)
        for kind in self.kinds:  # the sizes of a kind not swept are not used
            SIZES[kind].check(f"{kind}_sizes", self.sizes_of(kind))
        harness.reward_models(self.sizes, self.methods, self.data.context_size, "data.context_size")
        self.data.validate(task_env(self), "data")
        check_policy_config(self.ppo, task_env(self))
        population(self)  # unknown or repeated user types raise, naming the field
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        beta_sizes=(0.5, 1.0, 2.0, 4.0, 8.0),
        gamma_sizes=(0.1, 0.2, 0.35, 0.5, 0.7),
        epsilon_sizes=(0.05, 0.1, 0.2, 0.3, 0.4),
        regret_sizes=(0.25, 0.5, 0.75, 1.0),
        belief_sizes=(0.1, 0.2, 0.3, 0.4, 0.6),
        policy_methods=("btl", "vpl"),
        data=DatasetConfig(
            num_users=256, context_size=16, heldout_size=64, pool_size=16384, num_episodes=2048
        ),
        reward_train=R.TrainConfig(num_epochs=200, users_per_batch=32, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16),
        ppo=P.PPOConfig(
            total_timesteps=20_000_000, num_envs=2048, num_minibatches=32, center_rewards=True
        ),
        num_eval_episodes=32,
        chunk_updates=10,
    ),
}


def task_env(config: Config) -> envs.FeatureEnv:
    return envs.make(TASK, num_goals=config.num_goals)


def population(config: Config) -> Population:
    """``--population`` if given, else ``navigation_types`` in equal shares."""
    return harness.task_population(config, TASK)


# --- fitting with the correct human model -------------------------------------------------------
def fit_correct(env, model, config: Config, key, dataset, point: SweepPoint, rational):
    """The model with ``point``'s correct human model (known discount; LinearBayes on the
    believed features), fitted to one labelled dataset: ``(params, {metric: value})``."""
    if point.kind == "gamma":
        model = R.with_discount(model, 1.0 - point.size)
    seen = dataset
    if point.kind == "belief":
        seen = perceived(env, dataset, shifted_hazard(env, point.size))
    params = fit_labellings(model, config.reward_train, key, [seen])
    scores = score_points(model, params, [seen], rational)
    return jax.tree.map(lambda x: x[0], params), {m: float(v[0]) for m, v in scores.items()}


def score_points(model, params, datasets, rational) -> dict[str, np.ndarray]:
    """Per point, the test users' mean ``rational_accuracy`` and (LinearBayes) ``alignment``
    (:func:`vpl_jax.pipeline.labelling_scores` against their rational answers)."""
    scores = labelling_scores(model, params, datasets, rational)
    return {"rational_accuracy" if m == "accuracy" else m: v for m, v in scores.items()}


# --- figure ---------------------------------------------------------------------------------------
def plot_sweep(rows: list[dict], kinds, methods) -> plt.Figure:
    """Rows: metrics; columns: kinds of deviation; a line per method (dashed: correct model)."""
    metrics = [m for m in ("alignment", "rational_accuracy", "true_return") if any(
        r["metric"] == m for r in rows)]  # fmt: skip
    fig, axes = plt.subplots(
        len(metrics), len(kinds), figsize=(3.2 * len(kinds), 2.8 * len(metrics)), squeeze=False
    )
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = dict(zip(("oracle", *METHODS), palette[: len(METHODS) + 1], strict=True))
    for i, metric in enumerate(metrics):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            for method in ("oracle", *methods):
                for human, style in (("boltzmann", "-o"), ("correct", "--s")):
                    sel = sorted(
                        (r["deviation"], r["value"])
                        for r in rows
                        if r["metric"] == metric
                        and r["method"] == method
                        and r["deviation_kind"] == kind
                        and r["human_model"] == human
                    )
                    if not sel:
                        continue
                    label = method if human == "boltzmann" else f"{method} (correct model)"
                    ax.plot(*zip(*sel, strict=True), style, color=colors[method], label=label,
                            ms=4)  # fmt: skip
            if i == len(metrics) - 1:
                ax.set_xlabel(UNITS[kind])
            if j == 0:
                ax.set_ylabel(metric.replace("_", " "))
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8,
               bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


# --- the experiment -------------------------------------------------------------------------------
def main(config: Config, results: harness.RunResults) -> str:
    env = task_env(config)
    pop = population(config)
    key = jax.random.PRNGKey(config.seed)
    k_data, k_oracle, k_label, k_rational, k_fit, k_policy, k_eval = jax.random.split(key, 7)
    dataset = build_dataset(k_data, env, pop, config.data, task=TASK)
    _, test = dataset.split()
    rows: list[dict] = []

    def add(method, metric, value, kind, size, human="boltzmann"):
        kinds = config.kinds if kind == "none" else (kind,)  # the shared point, under each kind
        for k in kinds:
            row = {"method": method, "metric": metric, "value": float(value),
                   "deviation_kind": k, "deviation": size, "human_model": human}  # fmt: skip
            rows.append(row)
            results.add(task=TASK, **row)

    # The oracle: PPO on every user's true reward, conditioned on theta. Its critic gives each
    # user's V* (regret-based users); its returns are the test users' reference.
    start = time.time()
    # Raw rewards (no per-user scaling): its critic is each user's V* in their own reward's
    # units, which regret-based labels compare with their returns.
    oracle = PolicyTrainer(
        env, "oracle", None, config.ppo, config.chunk_updates, reward_scaling="none"
    )
    oracle_states, history = oracle.train(
        k_oracle[None],
        {"theta": dataset.users.theta[None]},
        desc="oracle PPO",
        checkpointer=results.checkpointer("oracle", config.checkpoint_every),
    )  # one run (PolicyTrainer.train_one), keeping its training curves
    oracle_state = jax.tree.map(lambda x: x[0], oracle_states)
    results.log_ppo_history("oracle/ppo", history, config.ppo.env_steps_per_update)
    oracle_eval = oracle.evaluate(
        oracle_state, test.users.theta, test.users.theta, k_eval, config.num_eval_episodes
    )
    for kind in config.policy_kinds:
        for size in (0.0, max(config.sizes_of(kind))):
            add("oracle", "true_return", np.mean(oracle_eval.true_return), kind, size)
    values = None  # each user's V* at the ends of every segment, for the regret-based users
    if "regret" in config.kinds:
        values = oracle.segment_values(oracle_state, dataset.segments, dataset.users.theta)
    print(f"oracle: true return {np.mean(oracle_eval.true_return):.2f} "
          f"({time.time() - start:.0f} s)")  # fmt: skip

    points = sweep_points(config.kinds, config.sizes_of)
    # Every pair answered again at each point, with the same key (common random numbers).
    datasets = [relabel_deviating(k_label, env, dataset, p.kind, p.size, values) for p in points]
    # The users' rational answers about their held-out pairs (true features).
    rational_answers = label_queries(
        k_rational, test.users.rational(), test.segments, test.heldout.pairs
    )
    rational = test.replace(heldout=rational_answers)
    agreement = [
        float(np.mean(np.asarray(d.split()[1].heldout.labels == rational_answers.labels)))
        for d in datasets
    ]
    for p, a in zip(points, agreement, strict=True):
        add("users", "label_agreement", a, p.kind, p.size)

    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    fitted = {}
    for method in config.methods:
        start = time.time()
        model = R.make_model(method, sizes)
        params = fit_labellings(model, config.reward_train, k_fit, datasets)  # one vmap
        scores = score_points(model, params, datasets, rational)
        for metric, per_point in scores.items():
            for p, v in zip(points, per_point, strict=True):
                add(method, metric, v, p.kind, p.size)
        # The correct human model, where expressible: one fit per point (its model differs).
        corrected = {}
        for kind in config.kinds if config.correct else ():
            if method not in CORRECTABLE.get(kind, ()):
                continue
            for i, p in enumerate(points):
                if p.kind == kind:
                    corrected[p], scores_c = fit_correct(
                        env, model, config, k_fit, datasets[i], p, rational
                    )
                    for metric, value in scores_c.items():
                        add(method, metric, value, kind, p.size, "correct")
            for metric, per_point in scores.items():  # at no deviation it is the assumed model
                add(method, metric, per_point[0], kind, 0.0, "correct")
        fitted[method] = (model, params, corrected)
        summary = ", ".join(f"{m} {v[0]:.3f}→{v[-1]:.3f}" for m, v in scores.items())
        print(f"[{method}] fitted {len(points)} points ({summary}; {time.time() - start:.0f} s)")

    # True return of the policies optimised on the learned rewards, at a few points.
    chosen = [0] + [
        points.index(SweepPoint(kind, max(config.sizes_of(kind)))) for kind in config.policy_kinds
    ]
    for method in config.policy_methods:
        start = time.time()
        model, params, corrected = fitted[method]
        runs = [(points[i], "boltzmann", jax.tree.map(lambda x, i=i: x[i], params))
                for i in chosen]  # fmt: skip
        runs += [(p, "correct", c) for p, c in corrected.items()
                 if p.kind == "gamma" and p.size == max(config.sizes_of("gamma"))
                 and p.kind in config.policy_kinds]  # fmt: skip
        data_of = {p: datasets[points.index(p)] for p in points}
        inputs = [policy_inputs(method, model, prm, data_of[p]) for p, _, prm in runs]
        trainer = PolicyTrainer(env, method, model, config.ppo, config.chunk_updates)
        states, history = trainer.train(
            jax.random.split(k_policy, len(runs)),
            jax.tree.map(lambda *xs: jnp.stack(xs), *inputs),
            desc=f"{method} PPO ×{len(runs)}",
            checkpointer=results.checkpointer(method, config.checkpoint_every),
        )
        for r, (p, human, prm) in enumerate(runs):
            results.log_ppo_history(
                f"{method}/ppo/{p.kind}_{p.size:g}_{human}",
                jax.tree.map(lambda x, r=r: np.asarray(x)[:, r : r + 1], history),
                config.ppo.env_steps_per_update,
            )
            state = jax.tree.map(lambda x, r=r: x[r], states)
            z = test_latents(method, model, prm, data_of[p])
            ev = trainer.evaluate(state, z, test.users.theta, k_eval, config.num_eval_episodes)
            add(method, "true_return", np.mean(ev.true_return), p.kind, p.size, human)
            if p.kind == "none" and config.correct and "gamma" in config.policy_kinds:
                add(method, "true_return", np.mean(ev.true_return), "gamma", 0.0, "correct")
        print(f"[{method}] PPO on {len(runs)} learned rewards ({time.time() - start:.0f} s)")

    results.figure(plot_sweep(rows, config.kinds, config.methods), "misspecification")
    return notes(rows, config)


def notes(rows: list[dict], config: Config) -> str:
    """Markdown: each metric at no deviation and at each kind's largest deviation."""
    lines = [
        "## Test users: no deviation → largest deviation of each kind (boltzmann / correct)",
        "",
        "| method | metric | kind | none | largest, assumed model | largest, correct model |",
        "|---|---|---|---|---|---|",
    ]
    index = {(r["method"], r["metric"], r["deviation_kind"], r["deviation"], r["human_model"]):
             r["value"] for r in rows}  # fmt: skip
    for method in ("oracle", *config.methods):
        for metric in ("alignment", "rational_accuracy", "true_return"):
            for kind in config.kinds:
                big = max(config.sizes_of(kind))
                base = index.get((method, metric, kind, 0.0, "boltzmann"))
                if base is None:
                    continue
                assumed = index.get((method, metric, kind, big, "boltzmann"))
                correct = index.get((method, metric, kind, big, "correct"))
                fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
                lines.append(f"| {method} | {metric} | {kind} ({big:g}) | {fmt(base)} | "
                             f"{fmt(assumed)} | {fmt(correct)} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    harness.run_experiment("misspecification", Config, PRESETS, main, description=__doc__)
