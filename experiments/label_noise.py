"""Label noise: does VPL degrade gracefully when people answer noisily, at several context sizes?

    python experiments/label_noise.py --preset cpu --run-name RUN

For each task (navigation: users who want opposite goals; highway: aggressive and cautious
drivers) one dataset is built, and every pair of every user is answered again by the same users,
rational but for one kind of noise of growing size (the same key at every point: common random
numbers, so answers differ only where the noise changes them):

* ``epsilon`` — the mistake probability ε: each answer is flipped with probability ε;
* ``temperature`` — the Boltzmann temperature 1/β: P(a ≻ b) = σ(β (R_a − R_b)).

Every reward model in ``methods`` (BTL, VPL, and LinearBayes, which reads the task's features:
the known-features reference) is trained on each labelling of the training users with
``num_seeds`` seeds, every noise point and seed of a model in one compiled vmap
(:func:`vpl_jax.pipeline.fit_labellings`). Each test user is scored on their *rational* answers
about their held-out pairs, given their first k noisy context answers, for each k in
``context_sizes`` (BTL ignores the context: its number repeats for every k).

Rows: ``rational_accuracy`` per method, task, user type (and ``all``), ``noise`` kind, ``size``
and ``n_queries`` = k, one per seed (the no-noise point is written under each kind with size 0,
so each curve starts there); ``label_agreement`` (method ``users``): the share of the noisy
answers that equal the rational ones. The intervals are over training seeds on one dataset per
task. Figure ``label_noise``: accuracy versus noise size, a panel per task and k, a row per kind.
The notes: VPL − BTL at no noise and at the largest noise, per task, k and kind, and whether
VPL stays above BTL at the largest noise everywhere (:data:`GRACEFUL`).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from vpl_jax import harness
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Each, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset, relabel
from vpl_jax.harness import SweepPoint, claims, sweep_points
from vpl_jax.intervals import seed_interval
from vpl_jax.pipeline import fit_labellings, score_labellings
from vpl_jax.plotting import errorbars, plt
from vpl_jax.users import User, deviating

KINDS = ("epsilon", "temperature")
#: Each kind of noise as a deviation of the human model (:data:`vpl_jax.users.DEVIATIONS`; the
#: ``beta`` deviation's size is the temperature 1/β).
DEVIATION = {"epsilon": "epsilon", "temperature": "beta"}
#: The noise sizes each kind accepts (at least one per kind).
SIZES = {
    "epsilon": Each(Float(gt=0, le=0.5), min_count=1),
    "temperature": Each(Float(gt=0), min_count=1),
}
#: The size of each kind of noise, as plotted.
UNITS = {"epsilon": "mistake probability ε", "temperature": "temperature 1/β"}
METHODS = ("btl", "vpl", "linear_bayes")
METRIC = "rational_accuracy"

#: The claim the notes judge: VPL's advantage over one reward for all survives the noise.
GRACEFUL = claims.Claim(
    name="vpl_robust_to_label_noise",
    text="VPL stays above BTL at the largest label noise",
    experiment="label_noise",
    measures="rational_accuracy, vpl − btl (all test users) at the largest size of each "
    "noise kind, per task and k",
    measure=claims.difference(
        METRIC,
        {"method": "vpl", "user_type": "all"},
        {"method": "btl", "user_type": "all"},
        over=("task", "noise", "n_queries"),
        largest="size",
    ),
    margin=0.0,
)


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy):
    tasks: tuple[str, ...] = ("navigation", "highway")
    """Tasks to run (navigation, highway, locomotion, or a registered variant)."""
    navigation_types: tuple[str, ...] = ("goal_a", "goal_b")
    """User types of the navigation population, in equal shares (--population gives any other)."""
    highway_types: tuple[str, ...] = ("aggressive", "cautious")
    """User types of the highway population, in equal shares (--population gives any other)."""
    locomotion_types: tuple[str, ...] = ("forward", "backward")
    """User types of the locomotion population, in equal shares (--population gives any other)."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    methods: tuple[str, ...] = checked(METHODS, Choices(METHODS))
    """Reward models (linear_bayes reads the task's features: the known-features reference)."""
    kinds: tuple[str, ...] = checked(KINDS, Choices(KINDS))
    """Kinds of label noise to sweep."""
    epsilon_sizes: tuple[float, ...] = checked((0.1, 0.2, 0.3), SIZES["epsilon"])
    """Mistake probabilities ε, in (0, 0.5] (each answer flipped with probability ε)."""
    temperature_sizes: tuple[float, ...] = checked((1.0, 2.0, 4.0), SIZES["temperature"])
    """Boltzmann temperatures 1/β (> 0; the users' segment returns are sums of per-step
    features in [-1, 1] over data.segment_horizon steps)."""
    context_sizes: tuple[int, ...] = checked((2, 4, 8), Each(Int(ge=1), min_count=1))
    """Context pairs k each test user answers (their first k of data.context_size)."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(3, Int(ge=1))
    """Training seeds per model and noise point, trained in one vmap."""
    data: DatasetConfig = DatasetConfig(
        num_users=128, context_size=8, heldout_size=16, pool_size=1024, num_episodes=128
    )
    """Dataset sizes (users, K context and M held-out pairs per user, query pool, episodes)."""
    train: R.TrainConfig = R.TrainConfig(num_epochs=40, users_per_batch=16)
    """Reward-model training (the same for every noise point and seed)."""
    sizes: R.ModelSizes = R.ModelSizes()
    """Network sizes shared by the models (VPL's context_size is set to data.context_size)."""

    def sizes_of(self, kind: str) -> tuple[float, ...]:
        return getattr(self, f"{kind}_sizes")

    def validate(self):
        super().validate()
        Choices(harness.supported_tasks(type(self))).check("tasks", self.tasks)
        harness.check_type_fields(self)  # unknown or repeated user types, naming the field
        for kind in self.kinds:
            check_distinct(f"{kind}_sizes", self.sizes_of(kind), "noise size")
        check_distinct("context_sizes", self.context_sizes, "context size")
        if max(self.context_sizes) > self.data.context_size:
            raise harness.ConfigError(
                f"context_sizes={self.context_sizes}: each must be at most "
                f"data.context_size={self.data.context_size} (the context pairs a user has)"
            )
        harness.reward_models(self.sizes, self.methods, self.data.context_size, "data.context_size")
        for task in self.tasks:
            self.data.validate(harness.task_env(self, task), "data")
            harness.task_population(self, task)
        return self


def check_distinct(name: str, values: tuple, what: str) -> None:
    """A repeated value would write two rows for one cell of the results."""
    if len(set(values)) != len(values):
        raise harness.ConfigError(f"{name}={values}: a {what} must not repeat")


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        epsilon_sizes=(0.05, 0.1, 0.2, 0.3, 0.4),
        temperature_sizes=(0.5, 1.0, 2.0, 4.0, 8.0),
        context_sizes=(2, 4, 8, 16),
        num_seeds=8,
        data=DatasetConfig(
            num_users=512, context_size=16, heldout_size=64, pool_size=16384, num_episodes=2048
        ),
        train=R.TrainConfig(num_epochs=200, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16),
    ),
}


