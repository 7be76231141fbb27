"""VPL with many users: held-out accuracy as distinct user types multiply, and as a continuous
population spreads.

    python experiments/many_types.py --preset cpu --run-name RUN

Two sweeps per task, every point one population asked about the same segments and pairs
(``data.repopulate`` of one dataset, so results differ only through the users):

* **type counts** N in ``type_counts``: N user types in equal shares, each type's weights a
  direction drawn uniformly on the sphere over the task's features (a standard normal vector,
  normalised: ``users.Population.random_types``), seeded from ``--seed``. The law is symmetric,
  so types disagree as often as they agree, and their mean reward — what one reward for all
  learns — shrinks as N grows;
* **spreads** s in ``spreads``: ``theta ~ N(mu, s^2 I)`` around the unit vector of equal
  weights ``mu`` (the Gaussian population of ``--population TASK:gaussian:...``), so s is the
  spread per feature relative to the mean's length.

Every method (``btl``, ``vpl``, ``linear_bayes`` by default) trains ``num_seeds`` seeds in one
``vmap`` on each population's training users (compiled once per method: the populations share
every array shape) and is scored on the test users' held-out pairs given their K context pairs.
Tidy rows: ``heldout_accuracy`` (all test users), ``worst_type_accuracy`` (the lowest type mean;
type counts only) and LinearBayes' ``theta_alignment``, each per seed with ``num_types`` or
``population="gaussian"`` and ``spread``; ``summary.md`` gives 95 % intervals over the training
seeds (one dataset per run: ``--seed`` varies the types and the data). Figures: accuracy versus
the number of types and versus the spread, a line per method with its 95 % interval band.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np

from vpl_jax import harness, pipeline
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Each, Float, Int, checked
from vpl_jax.data import DatasetConfig, build_dataset, repopulate
from vpl_jax.data.dataset import check_users_per_type
from vpl_jax.intervals import seed_interval
from vpl_jax.keys import named_key
from vpl_jax.plotting import band, plt
from vpl_jax.users import HumanModel, Population
from vpl_jax.users.spec import GAUSSIAN

TASKS = ("highway", "navigation")
METHODS = ("btl", "vpl", "linear_bayes")


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy):
    tasks: tuple[str, ...] = checked(("highway",), Choices(TASKS))
    """Tasks to run."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    random and Gaussian populations have none, so they are rational, inf)."""
    methods: tuple[str, ...] = checked(METHODS, Choices(R.REWARD_METHODS))
    """Reward models to train."""
    type_counts: tuple[int, ...] = checked((2, 4, 8, 16), Each(Int(ge=2)))
    """Numbers of random user types (equal shares), one population each."""
    spreads: tuple[float, ...] = checked((0.1, 0.3, 0.6, 1.0), Each(Float(ge=0)))
    """Per-feature standard deviations of the Gaussian populations around the unit mean."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(3, Int(ge=1))
    """Training seeds per model and population, trained in one vmap."""
    data: DatasetConfig = DatasetConfig(
        num_users=240,
        test_fraction=0.2,
        context_size=8,
        heldout_size=24,
        pool_size=1024,
        num_episodes=128,
    )
    """Dataset sizes. With test_fraction 0.2, validation_fraction 0.25 and num_users a multiple
    of 80, every population of up to 16 types splits into the same numbers of fitting,
    validation and test users, so each method compiles once for all of them."""
    train: R.TrainConfig = R.TrainConfig(num_epochs=40, users_per_batch=16)
    """Reward-model training."""
    sizes: R.ModelSizes = R.ModelSizes(hidden=(32, 32), inputs="features")
    """Network sizes shared by the models (VPL's context_size is set to data.context_size).
    The networks read the task's features (known features, as LinearBayes): what is measured
    is how well each method tells many users apart, not how well it learns features, which
    needs more users and labels than a few minutes allow (the paper preset reads
    transitions)."""
    validation_fraction: float = checked(0.25, Float(ge=1e-6, le=1 - 1e-6))
    """Share of each type's training users held out for early stopping."""

    def validate(self):
        super().validate()
        if self.population:
            raise harness.ConfigError(
                f"population={list(self.population)}: many_types draws its own populations "
                "(type_counts, spreads); leave population out"
            )
        if not self.type_counts and not self.spreads:
            raise harness.ConfigError("type_counts, spreads: give at least one of them")
        for name in ("type_counts", "spreads"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise harness.ConfigError(f"{name}={list(values)}: values must not repeat")
        harness.reward_models(self.sizes, self.methods, self.data.context_size, "data.context_size")
        for task in self.tasks:
            env = harness.task_env(self, task)
            self.data.validate(env, "data")
            for n in self.type_counts:
                types = Population.random_types(task, env.feature_names, n, jax.random.PRNGKey(0))
                try:
                    check_users_per_type(types, self.data, "data.num_users")
                except ValueError as e:
                    raise harness.ConfigError(
                        f"{e} (type_counts={n}: every type needs training and test users)"
                    ) from None
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        tasks=("highway", "navigation"),
        type_counts=(2, 4, 8, 16, 32),
        spreads=(0.1, 0.3, 0.6, 1.0, 1.5),
        num_seeds=5,
        data=DatasetConfig(
            num_users=960,
            test_fraction=0.2,
            context_size=16,
            heldout_size=64,
            pool_size=16384,
            num_episodes=2048,
        ),
        train=R.TrainConfig(num_epochs=200, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16, inputs="transition"),
    ),
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One population of a sweep: its result fields (``num_types`` or ``population`` and
    ``spread``) and the population."""

    fields: dict
    population: Population

    @property
    def name(self) -> str:
        if "num_types" in self.fields:
            return f"{self.fields['num_types']} types"
        return f"gaussian, std {self.fields['spread']:g}"


def sweep(config: Config, task: str, key: jax.Array) -> list[Point]:
    """The task's populations: ``type_counts`` random-type mixtures, then ``spreads``
    Gaussians around the unit vector of equal weights."""
    features = harness.task_env(config, task).feature_names
    human = HumanModel.create(beta=math.inf if config.beta is None else config.beta)
    noise = config.weight_noise or 0.0
    points = [
        Point(
            {"population": "types", "num_types": n},
            Population.random_types(task, features, n, named_key(key, f"types_{n}"), human, noise),
        )
        for n in config.type_counts
    ]
    mean = {name: 1.0 / math.sqrt(len(features)) for name in features}
    points += [
        Point(
            {"population": GAUSSIAN, "spread": s},
            Population.continuous(task, features, mean, s, human, name=GAUSSIAN),
        )
        for s in config.spreads
    ]
    return points


def score(model, fit: pipeline.RewardFit, test) -> dict[str, np.ndarray]:
    """Per seed (``f32[S]``): the test users' mean held-out accuracy, the worst type's, and
    LinearBayes' mean theta alignment."""
    ev = fit.evaluation
    out = {
        "heldout_accuracy": np.nanmean(np.asarray(ev.accuracy), axis=1),
        "worst_type_accuracy": np.nanmin(np.asarray(ev.type_accuracy), axis=1),
    }
    if isinstance(model, R.LinearBayes):
        context = R.user_pairs(test, "context", model.inputs)
        theta = test.users.theta
        alignment = jax.vmap(lambda p: R.theta_alignment(model, p, context, theta))(fit.params)
        out["theta_alignment"] = np.asarray(alignment).mean(axis=1)
    return out


def run_task(config: Config, task: str, key: jax.Array, results: harness.RunResults) -> list:
    """Every population of the task's sweep, every method: ``[(point, method, scores)]``."""
    k_types, k_data, k_models = jax.random.split(key, 3)
    points = sweep(config, task, k_types)
    env = harness.task_env(config, task)
    base = build_dataset(k_data, env, points[0].population, config.data, task=task)
    models = harness.reward_models(
        config.sizes, config.methods, config.data.context_size, "data.context_size"
    )
    out = []
    for point in points:
        dataset = repopulate(
            named_key(k_data, point.name), base, point.population, config.data.test_fraction
        )
        _, test = dataset.split()
        for method, model in models.items():
            start = time.time()
            keys = jax.random.split(named_key(k_models, method), config.num_seeds)
            fit = pipeline.fit_reward(
                model, config.train, keys, dataset, config.validation_fraction
            )
            scores = score(model, fit, test)
            for metric, values in scores.items():
                if metric == "worst_type_accuracy" and point.fields["population"] == GAUSSIAN:
                    continue  # one type: the same as heldout_accuracy
                for s, value in enumerate(values):
                    results.add(
                        method=method, task=task, metric=metric, value=value, seed=s,
                        **point.fields,
                    )  # fmt: skip
            out.append((point, method, scores))
            print(
                f"[{task}] {point.name:18s} {method:14s} accuracy "
                f"{scores['heldout_accuracy'].mean():.3f} worst type "
                f"{scores['worst_type_accuracy'].mean():.3f} ({time.time() - start:.0f} s)"
            )
    return out


def plot_sweeps(per_task: dict, config: Config) -> plt.Figure:
    """Accuracy versus the number of types and versus the spread, per task (rows)."""
    sweeps = [
        (kind, field, values, label)
        for kind, field, values, label in (
            ("types", "num_types", config.type_counts, "distinct user types N"),
            (GAUSSIAN, "spread", config.spreads, "spread of theta (std per feature)"),
        )
        if values
    ]
    fig, axes = plt.subplots(
        len(per_task), len(sweeps), figsize=(5 * len(sweeps), 3.6 * len(per_task)), squeeze=False
    )
    for row, (task, out) in zip(axes, per_task.items(), strict=True):
        for ax, (kind, field, values, label) in zip(row, sweeps, strict=True):
            for method in config.methods:
                acc = [
                    scores["heldout_accuracy"]
                    for point, m, scores in out
                    if m == method and point.fields["population"] == kind
                ]
                band(ax, list(values), np.stack(acc, axis=1), method, marker="o")
            if field == "num_types":
                ax.set_xscale("log", base=2)
                ax.set_xticks(list(values), [str(v) for v in values])
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.set_xlabel(label)
            ax.set_ylabel("held-out accuracy (test users)")
            ax.set_title(task)
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _interval(values) -> str:
    i = seed_interval(values)
    return f"{i.estimate:.3f} [{i.low:.3f}, {i.high:.3f}]"


def notes(per_task: dict, config: Config) -> str:
    """Per population: each method's accuracy, VPL − BTL and VPL − LinearBayes (per-seed
    differences, same dataset and seed index), with 95 % intervals over seeds."""
    lines = [
        "## Held-out accuracy of test users: mean [95 % interval over training seeds]",
        "",
        "| task | population | "
        + " | ".join(config.methods)
        + " | vpl − btl | vpl − linear_bayes |",
        "|---" * (len(config.methods) + 4) + "|",
    ]
    for task, out in per_task.items():
        by_point: dict[str, dict] = {}
        for point, method, scores in out:
            by_point.setdefault(point.name, {})[method] = scores["heldout_accuracy"]
        for name, acc in by_point.items():
            cells = [_interval(acc[m]) for m in config.methods]
            for other in ("btl", "linear_bayes"):
                both = "vpl" in acc and other in acc
                cells.append(_interval(acc["vpl"] - acc[other]) if both else "")
            lines.append(f"| {task} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(config: Config, results: harness.RunResults) -> str:
    key = jax.random.PRNGKey(config.seed)
    per_task = {}
    for task in config.tasks:
        per_task[task] = run_task(config, task, named_key(key, task), results)
    results.figure(plot_sweeps(per_task, config), "accuracy_vs_types_and_spread")
    return notes(per_task, config)


if __name__ == "__main__":
    harness.run_experiment("many_types", Config, PRESETS, main, description=__doc__)
