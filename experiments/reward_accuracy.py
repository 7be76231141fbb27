"""Held-out preference accuracy of every reward model, per user type (the underspecification
of a single reward, seen in the data).

    python experiments/reward_accuracy.py --preset cpu --run-name RUN

For each task (highway: aggressive vs cautious drivers, the cpu preset's; navigation: users
wanting opposite goals; locomotion) it builds a preference dataset, trains the reward models
(``methods``; ``num_seeds`` seeds in one ``vmap``) on the training users, and scores the *test*
users' held-out pairs given their K context pairs. Writes tidy rows (``heldout_accuracy``,
``heldout_log_likelihood`` per method and user type; ``context_curve_accuracy`` for VPL with
``n_queries`` = k; ``theta_alignment`` for LinearBayes; ``latent_recovery``, ``latent_spread``
and ``latent_nearest`` for the latent models, :func:`vpl_jax.rewards.latent_separation` per seed)
and three figures: accuracy per user type, VPL accuracy versus k, and the VPL latent space of the
test users coloured by type. ``summary.md`` also says how often the types' rational labels
disagree on the query pool (:func:`vpl_jax.users.type_disagreement`) and how far apart each latent
model puts them: a minority that its labels rarely tell from a larger type, and whose users sit
at that type's centre, gets that type's reward. Each
task's dataset and trained reward models (seed 0, which ``python -m vpl_jax.label --run
RUN_FOLDER`` serves; seed s >= 1 in each model folder's ``seed_<s>``) are saved too.

``--dataset PATH ...`` replaces the built dataset of each file's task by the file (a
``save_dataset`` ``.npz``, e.g. simulated users merged with real people's answers by
``vpl_jax.label.merge_people``, who are then scored as the type ``human``)::

    python experiments/reward_accuracy.py --tasks navigation --dataset merged.npz
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from vpl_jax import harness, pipeline, users
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset
from vpl_jax.plotting import bars, plt


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy):
    tasks: tuple[str, ...] = ("highway",)
    """Tasks to run (navigation, highway, locomotion). The cpu preset runs the driving task
    alone, to stay within 10 minutes on 2 cores; the paper preset runs all three."""
    navigation_types: tuple[str, ...] = ("goal_a", "goal_b")
    """User types of the navigation population, in equal shares (--population gives any other)."""
    highway_types: tuple[str, ...] = ("aggressive", "cautious")
    """User types of the highway population, in equal shares (--population gives any other)."""
    locomotion_types: tuple[str, ...] = ("forward", "backward")
    """User types of the locomotion population, in equal shares (--population gives any other)."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena (goal_c needs 3, goal_d 4)."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    shipped types are rational, inf)."""
    methods: tuple[str, ...] = checked(("btl", "linear_bayes", "vpl"), Choices(R.REWARD_METHODS))
    """Reward models to train (any of btl, btl_ensemble, dpl_meanvar, dpl_categorical,
    linear_bayes, vpl). The cpu preset trains one reward for all (btl), the known-features
    reference (linear_bayes) and VPL; the paper preset every model."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(3, Int(ge=1))
    """Training seeds per model, trained in one vmap."""
    data: DatasetConfig = DatasetConfig(
        num_users=480, context_size=8, heldout_size=64, pool_size=2048, num_episodes=256
    )
    """Dataset sizes (users, K context and M held-out pairs per user, query pool, episodes)."""
    train: R.TrainConfig = R.TrainConfig(num_epochs=200, users_per_batch=16)
    """Reward-model training (VPL's validation loss flattens after about 150 epochs here)."""
    sizes: R.ModelSizes = R.ModelSizes()
    """Network sizes shared by the models (VPL's context_size is set to data.context_size)."""
    validation_fraction: float = checked(0.2, Float(ge=1e-6, le=1 - 1e-6))
    """Share of each type's training users held out for early stopping."""
    reward_checkpoint_every: int = checked(0, Int(ge=0))
    """Save reward-model checkpoints every this many epochs (0: none); a multiple of
    reward_chunk_epochs. Re-running the same command resumes from the last checkpoint."""
    reward_chunk_epochs: int = checked(20, Int(ge=1))
    """With checkpoints, reward-model epochs per jitted chunk (the progress bar advances
    between chunks; the numbers equal one call's up to float rounding)."""
    dataset: tuple[str, ...] = ()
    """Dataset files (.npz, save_dataset or vpl_jax.label.merge_people), each used instead of
    building the dataset of the task it holds (one of tasks; with data.context_size context
    pairs per user)."""

    def validate(self):
        super().validate()
        Choices(harness.supported_tasks(type(self))).check("tasks", self.tasks)
        harness.check_type_fields(self)  # unknown or repeated user types, naming the field
        harness.check_checkpoint_every(self, "reward_checkpoint_every", "reward_chunk_epochs")
        harness.reward_models(self.sizes, self.methods, self.data.context_size, "data.context_size")
        for task in self.tasks:
            self.data.validate(harness.task_env(self, task), "data")
            harness.task_population(self, task)
        harness.check_dataset_files(self)
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        tasks=("navigation", "highway", "locomotion"),
        methods=R.REWARD_METHODS,
        num_seeds=8,
        data=DatasetConfig(
            num_users=512, context_size=16, heldout_size=64, pool_size=16384, num_episodes=4096
        ),
        train=R.TrainConfig(num_epochs=200, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16),
    ),
}