# --- the noise --------------------------------------------------------------------------------
def noisy(users: User, point: SweepPoint) -> User:
    """Rational ``users`` with ``point``'s noise in their answers."""
    return deviating(users.rational(), DEVIATION.get(point.kind, point.kind), point.size)


def labellings(
    key, dataset: PreferenceDataset, points: list[SweepPoint]
) -> list[PreferenceDataset]:
    """The dataset answered again at each point, with the same ``key`` (common random numbers)."""
    return [relabel(key, dataset, noisy(dataset.users, p)) for p in points]


# --- fitting and scoring ----------------------------------------------------------------------
def rational_accuracy(
    model, config: Config, key, datasets: list[PreferenceDataset]
) -> dict[int, np.ndarray]:
    """``{k: f32[S, P, U]}``: the model trained with S seeds on each of the P labellings (one
    jit), and each test user's accuracy on their rational held-out answers (the first
    labelling's) given their first k context answers as labelled at that point."""
    keys = jax.random.split(key, config.num_seeds)
    params = fit_labellings(model, config.train, keys, datasets)
    rational = datasets[0].split()[1]
    return {
        k: np.asarray(
            score_labellings(model, params, datasets, rational, context_size=k, seeds=True)[0]
        )
        for k in config.context_sizes
    }


# --- figure -----------------------------------------------------------------------------------
def plot_noise(curves: dict, config: Config) -> plt.Figure:
    """A panel per task and k (columns) and kind of noise (rows): the test users' accuracy on
    their rational answers against the noise size, a line per method with 95 % intervals over
    seeds. ``curves[task][method][k]``: ``f32[S, P]`` over the sweep's points."""
    points = sweep_points(config.kinds, config.sizes_of)
    columns = [(task, k) for task in curves for k in config.context_sizes]
    rows = config.kinds
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        figsize=(2.8 * len(columns), 2.6 * len(rows)),
        sharey="row",
        squeeze=False,
    )
    for i, kind in enumerate(rows):
        index = [0] + [n for n, p in enumerate(points) if p.kind == kind]
        x = [points[n].size for n in index]
        for j, (task, k) in enumerate(columns):
            ax = axes[i, j]
            for method in config.methods:
                style = "--" if method == "linear_bayes" else "-"
                values = curves[task][method][k][:, index]
                errorbars(ax, x, values, method, ls=style, marker="o", ms=3)
            ax.set_title(f"{task}, k = {k}", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel(UNITS[kind])
            if j == 0:
                ax.set_ylabel(f"rational accuracy ({kind})")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- the experiment ---------------------------------------------------------------------------
def main(config: Config, results: harness.RunResults) -> str:
    points = sweep_points(config.kinds, config.sizes_of)
    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    key = jax.random.PRNGKey(config.seed)
    curves: dict = {}

    def kinds(point: SweepPoint) -> tuple[str, ...]:
        return config.kinds if point.kind == "none" else (point.kind,)  # under each kind

    def add(point: SweepPoint, **row):
        for kind in kinds(point):
            results.add(**row, noise=kind, size=point.size)

    for task in config.tasks:
        key, k_data, k_label, k_models = jax.random.split(key, 4)
        start = time.time()
        dataset = harness.task_dataset(config, task, k_data)
        datasets = labellings(k_label, dataset, points)
        _, test = datasets[0].split()
        type_id, type_names = np.asarray(test.users.type_id), dataset.meta.type_names
        for p, d in zip(points, datasets, strict=True):
            agree = [np.asarray(getattr(d, part).labels == getattr(datasets[0], part).labels)
                     for part in ("context", "heldout")]  # fmt: skip
            value = np.concatenate(agree, axis=1).mean()
            add(p, method="users", task=task, metric="label_agreement", value=value)
        print(f"[{task}] dataset and {len(points)} labellings ({time.time() - start:.0f} s)")
        curves[task] = {}
        for method, k_method in zip(
            config.methods, jax.random.split(k_models, len(config.methods)), strict=True
        ):
            start = time.time()
            model = R.make_model(method, sizes)
            accuracy = rational_accuracy(model, config, k_method, datasets)
            curves[task][method] = {k: np.nanmean(a, axis=-1) for k, a in accuracy.items()}
            for k, a in accuracy.items():  # [S, P, U]: per type, seed and noise point
                columns = [(n, {"n_queries": k, "noise": kind, "size": p.size})
                           for n, p in enumerate(points) for kind in kinds(p)]  # fmt: skip
                results.add_type_rows(a, type_id, type_names, columns, method=method, task=task,
                                      metric=METRIC)  # fmt: skip
            big = max(config.context_sizes)
            mean = curves[task][method][big].mean(axis=0)
            print(f"[{task}] {method:12s} k={big}: {mean[0]:.3f} at no noise, "
                  f"{mean.min():.3f} at worst ({time.time() - start:.0f} s)")  # fmt: skip
    results.figure(plot_noise(curves, config), "label_noise")
    return notes(curves, config, results.rows)


def notes(curves: dict, config: Config, rows: list[dict]) -> str:
    """Markdown: VPL − BTL (paired seeds) at no noise and at each kind's largest size, each
    method's loss of accuracy from no noise to the largest, and the :data:`GRACEFUL` verdict."""
    if not {"vpl", "btl"} <= set(config.methods):
        return ""
    points = sweep_points(config.kinds, config.sizes_of)

    def cell(values) -> str:
        i = seed_interval(values)
        return f"{i.estimate:+.3f} [{i.low:+.3f}, {i.high:+.3f}]"

    lines = [
        "## Does VPL degrade gracefully?",
        "",
        "All test users' accuracy on their rational held-out answers given their first k noisy "
        "context answers; mean [95 % interval] over seeds (VPL − BTL pairs seed s of each).",
        "",
        "| task | k | noise (largest) | VPL − BTL, no noise | VPL − BTL, largest | "
        "VPL: largest − none | BTL: largest − none |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, methods in curves.items():
        for k in config.context_sizes:
            vpl, btl = methods["vpl"][k], methods["btl"][k]
            for kind in config.kinds:
                big = points.index(SweepPoint(kind, max(config.sizes_of(kind))))
                lines.append(
                    f"| {task} | {k} | {kind} ({points[big].size:g}) | "
                    f"{cell(vpl[:, 0] - btl[:, 0])} | {cell(vpl[:, big] - btl[:, big])} | "
                    f"{cell(vpl[:, big] - vpl[:, 0])} | {cell(btl[:, big] - btl[:, 0])} |"
                )
    judged = claims.check(GRACEFUL, rows)
    lines += ["", claims.claims_markdown([judged], config.run_name)]
    return "\n".join(lines)


if __name__ == "__main__":
    harness.run_experiment("label_noise", Config, PRESETS, main, description=__doc__)
