"""Underspecification, end to end: from physics to per-user behaviour.

    python experiments/underspecification.py --preset cpu --run-name RUN

Users of two types want opposite things (navigation: opposite goals; highway: aggressive vs
cautious driving). From their preference labels we learn a reward and train a policy on it:

* ``btl`` — one Bradley–Terry reward r(s) for everyone; an unconditioned policy;
* ``vpl`` — VPL's latent-conditioned reward r(s, z); a policy pi(a | s, z), trained with z drawn
  from the training users' posteriors;
* ``vpl_spo`` — the same with the reward scaled to an expected win probability against reference
  states, r~(s, z) = E_{s'}[sigmoid(r(s, z) - r(s', z))], so every user's reward has one scale;
* ``oracle`` — pi(a | s, theta) trained on the true reward theta · phi.

Each *test* user then tells the model about themselves with K labelled pairs; VPL's policy acts
on their posterior mean, the oracle on their true theta. Every policy is scored with the user's
true return and the task's success measure (navigation: reached the user's goal). Writes tidy rows
(``success``, ``true_return`` per method and user type, the reward models' ``heldout_accuracy`` per
user type and, for latent models, ``latent_recovery``, ``latent_spread`` and ``latent_nearest``:
:func:`vpl_jax.rewards.latent_separation`), bar charts, a top-down picture of the test users' paths,
an animation of a few test users' rollouts by method (``<task>_rollouts.html``, self-contained: it
draws offline), and each task's dataset, trained reward models and policies (seed 0, which
``python -m vpl_jax.label --run RUN_FOLDER`` serves; seed s >= 1 in each folder's ``seed_<s>``).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import harness, pipeline, render
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.atomic import atomic_write
from vpl_jax.checks import Choice, Choices, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset, build_dataset
from vpl_jax.plotting import bars, draw_arena, plot_paths, plt

METHODS = ("btl", "vpl", "vpl_spo", "oracle")


@dataclasses.dataclass(frozen=True)
class Config(harness.PopulationStudy, harness.ChunkedPolicies):
    tasks: tuple[str, ...] = ("navigation",)
    """Tasks to run: navigation (opposite goals), highway (aggressive vs cautious)."""
    navigation_types: tuple[str, ...] = ("goal_a", "goal_b")
    """User types of the navigation population, in equal shares (--population gives any other)."""
    highway_types: tuple[str, ...] = ("aggressive", "cautious")
    """User types of the highway population, in equal shares (--population gives any other)."""
    num_goals: int = checked(2, Int(ge=2, le=6))
    """Goals of the navigation arena."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    shipped types are rational, inf)."""
    methods: tuple[str, ...] = checked(METHODS, Choices(METHODS))
    """Methods to compare."""
    SEED_FIELDS = ("num_seeds",)  # not a field: --devices splits the seeds
    num_seeds: int = checked(1, Int(ge=1))
    """Independent seeds (reward model + policy), trained in one vmap."""
    data: DatasetConfig = DatasetConfig(
        num_users=128, context_size=8, heldout_size=56, pool_size=4096, num_episodes=512
    )
    """Preference data (users, K context and M held-out pairs per user, pool, episodes)."""
    reward_train: R.TrainConfig = R.TrainConfig(num_epochs=300, users_per_batch=16)
    """Reward-model training."""
    sizes: R.ModelSizes = R.ModelSizes()
    """Reward-network sizes (VPL's context size is set to data.context_size)."""
    ppo: P.PPOConfig = P.PPOConfig()
    """PPO (the same for every method; whether rewards are centred is set per task by
    center_reward_tasks)."""
    center_reward_tasks: tuple[str, ...] = ("navigation", "highway")
    """Tasks whose PPO rewards are centred by their running mean. Safe because every task's
    episodes have a fixed length (failures are absorbing states, never early ends), so a
    constant shift changes no ranking of policies; needed for VPL-SPO's win probabilities
    (about 0.5 plus a small signal)."""
    num_reference_states: int = checked(256, Int(ge=1))
    """Steps of the data that per-user reward scaling (VPL-SPO's win probability, and
    reward_scaling) compares each user's rewards against."""
    reward_scaling: str = checked(pipeline.DEFAULT_REWARD_SCALING, Choice(pipeline.REWARD_SCALING))
    """Per-user scaling of the oracle's and VPL's PPO rewards against the reference steps:
    standardize (each user's reward mean 0, std 1 there), minmax, win_probability or none
    (VPL-SPO always uses win_probability; BTL is never scaled). See the README's policy
    section for why."""
    user_sampling: str = checked(pipeline.DEFAULT_USER_SAMPLING, Choice(P.USER_SAMPLING))
    """How a PPO training episode picks its user (oracle, vpl, vpl_spo): balanced (weighted
    inversely to the density of their theta or posterior mean, so every type gets about as
    many episodes as the majority; see the README's policy section) or uniform."""
    num_eval_episodes: int = checked(64, Int(ge=1))
    """Evaluation episodes per test user (deterministic policy; every user and method sees
    the same starts). With 16, on highway, which starts were drawn moved every method's true
    return by 2-5 together and once ranked an untrained policy above trained ones."""
    reward_chunk_epochs: int = checked(20, Int(ge=1))
    """Reward-model epochs per jitted chunk (the progress bar advances between chunks)."""
    reward_checkpoint_every: int = checked(0, Int(ge=0))
    """Save reward-model checkpoints every this many epochs (0: none); a multiple of
    reward_chunk_epochs."""
    render_episodes: int = checked(2, Int(ge=0))
    """Test users whose rollouts under every method are animated in ``<task>_rollouts.html``
    (self-contained: it draws offline; 0: none)."""

    def validate(self):
        super().validate()
        tasks = harness.supported_tasks(type(self))
        Choices(tasks).check("tasks", self.tasks)
        harness.check_type_fields(self)  # unknown or repeated user types, naming the field
        Choices(tasks, min_count=0).check("center_reward_tasks", self.center_reward_tasks)
        if self.ppo.center_rewards:
            raise harness.ConfigError(
                "ppo.center_rewards: set per task by center_reward_tasks (now "
                f"{list(self.center_reward_tasks)}); use --center-reward-tasks TASK ... instead"
            )
        harness.check_checkpoint_every(self, "reward_checkpoint_every", "reward_chunk_epochs")
        harness.reward_models(
            self.sizes, reward_methods(self.methods), self.data.context_size, "data.context_size"
        )
        for task in self.tasks:
            self.data.validate(harness.task_env(self, task), "data")
            pipeline.check_policy_config(self.ppo, harness.task_env(self, task))
            harness.task_population(self, task)
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        tasks=("navigation", "highway"),
        num_seeds=5,
        data=DatasetConfig(
            num_users=512, context_size=16, heldout_size=64, pool_size=16384, num_episodes=4096
        ),
        reward_train=R.TrainConfig(num_epochs=200, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16),
        ppo=P.PPOConfig(total_timesteps=50_000_000, num_envs=4096, num_minibatches=32),
        chunk_updates=10,
    ),
}


