"""Nash learning from preferences versus a single reward, on a population whose preferences cycle.

    python experiments/nash.py --preset cpu --run-name RUN

Navigation with three goals and three user types in equal shares, each ranking the goals in a
rotated order (``cycle_abc``: a > b > c, ``cycle_bca``, ``cycle_cab``; see
``vpl_jax/users/types.py``): a majority prefers a to b, b to c and c to a, so no goal is best and
the population's Nash equilibrium (its maximal lottery) is each goal a third of the time. From the
users' labels on pairs of whole recorded episodes (half of them heading for a random goal, half
broad behaviour; :func:`vpl_jax.envs.navigation.goal_data_policy`) every method learns a policy:

* ``btl`` — RLHF: a Bradley–Terry reward r(s), then KL-regularised PPO from the reference on
  it (:func:`vpl_jax.nash.make_rlhf`: the same lottery machinery and KL as Nash-MD, with the
  episode's return as its score). A reward orders the goals, so the cycle is lost (all goals tie
  in the best fit) and the policy settles on whatever its reward's noise says;
* ``vpl`` — VPL's latent reward r(s, z); for each test user, the KL-regularised optimum over the
  reference's modes under that user's reward (:func:`vpl_jax.nash.vpl_lotteries`). As a
  population policy it is the lottery of "give each user their own first choice";
* ``nash_md`` — a preference model P(τ ≻ τ′) (antisymmetric, can represent the cycle), then
  Nash-MD: mirror descent on the lottery's mode weights and PPO on each mode's win probability
  against opponents from the geometric mixture of the policy and the reference, with the KL to
  the reference (:func:`vpl_jax.nash.make_nash_md`);
* ``self_play`` — the same with the current policy as the opponent and no pull to the reference
  (it cycles);
* ``ipo``, ``dpo`` — offline, from the labelled pairs, on trajectory log-likelihood ratios
  against the reference (:func:`vpl_jax.nash.train_direct`).

Policies that mix (Nash-MD, self-play, IPO, DPO and their reference) are lotteries over K modes
(``vpl_jax/nash/policy.py`` says why): a per-episode noise input, one of K points on a circle,
drawn with learned weights, tells a shared network which plan to follow. Their common reference,
``reference`` in the results, is a behaviour clone of scripted demonstrations whose goal is set
by the noise: the arcs of ``reference_goals`` (default ``aaaabc``: goal a four times out of six),
an SFT policy that over-represents goal a, uniform over its modes (one at each arc's middle, or
several per arc; :func:`vpl_jax.nash.clone_reference`).

Every policy is scored with the users' *true* rewards on ``num_eval_episodes`` episodes from
starts shared by all methods: ``goal_share`` (the share of episodes ending at each goal, or
``none``; field ``goal``), ``exploitability`` (the best margin ``2 P(g ≻ π) - 1`` any scripted
single-goal policy g achieves against it under the true population preferences; episodes at the
same goal tie; 0 for the maximal lottery, 1/3 for any single goal here), ``margin`` (that margin
per goal g) and ``win_rate`` per user type (a type's probability of preferring the policy's
episode to a uniformly chosen single-goal one). Then the *transitive* control case: the same
types with one dominant (``transitive_shares``, default 0.8/0.1/0.1, where goal a is the
Condorcet winner), in which every method should go to goal a. Rows carry the case in ``case``.
Figures: goal shares and exploitability per method and case, and the training curves of Nash-MD
and self-play (``nash_training``).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from vpl_jax import envs, harness, pipeline
from vpl_jax import nash as N
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.checks import Choices, Each, Float, Int, checked
from vpl_jax.data import DatasetConfig, PreferenceDataset, build_dataset
from vpl_jax.envs.navigation import goal_data_policy
from vpl_jax.plotting import plt
from vpl_jax.users import Population

METHODS = ("btl", "vpl", "nash_md", "self_play", "ipo", "dpo")
CASES = ("cyclic", "transitive")
TYPES = ("cycle_abc", "cycle_bca", "cycle_cab")
GOALS = ("a", "b", "c")
NASH_METHODS = ("nash_md", "self_play")
DIRECT_METHODS = ("ipo", "dpo")
CURVES = ("win_probability", "kl", "max_mode_weight")


@dataclasses.dataclass(frozen=True)
class Config(harness.ChunkedPolicies):
    cases: tuple[str, ...] = checked(CASES, Choices(CASES))
    """Populations to run: cyclic (equal shares of the three types), transitive (one dominant)."""
    transitive_shares: tuple[float, float, float] = checked((0.8, 0.1, 0.1), Each(Float(ge=0)))
    """Shares of cycle_abc, cycle_bca, cycle_cab in the transitive case (goal a wins there)."""
    methods: tuple[str, ...] = checked(METHODS, Choices(METHODS))
    """Methods to compare."""
    beta: float | None = checked(None, Float(ge=0, finite=False, optional=True))
    """Boltzmann rationality of every simulated user (None: each user type's own; the
    shipped types are rational, inf)."""
    data: DatasetConfig = DatasetConfig(
        num_users=768,
        context_size=8,
        heldout_size=24,
        pool_size=16384,
        num_episodes=1024,
        segment_horizon=40,
    )
    """Preference data: users, K context and M held-out pairs each, over whole recorded episodes
    of :func:`vpl_jax.envs.navigation.goal_data_policy` (segment_horizon must equal the episode
    length, 40). Labels are cheap and a population model needs many: each pair is labelled by
    one user, and two thirds of the pairs split the types 2 to 1."""
    preference: N.PreferenceModel = N.PreferenceModel(hidden=(32, 32), embed_dim=16)
    """The preference model P(τ ≻ τ′) of nash_md and self_play (latent_dim must be 0)."""
    preference_train: R.TrainConfig = R.TrainConfig(
        num_epochs=100, users_per_batch=32, learning_rate=3e-3, patience=30
    )
    """Training of the preference model."""
    reward_train: R.TrainConfig = R.TrainConfig(num_epochs=40, users_per_batch=32, patience=15)
    """Training of BTL's and VPL's reward models."""
    sizes: R.ModelSizes = R.ModelSizes(inputs="obs")
    """Reward-network sizes (VPL's context size is set to data.context_size). The rewards read
    observations (inputs='obs'): RLHF's PPO and VPL's mode scores evaluate them on the states of
    rollouts, and the cycle types weigh only goal progress, a function of the state."""
    reference_goals: str = "aaaabc"
    """The reference (SFT) policy's lottery: the goal of each equal arc of the noise circle."""
    demo_episodes: int = checked(512, Int(ge=1))
    """Scripted demonstrations the reference is cloned from."""
    goal_episode_share: float = checked(0.5, Float(ge=0, le=1))
    """Share of the recorded episodes that head for a goal chosen uniformly (as SFT rollouts
    would, with action noise); the rest come from the task's broad behaviour policy. The goals'
    cycle shows only in comparisons of goal-reaching episodes, which broad data alone rarely
    makes (its learned cycle is then lopsided)."""
    demo_noise: float = checked(0.3, Float(ge=1e-3))
    """Standard deviation of the demonstrations' pre-squash action noise."""
    clone: N.CloneConfig = N.CloneConfig()
    """Behaviour cloning of the reference."""
    rlhf_return_std: float = checked(0.2, Float(ge=1e-6))
    """BTL's and VPL's rewards are scaled to returns of this spread (over the recorded episodes
    for BTL, over the reference's rollouts per user for VPL) before the KL-regularised step,
    which puts kl_coef on the footing of Nash-MD's win probabilities (goals differ by about 1/6
    in win probability)."""
    vpl_mode_rollouts: int = checked(32, Int(ge=2))
    """Reference rollouts per mode that VPL's per-user mode returns are estimated from."""
    nash_ppo: P.PPOConfig = P.PPOConfig(
        total_timesteps=200_000,
        num_envs=64,
        num_minibatches=4,
        learning_rate=1e-3,
        gamma=1.0,
        init_log_std=-0.5,
    )
    """PPO of nash_md, self_play and btl's RLHF (num_steps, episode_length, observation
    normalisation and truncation bootstrapping are set as Nash-MD needs; see
    vpl_jax.nash.nash_ppo_config)."""
    nash: N.NashConfig = N.NashConfig(mixture=0.06, kl_coef=0.02, num_modes=6, num_opponents=48)
    """Nash-MD: the mixture weight β of the reference in the opponent, the KL weight, opponents
    per update (self_play uses β = 0)."""
    direct: N.DirectConfig = N.DirectConfig()
    """Offline IPO/DPO (its loss field is set per method)."""
    num_eval_episodes: int = checked(600, Int(ge=1))
    """Evaluation episodes per method (shared starts; stochastic actions)."""
    chunk_updates: int = checked(10, Int(ge=1))
    """PPO updates per jitted chunk (the progress bar advances between chunks)."""

    def validate(self):
        super().validate()
        if len(self.transitive_shares) != 3 or not sum(self.transitive_shares) > 0:
            raise harness.ConfigError(
                f"transitive_shares={self.transitive_shares}: give three finite shares >= 0, "
                "not all 0"
            )
        if not self.reference_goals or set(self.reference_goals) - set(GOALS):
            raise harness.ConfigError(
                f"reference_goals={self.reference_goals!r}: a non-empty string of goals {GOALS}"
            )
        env = task_env()
        self.data.validate(env, "data")
        if self.data.segment_horizon != env.episode_length:
            raise harness.ConfigError(
                f"data.segment_horizon={self.data.segment_horizon}: must equal the episode "
                f"length {env.episode_length} (preferences are over whole episodes)"
            )
        if self.preference.latent_dim != 0 or self.preference.inputs != "obs":
            raise harness.ConfigError(
                "preference: Nash-MD needs the population model (latent_dim=0, inputs='obs')"
            )
        if self.sizes.inputs != "obs":
            raise harness.ConfigError(
                f"sizes.inputs={self.sizes.inputs!r}: the Nash study scores rollouts' states, "
                "so its rewards read 'obs'"
            )
        harness.reward_models(
            self.sizes, reward_methods(self.methods), self.data.context_size, "data.context_size"
        )
        self.nash.validate("nash")
        for name, k in (("nash.num_modes", self.nash.num_modes),
                        ("direct.num_modes", self.direct.num_modes)):  # fmt: skip
            if k % len(self.reference_goals):
                raise harness.ConfigError(
                    f"{name}={k}: must be a multiple of len(reference_goals)="
                    f"{len(self.reference_goals)} (every mode inside one of the reference's arcs)"
                )
        N.check_ppo_config(nash_ppo(self), env.episode_length)
        for case in self.cases:
            population(self, case)
        return self


PRESETS = {
    "cpu": Config(),
    "paper": Config(
        data=DatasetConfig(
            num_users=768,
            context_size=16,
            heldout_size=48,
            pool_size=65536,
            num_episodes=8192,
            segment_horizon=40,
        ),
        preference=N.PreferenceModel(hidden=(256, 256), embed_dim=64),
        preference_train=R.TrainConfig(num_epochs=300, users_per_batch=64, patience=40),
        reward_train=R.TrainConfig(num_epochs=300, users_per_batch=64, patience=40),
        sizes=R.ModelSizes(hidden=(256, 256), latent_dim=16, inputs="obs"),
        demo_episodes=4096,
        vpl_mode_rollouts=256,
        nash_ppo=P.PPOConfig(
            total_timesteps=10_000_000,
            num_envs=1024,
            num_minibatches=16,
            learning_rate=3e-4,
            gamma=1.0,
            init_log_std=-0.5,
        ),
        nash=N.NashConfig(mixture=0.06, kl_coef=0.02, num_modes=12, num_opponents=240),
        direct=N.DirectConfig(num_steps=3000, pairs_per_batch=256, num_modes=12),
        num_eval_episodes=4096,
    ),
}


def reward_methods(methods) -> list[str]:
    """The reward models ``methods`` learn: BTL's (RLHF) and VPL's."""
    return sorted({"btl", "vpl"} & set(methods))


def task_env() -> envs.FeatureEnv:
    return envs.make("navigation", num_goals=3)


def population(config: Config, case: str) -> Population:
    """The types in equal shares (``cyclic``) or in ``transitive_shares`` (``transitive``)."""
    shares = (1.0 / 3.0,) * 3 if case == "cyclic" else config.transitive_shares
    return Population.mixture(
        "navigation",
        task_env().feature_names,
        dict(zip(TYPES, shares, strict=True)),
        overrides=None if config.beta is None else {"beta": config.beta},
    )


def nash_ppo(config: Config) -> P.PPOConfig:
    return N.nash_ppo_config(config.nash_ppo, task_env().episode_length)


# --- models and policies ------------------------------------------------------------------------
def fit_models(config: Config, dataset: PreferenceDataset, key: jax.Array) -> dict:
    """``{name: (model, params)}`` of the preference model, BTL and VPL as the methods need them
    (:func:`vpl_jax.pipeline.fit_reward`: trained on the training users, scored on the test's)."""
    sizes = dataclasses.replace(config.sizes, context_size=config.data.context_size)
    models = {method: R.make_model(method, sizes) for method in reward_methods(config.methods)}
    if set(NASH_METHODS) & set(config.methods):
        models["preference"] = config.preference
    out = {}
    for name, k in zip(sorted(models), jax.random.split(key, len(models)), strict=True):
        train_config = config.preference_train if name == "preference" else config.reward_train
        start = time.time()
        fit = pipeline.fit_reward(models[name], train_config, k, dataset)
        out[name] = (models[name], fit.params)
        acc = np.round(np.asarray(fit.evaluation.type_accuracy), 3)
        print(f"  {name}: held-out accuracy per type {acc} ({time.time() - start:.0f} s)")
    return out


def train_method(config, method, env, models, reference, dataset, key, results, case):
    """``(params, latents, curves)``: ``method``'s lottery, acting with the reference's network
    (``latents(n) -> f32[n, 2]``, the noise inputs of n episodes), and its training curves."""
    network, ref_params = reference
    if method == "vpl":  # each test user's optimum over the reference's modes under r(s, z)
        model, params = models["vpl"]
        z = pipeline.test_latents("vpl", model, params, dataset)
        _, latents = N.vpl_lotteries(env, network, ref_params, model, params, z,
                                     config.nash.num_modes, config.vpl_mode_rollouts,
                                     config.nash.kl_coef, config.rlhf_return_std, key)  # fmt: skip
        return ref_params, latents, {}
    if method in DIRECT_METHODS:  # offline, from the training users' labelled episode pairs
        direct = dataclasses.replace(config.direct, loss=method)
        start = time.time()
        (params, log_weights), losses = N.train_direct_on_dataset(
            network, ref_params, dataset, direct, key
        )
        print(f"  {method}: loss {float(losses[0]):.3f} -> {float(losses[-50:].mean()):.3f} "
              f"({time.time() - start:.0f} s)")  # fmt: skip
        return params, N.lottery_latents(log_weights), {"loss": losses}
    if method == "btl":
        # RLHF: KL-regularised PPO from the reference on BTL's reward (Nash-MD's machinery with
        # the episode's return as its score), the reward scaled to returns of spread
        # rlhf_return_std over the recorded episodes.
        model, params = models["btl"]
        scale = N.return_scale(model.reward(params, dataset.segments.obs), config.rlhf_return_std)
        ppo = N.make_rlhf(env, model, params, ref_params, nash_ppo(config), config.nash, scale)
        names = ("episode_score", "kl", "max_mode_weight")
    else:
        nash_config = config.nash if method == "nash_md" else N.self_play(config.nash)
        model, params = models["preference"]
        ppo = N.make_nash_md(env, model, params, ref_params, nash_ppo(config), nash_config)
        names = CURVES
    checkpointer = results.checkpointer(
        f"{case}_{method}", config.checkpoint_every, case=case, method=method
    )
    # The lottery PPOs run the reference's network on raw observations, so their params act
    # like the reference's (and share its compiled evaluation).
    (params, log_weights), history = N.train_lottery(
        ppo, key, nash_ppo(config).num_updates, config.chunk_updates, checkpointer,
        f"{case} {method}")  # fmt: skip
    return params, N.lottery_latents(log_weights), {k: history[k] for k in names}


# --- figures --------------------------------------------------------------------------------------
def plot_goal_shares(scores: dict) -> plt.Figure:
    cases = list(scores)
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 3.6), squeeze=False)
    colors = {"a": "tab:blue", "b": "tab:orange", "c": "tab:green", "none": "lightgray"}
    for ax, case in zip(axes[0], cases, strict=True):
        methods = list(scores[case])
        bottom = np.zeros(len(methods))
        for g in (*GOALS, "none"):
            values = np.array([scores[case][m]["goal_share"][g] for m in methods])
            ax.bar(methods, values, bottom=bottom, color=colors[g], label=f"goal {g}")
            bottom += values
        if case == "cyclic":
            ax.axhline(1 / 3, color="k", lw=0.8, ls=":")
            ax.axhline(2 / 3, color="k", lw=0.8, ls=":")
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of episodes")
        ax.set_title(f"{case}: where each policy goes")
        ax.tick_params(axis="x", rotation=30)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def plot_exploitability(scores: dict) -> plt.Figure:
    cases = list(scores)
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.4), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        methods = list(scores[case])
        values = [scores[case][m]["exploitability"] for m in methods]
        ax.bar(methods, values, color="tab:purple")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_ylabel("exploitability (true preferences)")
        ax.set_title(f"{case}: best single-goal margin against the policy")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def plot_nash_curves(curves: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.5 * len(CURVES), 3.2))
    for (case, method), c in curves.items():
        for ax, name in zip(axes, CURVES, strict=True):
            ax.plot(np.asarray(c[name]), label=f"{case} {method}")
    axes[0].set_ylabel("win probability vs opponents (model)")
    axes[1].set_ylabel("KL(π || reference) per episode")
    axes[2].set_ylabel("largest mode weight")
    for ax in axes:
        ax.set_xlabel("PPO update")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# --- the experiment -------------------------------------------------------------------------------