def train_and_evaluate(
    config: Config,
    task: str,
    dataset: PreferenceDataset,
    method: str,
    key: jax.Array,
    results: harness.RunResults,
) -> dict:
    """Trains ``method`` on the training users (S seeds vmapped; checkpointed in the run folder
    every ``reward_checkpoint_every`` epochs, resumed from there); scores the test users."""
    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    model = R.make_model(method, sizes)
    _, test = dataset.split()
    pairs = lambda ds, part: R.user_pairs(ds, part, model.inputs)  # noqa: E731
    keys = jax.random.split(key, config.num_seeds)
    start = time.time()
    fit = R.fit
    if config.reward_checkpoint_every:  # else one call: the numbers of runs before checkpoints
        fit = pipeline.chunked_fit(
            results.checkpointer(f"{task}_reward_{method}", config.reward_checkpoint_every),
            config.reward_chunk_epochs,
            f"{task} {method} reward",
        )
    reward = pipeline.fit_reward(
        model, config.train, keys, dataset, config.validation_fraction, fit=fit
    )
    params, evaluation = reward.params, jax.block_until_ready(reward.evaluation)
    context, heldout = pairs(test, "context"), pairs(test, "heldout")
    out = {"model": model, "params": params, "evaluation": evaluation, "history": reward.history}
    if method == "vpl":
        first = jax.tree.map(lambda x: x[0], params)
        out["curve"] = R.context_size_curve(model, first, context, heldout)
        out["projection"] = R.latent_projection(model, first, context)
    if R.is_latent(model):  # where each type's users sit in the latent space, per seed
        out["separation"] = R.latent_separation(model, params, context, seeds=True)
    if method == "linear_bayes":
        out["alignment"] = jax.vmap(
            lambda p: R.theta_alignment(model, p, context, test.users.theta)
        )(params)
        out["alignment_known"] = np.any(np.asarray(test.users.theta) != 0, axis=1)
    out["seconds"] = time.time() - start
    return out


def add_rows(results, task, type_names, method, out, type_id):
    ev = out["evaluation"]
    for s in range(ev.type_accuracy.shape[0]):
        for t, name in enumerate(type_names):
            for metric, values in (
                ("heldout_accuracy", ev.type_accuracy),
                ("heldout_log_likelihood", ev.type_log_likelihood),
            ):
                results.add(
                    method=method,
                    task=task,
                    user_type=name,
                    metric=metric,
                    value=values[s, t],
                    seed=s,
                )
            if "alignment" in out:
                # People merged in have no known theta (stored as zeros): they are left out.
                known = out["alignment_known"] & (np.asarray(type_id) == t)
                if known.any():
                    results.add(
                        method=method,
                        task=task,
                        user_type=name,
                        metric="theta_alignment",
                        value=np.asarray(out["alignment"][s])[known].mean(),
                        seed=s,
                    )
    if "separation" in out:
        results.add_separation_rows(out["separation"], type_names, method=method, task=task)
    if "curve" in out:
        for k in range(out["curve"].type_accuracy.shape[0]):
            for t, name in enumerate(type_names):
                results.add(
                    method=method,
                    task=task,
                    user_type=name,
                    metric="context_curve_accuracy",
                    value=out["curve"].type_accuracy[k, t],
                    n_queries=k,
                    seed=0,
                )


def plot_accuracy(per_task: dict, methods) -> plt.Figure:
    fig, axes = plt.subplots(1, len(per_task), figsize=(5.5 * len(per_task), 3.8), squeeze=False)
    for ax, (task, (type_names, outs)) in zip(axes[0], per_task.items(), strict=True):
        width = 0.8 / len(type_names)
        x = np.arange(len(methods))
        for t, name in enumerate(type_names):
            acc = np.array([np.asarray(outs[m]["evaluation"].type_accuracy[:, t]) for m in methods])
            bars(ax, x + (t - (len(type_names) - 1) / 2) * width, acc, width, name, axis=1)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x, methods, rotation=30, ha="right")
        ax.set_ylim(0.4, 1.0)
        ax.set_title(task)
        ax.set_ylabel("held-out accuracy (test users)")
        ax.legend(fontsize=8, title="user type")
    fig.tight_layout()
    return fig