def reward_methods(methods) -> list[str]:
    """The reward models ``methods`` need (each policy method's registered reward)."""
    needed = {pipeline.POLICY_METHODS[m].reward for m in methods}
    return sorted(needed - {None})


# --- rewards --------------------------------------------------------------------------------------
def train_rewards(
    config: Config, dataset: PreferenceDataset, key: jax.Array, results, task: str
) -> dict:
    """BTL and VPL trained on the training users (S seeds vmapped); VPL posteriors of every user."""
    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    keys = jax.random.split(key, config.num_seeds)
    out = {}
    for method in reward_methods(config.methods):
        model = R.make_model(method, sizes)
        start = time.time()
        fit = pipeline.chunked_fit(
            results.checkpointer(f"{task}_reward_{method}", config.reward_checkpoint_every),
            config.reward_chunk_epochs,
            f"{task} {method} reward",
        )
        reward = pipeline.fit_reward(model, config.reward_train, keys, dataset, fit=fit)
        params, evaluation = reward.params, reward.evaluation
        results.log_reward_history(f"{task}/{method}/reward", reward.history)
        out[method] = {"model": model, "params": params, "evaluation": evaluation}
        acc = np.asarray(evaluation.type_accuracy).mean(0)
        print(
            f"  reward {method}: held-out accuracy per type {np.round(acc, 3)} "
            f"({time.time() - start:.0f} s)"
        )
    return out


# --- policies -------------------------------------------------------------------------------------
def per_seed(method: str, config: Config, rewards: dict, fn):
    """``fn(model, params)`` for every seed (leading axis S): vmapped over the reward's seeds,
    broadcast for the oracle (no learned reward)."""
    reward_method = pipeline.POLICY_METHODS[method].reward
    if reward_method is None:  # the oracle
        out = fn(None, None)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (config.num_seeds, *x.shape)), out)
    reward = rewards[reward_method]
    return jax.vmap(lambda params: fn(reward["model"], params))(reward["params"])