def run_case(config: Config, case: str, key, results: harness.RunResults, curves: dict, reference):
    """Data, models, every method's policy and their scores for one population; ``reference``
    is ``(network, params)`` of the SFT policy (the same for every case)."""
    env = task_env()
    pop = population(config, case)
    k_data, k_models, k_methods, k_eval = jax.random.split(key, 4)
    print(f"[{case}] data and models")
    data_policy = goal_data_policy(env, config.goal_episode_share)
    dataset = build_dataset(k_data, env, pop, config.data, task="navigation", policy=data_policy)
    models = fit_models(config, dataset, k_models)
    network, ref_params = reference
    eval_keys = jax.random.split(k_eval, config.num_eval_episodes)
    pure = N.pure_episodes(env, eval_keys)
    notes = []
    if "preference" in models:
        table = N.goal_preference_table(env, *models["preference"], eval_keys[:64])
        text = "; ".join(f"{g}: " + ", ".join(f"{p:.2f}" for p in row)
                         for g, row in zip(GOALS, table, strict=True))  # fmt: skip
        notes.append(f"{case}: learned P(row goal ≻ column goal) between scripted episodes: {text}")
    act = N.network_act(network)
    uniform = N.lottery_latents(N.uniform_log_weights(config.nash.num_modes))
    trained = {"reference": (ref_params, uniform, {})}
    for method, k in zip(config.methods, jax.random.split(k_methods, len(config.methods)),
                         strict=True):  # fmt: skip
        start = time.time()
        trained[method] = train_method(config, method, env, models, reference, dataset, k,
                                       results, case)  # fmt: skip
        print(f"  {method} trained ({time.time() - start:.0f} s)")
        ppo_trained = method == "btl" or method in NASH_METHODS  # else curves per Adam step
        step_scale = nash_ppo(config).env_steps_per_update if ppo_trained else 1
        results.log_curves(f"{case}/{method}", trained[method][2], step_scale=step_scale)
        if method in NASH_METHODS:
            curves[(case, method)] = trained[method][2]
    scores = {}
    theta, w = jnp.asarray(pop.theta_mean), jnp.asarray(pop.shares)
    for method, (params, latents, _) in trained.items():
        s = scores[method] = N.score_policy(env, act, params, latents(config.num_eval_episodes),
                                            eval_keys, theta, w, pure, GOALS)  # fmt: skip
        for row in N.score_rows(s, GOALS, pop.type_names):
            results.add(method=method, task="navigation", **row, case=case)
        shares_text = " ".join(f"{g}={v:.2f}" for g, v in s["goal_share"].items())
        print(f"[{case}] {method:10s} exploitability {s['exploitability']:.3f}  {shares_text}")
        wins = ", ".join(f"{v:.2f}" for v in s["win_rate"])
        notes.append(f"| {case} | {method} | {s['exploitability']:.3f} | {shares_text} | {wins} |")
    return scores, notes


