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
  true rewards (:func:`vpl_jax.pipeline.train_oracle`, :func:`vpl_jax.users.segment_values`);
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
with it (``human_model = correct``, :func:`vpl_jax.pipeline.correct_human_model`): a known myopic
discount (every model's likelihood discounts the segment return) and a known belief (LinearBayes
on the features of the world the user believes in). The zero-deviation point is shared by every kind
(its rows repeat under each kind, so each curve starts at 0).

Seeds: ``num_seeds`` training seeds on the one dataset, each model's S seeds of every point, the
S oracles and the S × chosen-points PPO runs each in one ``vmap``; every number is written per
seed (``summary.md`` and ``intervals.json``: mean and 95 % interval; the figure: error bars; the
notes table: the mean). The data's label agreement is written once (seed 0), and the
regret-based users' ``V*`` is seed 0's oracle critic, so the relabelled data stay one dataset.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import defaultdict

import jax
import numpy as np

from vpl_jax import harness, pipeline
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Each, Float, Int, checked
from vpl_jax.data import DatasetConfig, relabel_deviating
from vpl_jax.harness import SweepPoint, sweep_points
from vpl_jax.plotting import metric_grid

TASK = "navigation"
#: Each kind of deviation: the sizes it accepts (at least one per kind swept) and its unit.
DEVIATIONS = {
    "beta": (Each(Float(gt=0), min_count=1), "temperature 1/β"),
    "gamma": (Each(Float(ge=0, lt=1), min_count=1), "myopia 1 − γ"),
    "epsilon": (Each(Float(gt=0, le=0.5), min_count=1), "mistake probability ε"),
    "regret": (Each(Float(gt=0, le=1), min_count=1), "regret weight w"),
    "belief": (Each(Float(gt=0), min_count=1), "believed hazard shift (m)"),
}
KINDS = tuple(DEVIATIONS)
#: Kinds whose correct human model the framework expresses, and for which methods.
CORRECTABLE = {"gamma": ("linear_bayes", "btl", "vpl"), "belief": ("linear_bayes",)}
METHODS = ("linear_bayes", "btl", "vpl")
#: The inferred-reward errors, as plotted and tabulated.
METRICS = ("alignment", "rational_accuracy", "true_return")


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks = (TASK,)  # not a field: the deviations and the narrow data are navigation's
    navigation_types: tuple[str, ...] = ("goal_a", "cautious")
    """Navigation user types, in equal shares (--population gives any other)."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(3, Int(ge=1))
    """Training seeds (reward models, oracle, PPO on the learned rewards), trained in one vmap
    on the one dataset."""
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
            DEVIATIONS[kind][0].check(f"{kind}_sizes", self.sizes_of(kind))
        harness.reward_models(self.sizes, self.methods, self.data.context_size, "data.context_size")
        self.data.validate(harness.task_env(self, TASK), "data")
        pipeline.check_policy_config(self.ppo, harness.task_env(self, TASK))
        harness.task_population(self, TASK)  # unknown or repeated user types raise, naming it
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
        num_seeds=5,
        chunk_updates=10,
    ),
}


# --- the experiment -------------------------------------------------------------------------------
def main(config: Config, results: harness.RunResults) -> str:
    env = harness.task_env(config, TASK)
    key = jax.random.PRNGKey(config.seed)
    k_data, k_oracle, k_label, k_rational, k_fit, k_policy, k_eval = jax.random.split(key, 7)
    dataset = harness.task_dataset(config, TASK, k_data)
    theta = dataset.split()[1].users.theta  # the test users'
    largest = {kind: max(config.sizes_of(kind)) for kind in config.kinds}
    num_seeds = config.num_seeds
    rows: list[dict] = []

    def add(method, metric, values, kind, size, human="boltzmann"):
        """A row per seed of ``values: [S]`` (seed s's value at ``values[s]``)."""
        for k in config.kinds if kind == "none" else (kind,):  # the shared point, under each kind
            for s, value in enumerate(np.asarray(values)):
                row = {"method": method, "metric": metric, "value": float(value), "seed": s,
                       "deviation_kind": k, "deviation": size, "human_model": human}  # fmt: skip
                rows.append(row)
                results.add(task=TASK, **row)

    # The oracles (S seeds): their returns are the test users' reference, seed 0's critic each
    # user's V* (regret; one V* keeps the relabelled data one dataset for every seed:
    # per-seed V* would mix the data's variation into the seeds').
    start = time.time()
    oracle, oracle_states, history = pipeline.train_oracle(
        env, config.ppo, config.chunk_updates, dataset, jax.random.split(k_oracle, num_seeds),
        checkpointer=results.checkpointer("oracle", config.checkpoint_every),
    )  # fmt: skip
    results.log_ppo_history("oracle/ppo", history, config.ppo.env_steps_per_update)
    reference = pipeline.oracle_returns(
        oracle, oracle_states, theta, k_eval, config.num_eval_episodes
    )
    reference_return = reference.mean(axis=-1)  # [S]: every seed's oracle, acting on theta
    for kind in config.policy_kinds:
        for size in (0.0, largest[kind]):
            add("oracle", "true_return", reference_return, kind, size)
    values = None  # each user's V* at the ends of every segment, for the regret-based users
    if "regret" in config.kinds:
        first = jax.tree.map(lambda x: x[0], oracle_states)
        values = oracle.segment_values(first, dataset.segments, dataset.users.theta)
    print(f"oracle: true return {reference_return.mean():.2f} over {num_seeds} seeds "
          f"({time.time() - start:.0f} s)")  # fmt: skip

    points = sweep_points(config.kinds, config.sizes_of)
    # Every pair answered again at each point, with the same key (common random numbers).
    datasets = [relabel_deviating(k_label, env, dataset, p.kind, p.size, values) for p in points]
    rational = pipeline.rational_targets(k_rational, dataset)  # the reference answers
    for p, a in zip(points, pipeline.label_agreement(datasets, rational), strict=True):
        add("users", "label_agreement", [a], p.kind, p.size)  # the data's: seed 0 only

    def scores(model, params, datasets) -> dict[str, np.ndarray]:  # each [S, P]
        out = pipeline.labelling_scores(model, params, datasets, rational, seeds=True)
        return {"rational_accuracy" if m == "accuracy" else m: v for m, v in out.items()}

    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    fit_keys = jax.random.split(k_fit, num_seeds)  # every fit: S seeds in one vmap
    fitted = {}
    for method in config.methods:
        start = time.time()
        model = R.make_model(method, sizes)
        params = pipeline.fit_labellings(model, config.reward_train, fit_keys, datasets)  # [S, P]
        assumed = scores(model, params, datasets)
        for metric, per_point in assumed.items():
            for p, v in zip(points, per_point.T, strict=True):
                add(method, metric, v, p.kind, p.size)
        # The correct human model, where expressible: one fit per point (its model differs).
        corrected, correctable = {}, [k for k in config.kinds if method in CORRECTABLE.get(k, ())]
        for kind in correctable if config.correct else ():
            for p, data in zip(points, datasets, strict=True):
                if p.kind == kind:  # the model told the deviation, on the data as it sees them
                    known, seen = pipeline.correct_human_model(model, env, data, kind, p.size)
                    params_c = pipeline.fit_labellings(known, config.reward_train, fit_keys, [seen])
                    corrected[p] = jax.tree.map(lambda x: x[:, 0], params_c)  # [S]
                    for metric, v in scores(known, params_c, [seen]).items():
                        add(method, metric, v[:, 0], kind, p.size, "correct")
            for metric, per_point in assumed.items():  # at no deviation it is the assumed model
                add(method, metric, per_point[:, 0], kind, 0.0, "correct")
        fitted[method] = (model, params, corrected)
        summary = ", ".join(f"{m} {v[:, 0].mean():.3f}→{v[:, -1].mean():.3f}"
                            for m, v in assumed.items())  # fmt: skip
        print(f"[{method}] fitted {len(points)} points × {num_seeds} seeds ({summary}; "
              f"{time.time() - start:.0f} s)")  # fmt: skip

    # True return of the policies optimised on the learned rewards, at a few points.
    chosen = [points[0]] + [SweepPoint(kind, largest[kind]) for kind in config.policy_kinds]
    myopic = SweepPoint("gamma", largest.get("gamma"))  # its correct model's reward too
    for method in config.policy_methods:
        start = time.time()
        model, params, corrected = fitted[method]
        rewards = [(p, "boltzmann", jax.tree.map(lambda x, p=p: x[:, points.index(p)], params))
                   for p in chosen]  # fmt: skip
        if myopic in corrected and "gamma" in config.policy_kinds:
            rewards.append((myopic, "correct", corrected[myopic]))
        # Every seed's reward at every chosen point: S × R runs in one vmap.
        fits = [(prm, datasets[points.index(p)]) for p, _, prm in rewards]
        trainer = pipeline.PolicyTrainer(env, method, model, config.ppo, config.chunk_updates)
        evaluations, history = pipeline.policies_on_rewards(
            trainer, fits, k_policy, k_eval, config.num_eval_episodes, seeds=num_seeds,
            desc=f"{method} PPO ×{num_seeds * len(fits)}",
            checkpointer=results.checkpointer(method, config.checkpoint_every),
        )  # fmt: skip
        returns = np.array([[np.mean(ev.true_return) for ev in row] for row in evaluations])
        for r, (p, human, _) in enumerate(rewards):  # returns [S, R], history [updates, S, R]
            run_history = jax.tree.map(lambda x, r=r: x[:, :, r], history)  # its S runs
            results.log_ppo_history(f"{method}/ppo/{p.kind}_{p.size:g}_{human}", run_history,
                                    config.ppo.env_steps_per_update)  # fmt: skip
            add(method, "true_return", returns[:, r], p.kind, p.size, human)
            if p.kind == "none" and config.correct and "gamma" in config.policy_kinds:
                add(method, "true_return", returns[:, r], "gamma", 0.0, "correct")
        print(f"[{method}] PPO on {len(rewards)} learned rewards × {num_seeds} seeds "
              f"({time.time() - start:.0f} s)")  # fmt: skip

    fig = metric_grid(  # rows repeat per seed: their mean, with error bars over seeds
        rows, METRICS, {k: DEVIATIONS[k][1] for k in config.kinds}, ("oracle", *config.methods),
        column="deviation_kind", x="deviation", colors=("oracle", *METHODS),
        variant=("human_model", "correct", "correct model"),  # dashed: the correct human model
    )  # fmt: skip
    results.figure(fig, "misspecification")
    return notes(rows, config)


def notes(rows: list[dict], config: Config) -> str:
    """Markdown: each metric at no deviation and at each kind's largest deviation, the mean over
    the seeds (``summary.md``'s tables above give the intervals)."""
    lines = [
        "## Test users: no deviation → largest deviation of each kind (boltzmann / correct), "
        f"mean over {config.num_seeds} seeds",
        "",
        "| method | metric | kind | none | largest, assumed model | largest, correct model |",
        "|---|---|---|---|---|---|",
    ]
    seeds = defaultdict(list)  # a cell's values, one per seed
    for r in rows:
        cell = (r["method"], r["metric"], r["deviation_kind"], r["deviation"], r["human_model"])
        seeds[cell].append(r["value"])
    index = {cell: np.mean(values) for cell, values in seeds.items()}
    entries = itertools.product(("oracle", *config.methods), METRICS, config.kinds)
    for method, metric, kind in entries:
        big = max(config.sizes_of(kind))
        at = ((0.0, "boltzmann"), (big, "boltzmann"), (big, "correct"))
        cells = [index.get((method, metric, kind, size, human)) for size, human in at]
        if cells[0] is not None:  # none, largest with the assumed model, with the correct one
            values = " | ".join("" if v is None else f"{v:.3f}" for v in cells)
            lines.append(f"| {method} | {metric} | {kind} ({big:g}) | {values} |")
    return "\n".join(lines)


if __name__ == "__main__":
    harness.run_experiment("misspecification", Config, PRESETS, main, description=__doc__)