def policy_inputs(method: str, config: Config, rewards: dict, dataset, key) -> dict:
    """What the training environment of ``method`` needs, per seed (leading axis S): the
    reward's params and, for latent models, the training users' posteriors z is drawn from
    (:func:`vpl_jax.pipeline.policy_inputs`), and the reference steps of per-user scaling."""
    reward_method = pipeline.POLICY_METHODS[method].reward
    model = None if reward_method is None else rewards[reward_method]["model"]
    references = pipeline.reference_states(model, dataset, key, config.num_reference_states)
    return per_seed(
        method,
        config,
        rewards,
        lambda model, params: pipeline.policy_inputs(
            method, model, params, dataset, references, config.user_sampling
        ),
    )


def train_policy(config: Config, env, method: str, model, inputs: dict, key, results, task):
    """PPO for every seed at once (vmap), in jitted chunks with a progress bar and checkpoints.

    Returns ``(trainer, runner_states)``; the states lead with the seed axis.
    """
    ppo_config = dataclasses.replace(config.ppo, center_rewards=task in config.center_reward_tasks)
    trainer = pipeline.PolicyTrainer(
        env, method, model, ppo_config, config.chunk_updates, config.reward_scaling
    )
    states, history = trainer.train(
        jax.random.split(key, config.num_seeds),
        inputs,
        desc=f"{task} {method} PPO",
        checkpointer=results.checkpointer(f"{task}_{method}", config.checkpoint_every),
    )
    results.log_ppo_history(f"{task}/{method}/ppo", history, ppo_config.env_steps_per_update)
    return trainer, states


def evaluate_policy(config: Config, trainer, states, z, theta, key) -> P.Evaluation:
    """Per-user evaluation for every seed: fields lead with [S, U, ...]."""
    return jax.vmap(
        lambda state, z_s: trainer.evaluate(state, z_s, theta, key, config.num_eval_episodes)
    )(states, z)