def plot_context_curve(per_task: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, len(per_task), figsize=(5 * len(per_task), 3.5), squeeze=False)
    for ax, (task, (type_names, outs)) in zip(axes[0], per_task.items(), strict=True):
        curve = np.asarray(outs["vpl"]["curve"].type_accuracy)
        for t, name in enumerate(type_names):
            ax.plot(np.arange(curve.shape[0]), curve[:, t], marker="o", label=name)
        ax.set_xlabel("context pairs k")
        ax.set_ylabel("VPL held-out accuracy")
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_latents(per_task: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, len(per_task), figsize=(4.5 * len(per_task), 4), squeeze=False)
    for ax, (task, (type_names, outs)) in zip(axes[0], per_task.items(), strict=True):
        proj = outs["vpl"]["projection"]
        coords, type_id = np.asarray(proj.coords), np.asarray(proj.type_id)
        for t, name in enumerate(type_names):
            ax.scatter(*coords[type_id == t].T, s=18, label=name)
        ratio = np.asarray(proj.explained_variance_ratio)
        ax.set_xlabel(f"PC 1 ({ratio[0]:.0%})")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.0%})")
        ax.set_title(f"{task}: VPL posterior means")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def type_structure(task: str, dataset: PreferenceDataset, outs: dict) -> list[str]:
    """Summary lines: how often the types' mean weights disagree on the dataset's query pool
    (:func:`vpl_jax.users.type_disagreement`), and, per latent method, how far apart it puts
    them (:func:`vpl_jax.rewards.latent_separation`, means over seeds)."""
    names = dataset.meta.type_names
    theta, type_id = np.asarray(dataset.users.theta), np.asarray(dataset.users.type_id)
    known = np.any(theta != 0, axis=1)  # people merged in have no known theta
    present = [t for t in range(len(names)) if np.any(known & (type_id == t))]
    means = np.stack([theta[known & (type_id == t)].mean(0) for t in present])
    # The features the users label from (label_queries: unmasked; dead steps carry zeros).
    d = np.asarray(users.type_disagreement(means, dataset.segments.features, dataset.pool))
    header = " | ".join(names[t] for t in present)
    lines = [f"### {task}: how often the types' rational labels disagree on the query pool", "",
             f"| | {header} |", "|---" * (len(present) + 1) + "|"]  # fmt: skip
    for i, t in enumerate(present):
        lines.append(f"| {names[t]} | " + " | ".join(f"{v:.2f}" for v in d[i]) + " |")
    lines += ["", f"### {task}: latent separation of the test users' types (mean over seeds)",
              "", "| method | user type | nearest-centre recovery | spread | distance to the "
              "nearest other centre |", "|---|---|---|---|---|"]  # fmt: skip
    for method, out in outs.items():
        if "separation" not in out:
            continue
        sep = jax.tree.map(lambda x: np.nanmean(np.asarray(x), axis=0), out["separation"])
        for t, name in enumerate(names):
            if not np.isnan(sep.recovery[t]):
                lines.append(f"| {method} | {name} | {sep.recovery[t]:.2f} | {sep.spread[t]:.2f}"
                             f" | {sep.nearest[t]:.2f} |")  # fmt: skip
    return lines


def main(config: Config, results: harness.RunResults) -> str:
    key = jax.random.PRNGKey(config.seed)
    per_task = {}
    lines, structure = [], []
    for task in config.tasks:
        key, k_data, k_models = jax.random.split(key, 3)
        dataset = harness.task_dataset(config, task, k_data)  # built, or the --dataset file
        type_names = dataset.meta.type_names
        results.save_dataset(dataset, task)  # with the models: what vpl_jax.label serves
        _, test = dataset.split()
        outs = {}
        for method, k in zip(
            config.methods, jax.random.split(k_models, len(config.methods)), strict=True
        ):
            outs[method] = train_and_evaluate(config, task, dataset, method, k, results)
            results.log_reward_history(f"{task}/{method}/reward", outs[method]["history"])
            results.save_reward_model(task, method, outs[method]["model"], outs[method]["params"])
            add_rows(results, task, type_names, method, outs[method], test.users.type_id)
            acc = np.asarray(outs[method]["evaluation"].type_accuracy).mean(0)
            per_type = ", ".join(f"{n} {a:.3f}" for n, a in zip(type_names, acc, strict=True))
            print(f"[{task}] {method:16s} {per_type}  ({outs[method]['seconds']:.0f} s)")
            lines.append(f"| {task} | {method} | {per_type} |")
        per_task[task] = (type_names, outs)
        structure += ["", *type_structure(task, dataset, outs)]
    results.figure(plot_accuracy(per_task, config.methods), "heldout_accuracy")
    if "vpl" in config.methods:
        results.figure(plot_context_curve(per_task), "vpl_context_curve")
        results.figure(plot_latents(per_task), "vpl_latent_space")
    return "\n".join(
        [
            "## Held-out accuracy of test users, mean over seeds",
            "",
            "| task | method | accuracy per user type |",
            "|---|---|---|",
            *lines,
            *structure,
        ]
    )


if __name__ == "__main__":
    harness.run_experiment("reward_accuracy", Config, PRESETS, main, description=__doc__)