def main(config: Config, results: harness.RunResults) -> str:
    all_scores, curves, lines, model_lines = {}, {}, [], []
    k_ref, k_cases = jax.random.split(jax.random.PRNGKey(config.seed))
    # The reference (SFT) policy does not depend on the population: cloned once.
    arcs = [GOALS.index(g) for g in config.reference_goals]
    network, ref_params, clone_losses = N.clone_reference(
        task_env(), arcs, config.demo_noise, config.demo_episodes, nash_ppo(config), config.clone,
        k_ref,
    )  # fmt: skip
    print(f"reference: clone loss {float(clone_losses[0]):.2f} -> {float(clone_losses[-1]):.2f}")
    results.log_curves("reference/clone", {"loss": clone_losses})
    keys = jax.random.split(k_cases, len(config.cases))
    for case, key in zip(config.cases, keys, strict=True):
        all_scores[case], notes = run_case(
            config, case, key, results, curves, (network, ref_params)
        )
        model_lines += [n for n in notes if not n.startswith("|")]
        lines += [n for n in notes if n.startswith("|")]
    results.figure(plot_goal_shares(all_scores), "goal_shares")
    results.figure(plot_exploitability(all_scores), "exploitability")
    if curves:
        results.figure(plot_nash_curves(curves), "nash_training")
    title, types = "## Exploitability, goal shares and per-type win rates", ", ".join(TYPES)
    header = f"| case | method | exploitability | goal shares | win rate per type ({types}) |"
    return "\n".join([title, "", header, "|---|---|---|---|---|", *lines, "", *model_lines])


if __name__ == "__main__":
    harness.run_experiment("nash", Config, PRESETS, main, description=__doc__)