# --- figures --------------------------------------------------------------------------------------
def plot_bars(task: str, type_names, evaluations: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    methods = list(evaluations)
    x = np.arange(len(methods))
    width = 0.8 / len(type_names)
    for ax, field, label in (
        (axes[0], "success", "success rate"),
        (axes[1], "true_return", "true return"),
    ):
        for t, name in enumerate(type_names):
            values = np.array([evaluations[m][field][:, t] for m in methods])  # [method, S]
            bars(ax, x + (t - (len(type_names) - 1) / 2) * width, values, width, name, axis=1)
        ax.set_xticks(x, methods)
        ax.set_ylabel(label + " (test users)")
        ax.set_title(f"{task}: {label}")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(title="user type", fontsize=8)
    fig.tight_layout()
    return fig


def plot_paths_by_method(env, type_names, type_id, evaluations: dict) -> plt.Figure:
    methods = list(evaluations)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.3 * len(methods), 3.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(np.atleast_1d(axes), methods, strict=True):
        draw_arena(ax, env)
        positions = np.asarray(evaluations[method]["positions"])  # [U, E, T, 2] (seed 0)
        for t, name in enumerate(type_names):
            users = np.flatnonzero(np.asarray(type_id) == t)
            paths = positions[users, :4].reshape(-1, *positions.shape[2:])
            plot_paths(ax, paths, [colors[t]] * len(paths))
            ax.plot([], [], color=colors[t], label=name)
        ax.set_title(method)
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower left", title="user type")
    fig.tight_layout()
    return fig


def render_html(
    task: str, env, type_names, type_id, evaluations: dict, path, num_users: int
) -> None:
    """Writes a self-contained animation (:mod:`vpl_jax.render`: it draws offline) of
    ``num_users`` test users' first evaluation episode under every method (seed 0), the users
    taken in turn from each type."""
    type_id = np.asarray(type_id)
    by_type = [list(np.flatnonzero(type_id == t)) for t in range(len(type_names))]
    users = []
    while len(users) < num_users and any(by_type):
        users += [queue.pop(0) for queue in by_type if queue][: num_users - len(users)]
    methods = list(evaluations)
    paths = [[render.path_view(evaluations[m]["positions"][u, 0]) for m in methods] for u in users]
    rows = [f"test user {u} ({type_names[type_id[u]]})" for u in users]
    page = render.rollouts_html(
        render.scene(task, env.feature_names, env),
        paths,
        rows,
        methods,
        title=f"{task}: test users' rollouts by method",
        note="Each policy serves the user of its row (VPL: conditioned on their posterior mean "
        "z; the oracle: on their true theta); seed 0, first evaluation episode.",
    )
    with atomic_write(path) as f:
        f.write(page)


# --- the experiment -------------------------------------------------------------------------------
def run_task(config: Config, task: str, key: jax.Array, results: harness.RunResults) -> list[str]:
    env = harness.task_env(config, task)
    pop = harness.task_population(config, task)
    k_data, k_rewards, k_refs, k_policies, k_eval = jax.random.split(key, 5)
    dataset = build_dataset(k_data, env, pop, config.data, task=task)
    results.save_dataset(dataset, task)  # with the models: what `python -m vpl_jax.label` serves
    _, test = dataset.split()
    print(f"[{task}] rewards")
    rewards = train_rewards(config, dataset, k_rewards, results, task)
    for method, reward in rewards.items():
        results.save_reward_model(task, method, reward["model"], reward["params"])
        accuracy = np.asarray(reward["evaluation"].type_accuracy)  # [S, T]
        for s in range(config.num_seeds):
            for t, name in enumerate(pop.type_names):
                results.add(
                    method=method,
                    task=task,
                    user_type=name,
                    metric="heldout_accuracy",
                    value=accuracy[s, t],
                    seed=config.seed + s,
                )
        if R.is_latent(reward["model"]):  # where each type's test users sit in the latent space
            context = R.user_pairs(test, "context", reward["model"].inputs)
            separation = R.latent_separation(reward["model"], reward["params"], context, seeds=True)
            results.add_separation_rows(
                separation, pop.type_names, first_seed=config.seed, method=method, task=task
            )
    evaluations, lines = {}, []
    for method, k in zip(
        config.methods, jax.random.split(k_policies, len(config.methods)), strict=True
    ):
        start = time.time()
        model = rewards.get(pipeline.POLICY_METHODS[method].reward, {}).get("model")
        inputs = policy_inputs(method, config, rewards, dataset, k_refs)
        trainer, states = train_policy(config, env, method, model, inputs, k, results, task)
        results.save_policy(task, method, trainer.acting(), states)  # what vpl_jax.label rolls out
        z = per_seed(  # f32[S, U, Z]: what each test user's policy is conditioned on
            method,
            config,
            rewards,
            functools.partial(pipeline.test_latents, method, dataset=dataset),
        )
        ev = evaluate_policy(config, trainer, states, z, test.users.theta, k_eval)
        type_id = np.asarray(test.users.type_id)
        per_type = {
            field: np.stack(
                [
                    np.asarray(getattr(ev, field))[:, type_id == t].mean(1)
                    for t in range(pop.num_types)
                ],
                axis=1,
            )
            for field in ("success", "true_return")
        }  # [S, T]
        per_type["positions"] = np.asarray(ev.positions[0])
        evaluations[method] = per_type
        for field in ("success", "true_return"):  # a row per seed and type, seeds config.seed + s
            results.add_type_rows(np.asarray(getattr(ev, field))[:, None], type_id, pop.type_names,
                                  [(0, {})], overall=False, first_seed=config.seed,
                                  method=method, task=task, metric=field)  # fmt: skip
        summary = ", ".join(
            f"{name} success {per_type['success'][:, t].mean():.2f} "
            f"return {per_type['true_return'][:, t].mean():.1f}"
            for t, name in enumerate(pop.type_names)
        )
        print(f"[{task}] {method:8s} {summary}  ({time.time() - start:.0f} s)")
        per_user = np.asarray(ev.success)  # [S, U]
        failing = [(s, u) for s, u in zip(*np.nonzero(per_user < 0.5), strict=True)]
        if failing:
            print(
                f"    {len(failing)} of {per_user.size} (seed, test user) pairs reach their goal "
                f"in under half the episodes: "
                + ", ".join(f"s{s}/u{u} ({pop.type_names[type_id[u]]})" for s, u in failing[:8])
            )
        lines.append(f"| {task} | {method} | {summary} |")
    results.figure(plot_bars(task, pop.type_names, evaluations), f"{task}_per_type")
    if config.render_episodes and results.writes:
        render_html(
            task,
            env,
            pop.type_names,
            test.users.type_id,
            evaluations,
            results.path / f"{task}_rollouts.html",
            min(config.render_episodes, test.num_users),
        )
    if task == "navigation":
        fig = plot_paths_by_method(env, pop.type_names, test.users.type_id, evaluations)
        results.figure(fig, f"{task}_paths")
    return lines


def main(config: Config, results: harness.RunResults) -> str:
    lines = []
    for task, key in zip(
        config.tasks,
        jax.random.split(jax.random.PRNGKey(config.seed), len(config.tasks)),
        strict=True,
    ):
        lines += run_task(config, task, key, results)
    return "\n".join(
        [
            "## Test users, mean over seeds",
            "",
            "| task | method | per user type |",
            "|---|---|---|",
            *lines,
        ]
    )


if __name__ == "__main__":
    harness.run_experiment("underspecification", Config, PRESETS, main, description=__doc__)
