"""Every bad input stops before anything compiles or trains, naming the field (issue 16).

One table: each experiment's command line (``harness.parse`` exits with status 2 and the message
on stderr; a field is spelled as its flag's path, ``ppo.vf_coef``) and the Python API's configs
and models (a ``ValueError`` naming ``Class.field``). Each row asserts the message and that not
one XLA program was compiled on the way (the task environments validation builds are made once
beforehand: they are memoised).
"""

import functools
import math

import jax
import pytest

from vpl_jax import active, envs, harness, iterate, nash
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.data import DatasetConfig, build_dataset
from vpl_jax.users import Population, UserType

INF, NAN = math.inf, math.nan
POLICY_EXPERIMENTS = (
    "underspecification", "active_queries", "misspecification", "misidentification", "nash",
    "policy_conflicts",
)  # fmt: skip
HIGHWAY_97_3 = "highway:aggressive=0.97,cautious=0.03"
MONITORS = {
    "reward_accuracy": "train",
    "underspecification": "reward_train",
    "active_queries": "train",
    "misspecification": "reward_train",
    "misidentification": "reward_train",
}

# (experiment, argv, what the message must hold)
COMMAND_LINE = [
    # Network sizes are checked, and every configured model built, before any data is made.
    ("reward_accuracy", ["--sizes.latent-dim", "-3"], "sizes.latent_dim=-3: must be an integer"),
    ("underspecification", ["--sizes.hidden", "0"], "sizes.hidden=(0,): must be a tuple"),
    ("active_queries", ["--sizes.ensemble-size", "0"], "sizes.ensemble_size=0"),
    ("misspecification", ["--sizes.kl-weight", "-1"], "sizes.kl_weight=-1.0"),
    ("misidentification", ["--sizes.latent-dim", "0"], "sizes.latent_dim=0"),
    ("nash", ["--sizes.latent-dim", "0"], "sizes.latent_dim=0"),
    ("reward_accuracy", ["--sizes.context-size", "4"], "sizes.context_size=4: set by the"),
    ("active_queries", ["--sizes.context-size", "4"], "from num_queries (12)"),
    ("nash", ["--sizes.inputs", "transition"], "sizes.inputs='transition': the Nash study"),
    # Every training config is validated.
    *[
        (name, [f"--{field.replace('_', '-')}.monitor", "bogus"], f"{field}.monitor='bogus'")
        for name, field in MONITORS.items()
    ],
    ("nash", ["--preference-train.monitor", "bogus"], "preference_train.monitor='bogus'"),
    ("nash", ["--reward-train.monitor", "bogus"], "reward_train.monitor='bogus'"),
    # Non-finite numbers (only beta may be inf).
    ("underspecification", ["--reward-train.learning-rate", "inf"], "reward_train.learning_rate"),
    ("reward_accuracy", ["--train.weight-decay", "nan"], "train.weight_decay=nan"),
    ("underspecification", ["--ppo.learning-rate", "inf"], "PPOConfig.learning_rate=inf"),
    ("misidentification", ["--ppo.ent-coef", "nan"], "PPOConfig.ent_coef=nan"),
    ("nash", ["--demo-noise", "inf"], "demo_noise=inf: must be a finite number"),
    ("nash", ["--rlhf-return-std", "inf"], "rlhf_return_std=inf: must be a finite number"),
    ("nash", ["--direct.beta", "inf"], "direct.beta=inf: must be a finite number"),
    ("active_queries", ["--diversity", "inf"], "diversity=inf: must be a finite number"),
    ("nash", ["--transitive-shares", "nan", "0.1", "0.1"], "transitive_shares=(nan, 0.1, 0.1)"),
    ("nash", ["--transitive-shares", "0", "0", "0"], "three finite shares >= 0, not all 0"),
    ("misspecification", ["--belief-sizes", "inf"], "belief_sizes=(inf,): must be a non-empty"),
    ("misspecification", ["--gamma-sizes", "1"], "gamma_sizes=(1.0,)"),
    ("reward_accuracy", ["--beta", "nan"], "beta=nan: must be a number >= 0 (inf allowed)"),
    ("underspecification", ["--weight-noise", "-1"], "weight_noise=-1.0: must be a finite"),
    # Ranges of the experiments' own fields.
    ("underspecification", ["--num-goals", "7"], "num_goals=7: must be an integer in [2, 6]"),
    ("reward_accuracy", ["--num-seeds", "0"], "num_seeds=0: must be an integer >= 1"),
    ("reward_accuracy", ["--validation-fraction", "1"], "validation_fraction=1.0: must be"),
    ("reward_accuracy", ["--seed", "-1"], "seed=-1: must be an integer in [0, 4294967295]"),
    ("active_queries", ["--calibration-bins", "1"], "calibration_bins=1: must be an integer"),
    ("misidentification", ["--avoid-hazard", "1.5"], "avoid_hazard=1.5: must be a finite"),
    ("nash", ["--vpl-mode-rollouts", "1"], "vpl_mode_rollouts=1: must be an integer >= 2"),
    ("underspecification", ["--render-episodes", "-1"], "render_episodes=-1"),
    # Rules that relate fields.
    ("active_queries", ["--batch-size", "5"], "num_queries=12: must be a multiple of batch_size"),
    ("active_queries", ["--reference-queries", "20"], "reference_queries=20: must be <= num_"),
    ("active_queries", ["--batch-size", "2", "--entropy-shortlist", "1"], "entropy_shortlist=1"),
    ("active_queries", ["--policy-tasks", "locomotion"], "policy_tasks: unknown value(s)"),
    ("misspecification", ["--methods", "btl", "--policy-methods", "vpl"], "policy_methods: unk"),
    ("misspecification", ["--kinds", "beta", "--policy-kinds", "gamma"], "policy_kinds: unknown"),
    ("misidentification", ["--iterate.schedule", "0"], "iterate.schedule=(0,): must be"),
    ("misidentification", ["--iterate.schedule", "100"], "iterate.schedule=(100,): every round"),
    ("nash", ["--nash.num-opponents", "2"], "nash.num_opponents=2: must be >= num_modes=6"),
    ("nash", ["--clone.num-steps", "0"], "clone.num_steps=0: must be an integer >= 1"),
    ("nash", ["--data.segment-horizon", "20"], "data.segment_horizon=20: must equal the"),
    ("nash", ["--reference-goals", "aax"], "reference_goals='aax': a non-empty string of goals"),
    # Data sizes, named as the flag's path.
    ("reward_accuracy", ["--data.pool-size", "1"], "data.pool_size=1: must be >= context_size"),
    ("underspecification", ["--data.test-fraction", "0"], "data.test_fraction=0.0: must be"),
    ("misspecification", ["--data.segment-horizon", "41"], "data.segment_horizon=41: must be"),
    ("reward_accuracy", ["--data.num-users", "2"], "data.num_users=2: no user type gets two"),
    ("underspecification", ["--data.num-users", "4"], "data.num_users=4: no user type gets two"),
    (
        "reward_accuracy",
        ["--tasks", "highway", "--data.num-users", "12", "--population", HIGHWAY_97_3],
        "data.num_users=12: user type(s) ['cautious'] get no test user",
    ),
    # PPO's own checks, at its construction.
    ("underspecification", ["--ppo.vf-coef", "-1"], "PPOConfig.vf_coef=-1.0: must be a finite"),
    ("misspecification", ["--ppo.ent-coef", "-0.1"], "PPOConfig.ent_coef=-0.1"),
    ("underspecification", ["--ppo.init-log-std", "50"], "PPOConfig.init_log_std=50.0"),
    ("underspecification", ["--ppo.hidden-sizes", "0"], "PPOConfig.hidden_sizes=(0,)"),
    ("active_queries", ["--ppo.num-minibatches", "7"], "PPOConfig.num_minibatches=7: must"),
    # Options an experiment sets itself are rejected, naming what sets them.
    ("misidentification", ["--tensorboard"], "Unrecognized options: --tensorboard"),
    (
        "misidentification",
        ["--iterate.criterion", "info_gain", "--methods", "btl", "--criteria", "random"],
        "iterate.criterion='info_gain': set by criteria",
    ),
    ("underspecification", ["--ppo.center-rewards"], "ppo.center_rewards: set per task by"),
    # Choices, task names and user types.
    ("underspecification", ["--methods", "rlhf"], "methods: unknown value(s) ['rlhf']"),
    ("reward_accuracy", ["--methods", "btl", "btl"], "methods=['btl', 'btl']: values must not"),
    ("underspecification", ["--user-sampling", "density"], "user_sampling='density': allowed"),
    ("underspecification", ["--reward-scaling", "zscore"], "reward_scaling='zscore': allowed"),
    ("reward_accuracy", ["--tasks", "kitchen"], "tasks: unknown value(s) ['kitchen']"),
    ("underspecification", ["--center-reward-tasks", "highwy"], "center_reward_tasks: unknown"),
    (
        "underspecification",
        ["--navigation-types", "goal_a", "goal_a"],
        "navigation_types=['goal_a',",
    ),
    ("underspecification", ["--navigation-types", "goal_z"], "unknown user type 'goal_z'"),
    ("reward_accuracy", ["--highway-types", "cautious", "cautious"], "highway_types=['cautious',"),
    ("active_queries", ["--locomotion-types", "left", "left"], "locomotion_types=['left', 'left']"),
    ("active_queries", ["--navigation-types"], "navigation_types: give at least one user type"),
    ("misidentification", ["--navigation-types", "goal_a", "goal_a"], "user types must not repeat"),
    ("misspecification", ["--navigation-types", "goal_a", "goal_a"], "user types must not repeat"),
    ("misspecification", ["--navigation-types", "goal_z"], "navigation_types: unknown user"),
    ("reward_accuracy", ["--population", "navigation:goal_a=2"], "population:"),
    ("reward_accuracy", ["--register", "no/such/file.py"], "register='no/such/file.py': failed"),
    # PPO of the pipeline's policies must run on the episodes they are evaluated on.
    ("underspecification", ["--ppo.action-repeat", "2"], "ppo.action_repeat=2: must be 1"),
    ("misspecification", ["--ppo.episode-length", "7"], "ppo.episode_length=7: must be unset"),
    ("misidentification", ["--ppo.action-repeat", "3"], "ppo.action_repeat=3: must be 1"),
    ("active_queries", ["--ppo.episode-length", "7"], "ppo.episode_length=7: must be unset"),
    # Every experiment that trains policies checkpoints them, on its chunk boundaries.
    *[
        (name, ["--checkpoint-every", "25"], "checkpoint_every=25: must be a multiple of chunk")
        for name in POLICY_EXPERIMENTS
    ],
    ("misidentification", ["--checkpoint-every", "-20"], "checkpoint_every=-20: must be an int"),
    ("underspecification", ["--reward-checkpoint-every", "30"], "reward_checkpoint_every=30"),
    ("reward_accuracy", ["--reward-checkpoint-every", "30"], "reward_checkpoint_every=30"),
    # policy_conflicts compares user types: a population of one is refused.
    (
        "policy_conflicts",
        ["--population", "highway:gaussian:safety=1,efficiency=0.5:std=0.3"],
        "policy_conflicts compares user types and needs two or more",
    ),
    ("policy_conflicts", ["--reward-scaling", "zscore"], "reward_scaling='zscore': allowed"),
    ("policy_conflicts", ["--num-reference-states", "0"], "num_reference_states=0: must be an"),
    ("policy_conflicts", ["--tasks", "highwy"], "tasks: unknown value(s) ['highwy']"),
    # Where a run is placed: devices and processes (issue 19).
    ("reward_accuracy", ["--devices", "0"], "devices=0: must be an integer >= 1, or None"),
    ("reward_accuracy", ["--devices", "2"], "devices=2: this run has 1 (jax.devices()); use 1"),
    ("reward_accuracy", ["--num-processes", "2"], "coordinator_address, num_processes, process"),
    (
        "reward_accuracy",
        ["--coordinator-address", "localhost", "--num-processes", "2", "--process-id", "0"],
        "coordinator_address='localhost': give HOST:PORT",
    ),
    (
        "reward_accuracy",
        ["--coordinator-address", "h:1", "--num-processes", "2", "--process-id", "2"],
        "process_id=2: must be an integer in [0, 1]",
    ),
    # Where results go.
    ("reward_accuracy", ["--run-name", "a/b"], "run_name='a/b'"),
    ("underspecification", ["--results-dir", ""], "results_dir='': give a folder"),
    ("nash", ["--results-dir", "pyproject.toml/sub"], "'pyproject.toml' is a file"),
    # active_queries' criteria, models and presets.
    ("active_queries", ["--criteria", "info_gain", "bald"], "criteria: unknown value(s) ['bald']"),
    ("active_queries", ["--num-queries", "9", "--batch-size", "2"], "num_queries=9: must be a mul"),
    ("active_queries", ["--models", "btl_ensemble", "--criteria", "info_gain"], "leave nothing"),
    ("active_queries", ["--tasks", "highway", "--policy-tasks", "navigation"], "policy_tasks: un"),
    ("active_queries", ["--models", "linear_bayes"], "latent-conditioned policy needs 'vpl' in"),
    ("active_queries", ["--preset", "gpu"], "allowed presets are ['cpu', 'paper']"),
    # Populations and registrations.
    ("reward_accuracy", ["--population", "highway:bogus=1"], "population: unknown user type(s)"),
    ("reward_accuracy", ["--population", "highway:aggressive=0.5,cautious=0.6"], "population: p"),
    ("reward_accuracy", ["--population", "highway:aggressive=-1,cautious=2"], "shares must be >="),
    ("reward_accuracy", ["--population", "locomotion:forward=1"], "task 'locomotion' is not one"),
    ("reward_accuracy", ["--population", "highway:gaussian:speed=1"], "population: user type 'g"),
    ("reward_accuracy", ["--register", "no_such_module_xyz"], "register='no_such_module_xyz': f"),
    ("reward_accuracy", ["--weight-noise", "inf"], "weight_noise=inf: must be a finite number"),
    ("reward_accuracy", ["--sizes.inputs", "pixels"], "argument '--sizes.inputs'"),
    # misspecification's and misidentification's sweeps.
    ("misspecification", ["--kinds", "laziness"], "kinds: unknown value(s) ['laziness']"),
    ("misspecification", ["--epsilon-sizes", "0.7"], "epsilon_sizes=(0.7,): must be a non-empty"),
    ("misspecification", ["--policy-methods", "dpo"], "policy_methods: unknown value(s) ['dpo']"),
    ("misidentification", ["--methods", "btl"], "no belief about a user"),
    # many_types' sweeps (it draws its own populations).
    ("many_types", ["--type-counts", "1"], "type_counts=(1,): must be a tuple, each entry an"),
    ("many_types", ["--type-counts", "4", "4"], "type_counts=[4, 4]: values must not repeat"),
    ("many_types", ["--spreads", "-0.5"], "spreads=(-0.5,): must be a tuple, each entry a f"),
    ("many_types", ["--data.num-users", "32"], "data.num_users=32: no user type gets two tra"),
    ("many_types", ["--population", "highway:gaussian:safety=1"], "many_types draws its own"),
    ("many_types", ["--tasks", "locomotion"], "tasks: unknown value(s) ['locomotion']"),
    # label_noise's sweep.
    ("label_noise", ["--context-sizes", "2", "16"], "context_sizes=(2, 16): each must be at m"),
    ("label_noise", ["--context-sizes", "4", "4"], "context_sizes=(4, 4): a context size must"),
    ("label_noise", ["--epsilon-sizes", "0.7"], "epsilon_sizes=(0.7,): must be a non-empty"),
    ("label_noise", ["--temperature-sizes", "0"], "temperature_sizes=(0.0,): must be a non-e"),
    ("label_noise", ["--kinds", "myopia"], "kinds: unknown value(s) ['myopia']"),
    ("label_noise", ["--num-seeds", "0"], "num_seeds=0: must be an integer"),
    # reproduce's own options.
    ("reproduce", ["--only", "scaled_rewards", "--tensorboard", "--index-only"], "--index-only"),
    ("reproduce", ["--only", "kitchen"], "only: unknown value(s) ['kitchen']"),
    ("reproduce", ["--experiment-preset", "bogus"], "experiment_preset='bogus': allowed values"),
    ("reproduce", ["--tensorboard", "--only", "misidentification"], "log no training curves"),
    ("reproduce", ["--tensorboard", "--index-only"], "--index-only runs no experiment"),
]


@functools.cache
def _navigation():
    """A key, the navigation task and a population of it (made once, before any row runs)."""
    env = envs.make("navigation")
    population = Population.mixture("navigation", env.feature_names, ["goal_a", "goal_b"])
    return jax.random.PRNGKey(0), env, population


def _dataset(**sizes):
    config = DatasetConfig(**{"pool_size": 512, "heldout_size": 16, **sizes})
    return build_dataset(*_navigation(), config)


# (a call that must raise ValueError, what its message must hold)
API = [
    # PPO: at construction.
    (lambda: P.PPOConfig(num_envs=2.5), "PPOConfig.num_envs=2.5: must be an integer >= 1"),
    (lambda: P.PPOConfig(num_envs=0), "PPOConfig.num_envs=0"),
    (lambda: P.PPOConfig(hidden_sizes=(16, 0)), "PPOConfig.hidden_sizes=(16, 0): must be a non"),
    (lambda: P.PPOConfig(hidden_sizes=()), "PPOConfig.hidden_sizes=(): must be a non-empty"),
    (lambda: P.PPOConfig(vf_coef=-0.5), "PPOConfig.vf_coef=-0.5: must be a finite number >= 0"),
    (lambda: P.PPOConfig(init_log_std=50.0), "PPOConfig.init_log_std=50.0: must be a finite"),
    (lambda: P.PPOConfig(learning_rate="3e-4"), "PPOConfig.learning_rate='3e-4': must be a"),
    (lambda: P.PPOConfig(learning_rate=INF), "PPOConfig.learning_rate=inf: must be a finite"),
    (lambda: P.PPOConfig(gamma=None), "PPOConfig.gamma=None: must be a finite number in [0, 1]"),
    (lambda: P.PPOConfig(gae_lambda=1.5), "PPOConfig.gae_lambda=1.5"),
    (lambda: P.PPOConfig(episode_length="100"), "PPOConfig.episode_length='100': must be an"),
    (lambda: P.PPOConfig(activation="sigmoidish"), "PPOConfig.activation='sigmoidish': allowed"),
    (lambda: P.PPOConfig(num_envs=6, num_steps=5), "PPOConfig.num_minibatches=4: must divide"),
    # Reward training: on validate (and so in every fit).
    (lambda: R.TrainConfig(num_epochs=0).validate(), "TrainConfig.num_epochs=0: must be an int"),
    (lambda: R.TrainConfig(num_epochs=True).validate(), "TrainConfig.num_epochs=True"),
    (lambda: R.TrainConfig(users_per_batch=0).validate(), "TrainConfig.users_per_batch=0"),
    (lambda: R.TrainConfig(learning_rate=-1.0).validate(), "TrainConfig.learning_rate=-1.0"),
    (lambda: R.TrainConfig(learning_rate=NAN).validate(), "TrainConfig.learning_rate=nan"),
    (lambda: R.TrainConfig(learning_rate="1e-3").validate(), "learning_rate='1e-3': must be a"),
    (lambda: R.TrainConfig(weight_decay=-1.0).validate(), "TrainConfig.weight_decay=-1.0"),
    (lambda: R.TrainConfig(max_grad_norm=INF).validate(), "TrainConfig.max_grad_norm=inf"),
    (lambda: R.TrainConfig(patience=0).validate(), "TrainConfig.patience=0: must be an integer"),
    (lambda: R.TrainConfig(monitor="kl").validate(), "TrainConfig.monitor='kl': allowed values"),
    (lambda: R.TrainConfig(monitor="accuracy").validate(), "monitor='accuracy': allowed values"),
    # Sizes shared by an experiment's reward models: on validate, and in make_model.
    (lambda: R.ModelSizes(hidden=(64, 0)).validate(), "ModelSizes.hidden=(64, 0): must be a"),
    (lambda: R.ModelSizes(hidden=(-1,)).validate(), "ModelSizes.hidden=(-1,)"),
    (lambda: R.ModelSizes(latent_dim=2.5).validate(), "ModelSizes.latent_dim=2.5: must be an"),
    (lambda: R.ModelSizes(context_size=0).validate(), "ModelSizes.context_size=0"),
    (lambda: R.ModelSizes(kl_weight=-0.5).validate(), "ModelSizes.kl_weight=-0.5"),
    (lambda: R.ModelSizes(kl_warmup_steps=-1).validate(), "ModelSizes.kl_warmup_steps=-1"),
    (lambda: R.ModelSizes(ensemble_size=0).validate(), "ModelSizes.ensemble_size=0"),
    (lambda: R.ModelSizes(vpl_decoder="x").validate(), "ModelSizes.vpl_decoder='x': allowed"),
    (lambda: R.make_model("vpl", R.ModelSizes(kl_weight=INF)), "ModelSizes.kl_weight=inf"),
    # Reward models: at construction.
    (lambda: R.BTL(hidden=(16, 0)), "BTL.hidden=(16, 0): must be a tuple, each entry an int"),
    (lambda: R.BTL(discount=0.0), "BTL.discount=0.0: must be a finite number in (0, 1]"),
    (lambda: R.BTL(inputs="pixels"), "BTL.inputs='pixels': allowed values are"),
    (lambda: R.Ensemble(R.BTL(hidden=(-4,))), "BTL.hidden=(-4,)"),
    (lambda: R.Ensemble(size=0), "Ensemble.size=0: must be an integer >= 1"),
    (lambda: R.DPLMeanVariance(hidden=(0,)), "DPLMeanVariance.hidden=(0,)"),
    (lambda: R.DPLMeanVariance(min_std=0.0), "DPLMeanVariance.min_std=0.0: must be a finite"),
    (lambda: R.DPLCategorical(hidden=(8, 0)), "DPLCategorical.hidden=(8, 0)"),
    (lambda: R.DPLCategorical(num_atoms=1), "DPLCategorical.num_atoms=1: must be an integer"),
    (lambda: R.DPLCategorical(entropy_coeff=-0.1), "DPLCategorical.entropy_coeff=-0.1"),
    (lambda: R.VPL(encoder_hidden=(0,)), "VPL.encoder_hidden=(0,)"),
    (lambda: R.VPL(decoder_hidden=(32, -1)), "VPL.decoder_hidden=(32, -1)"),
    (lambda: R.VPL(num_heads=0), "VPL.num_heads=0: must be an integer >= 1"),
    (lambda: R.VPL(latent_dim=2.5), "VPL.latent_dim=2.5: must be an integer >= 1"),
    (lambda: R.VPL(pooling="max"), "VPL.pooling='max': allowed values are"),
    (
        lambda: R.VPL(embed_dim=64, pooling="attention", num_heads=3),
        "VPL.num_heads=3: must divide embed_dim=64",
    ),
    (lambda: R.VPL(min_context=4, max_context=2), "VPL.max_context=2: must be None or >= min_"),
    (lambda: R.LinearBayes(min_context=4, max_context=2), "LinearBayes.max_context=2: must be"),
    (lambda: R.LinearBayes(min_context=-1), "LinearBayes.min_context=-1: must be an integer"),
    (lambda: R.LinearBayes(prior_std=0.0), "LinearBayes.prior_std=0.0: must be a finite"),
    # Preference data: before build_dataset compiles its generation.
    (lambda: _dataset(context_size=500), "DatasetConfig.pool_size=512: must be >= context_size"),
    (lambda: _dataset(context_size=0), "DatasetConfig.context_size=0: must be an integer >= 1"),
    (lambda: _dataset(num_users=True), "DatasetConfig.num_users=True: must be an integer >= 2"),
    (lambda: _dataset(num_users=1), "DatasetConfig.num_users=1: must be an integer >= 2"),
    (lambda: _dataset(segment_horizon=100), "DatasetConfig.segment_horizon=100: must be in 1."),
    (lambda: _dataset(test_fraction=1.0), "DatasetConfig.test_fraction=1.0: must be a finite"),
    (
        lambda: _dataset(num_episodes=2, segment_horizon=20, context_size=4, heldout_size=4),
        "DatasetConfig.pool_size=512: the 4 segments have only 6 distinct pairs",
    ),
    # The Nash study's configs: on validate.
    (lambda: nash.CloneConfig(num_steps=2.5).validate(), "CloneConfig.num_steps=2.5: must be an"),
    (lambda: nash.CloneConfig(learning_rate="3e-3").validate(), "CloneConfig.learning_rate='3e"),
    (lambda: nash.NashConfig(num_modes=2.5).validate(), "NashConfig.num_modes=2.5: must be an"),
    (lambda: nash.NashConfig(kl_coef="0.02").validate(), "NashConfig.kl_coef='0.02': must be a"),
    (lambda: nash.NashConfig(step_size="1").validate(), "NashConfig.step_size='1': must be a fin"),
    (lambda: nash.NashConfig(mixture=1.5).validate(), "NashConfig.mixture=1.5: must be a finite"),
    (lambda: nash.NashConfig(kl_coef=0.0).validate(), "NashConfig.step_size: give it when kl_c"),
    (lambda: nash.DirectConfig(num_steps=True).validate(), "DirectConfig.num_steps=True: must be"),
    (lambda: nash.DirectConfig(beta=NAN).validate(), "DirectConfig.beta=nan: must be a finite"),
    (lambda: nash.DirectConfig(loss="kto").validate(), "DirectConfig.loss='kto': allowed values"),
    (lambda: nash.DirectConfig(tau=0.0).validate(), "DirectConfig.tau=0.0: must be a finite"),
    (lambda: nash.PreferenceModel(hidden=(64, 0)), "PreferenceModel.hidden=(64, 0): must be a"),
    (lambda: nash.PreferenceModel(latent_dim=-1), "PreferenceModel.latent_dim=-1"),
    # Active learning and the iterate loop.
    (lambda: active.Acquisition("bald").validate(), "Acquisition.criterion='bald': allowed val"),
    (lambda: active.Acquisition(batch_size=0).validate(), "Acquisition.batch_size=0: must be an"),
    (lambda: active.Acquisition(diversity=NAN).validate(), "Acquisition.diversity=nan"),
    (
        lambda: active.Acquisition("random", batch_size=2, shortlist=1).validate(),
        "Acquisition.shortlist=1: must be >= batch_size=2",
    ),
    (lambda: iterate.IterateConfig(criterion="bald").validate(), "IterateConfig.criterion='bald'"),
    (
        lambda: iterate.IterateConfig(schedule=(8, 100)).validate(),
        "IterateConfig.schedule=(8, 100): every round asks 1..64",
    ),
    (
        lambda: iterate.IterateConfig(criterion="info_gain").validate(R.BTL()),
        "IterateConfig.criterion='info_gain' needs a belief about each user",
    ),
    # Users.
    (lambda: UserType("x", {"a": 1.0}, weight_noise=-1.0), "UserType(x).weight_noise=-1.0"),
    (lambda: UserType("x", {"a": 1.0}, gamma=0.0), "UserType(x).gamma=0.0: must be a finite"),
    (lambda: UserType("x", {"a": 1.0}, beta=NAN), "UserType(x).beta=nan: must be a number >= 0"),
    (
        lambda: Population.mixture("navigation", ["safety"], ["goal_a"], weight_noise=INF),
        "weight_noise=inf: must be a finite number >= 0",
    ),
]

CASES = [pytest.param(name, argv, message, id=f"{name}:{' '.join(argv)}")
         for name, argv, message in COMMAND_LINE] + [
    pytest.param(None, make, message, id=f"api:{message.split(':')[0]}")
    for make, message in API
]  # fmt: skip


@pytest.fixture(scope="module")
def compiles(load_experiment):
    """``compiles()``: how many XLA programs have been compiled so far. Every experiment's
    defaults are parsed first, so the task environments its validation builds (memoised) are
    made before any row runs."""
    count = [0]

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            count[0] += 1

    for name in {name for name, _, _ in COMMAND_LINE}:
        experiment = load_experiment(name)
        harness.parse(experiment.Config, experiment.PRESETS, [])
    _navigation()
    jax.monitoring.register_event_duration_secs_listener(listen)
    yield lambda: count[0]
    jax.monitoring.unregister_event_duration_listener(listen)


def test_the_table_covers_every_experiment_and_is_large(load_experiment):
    assert len(CASES) >= 60
    experiments = set(load_experiment("reproduce").EXPERIMENTS)
    assert set(POLICY_EXPERIMENTS) <= experiments
    assert {name for name, _, _ in COMMAND_LINE} == experiments | {"reproduce"}


@pytest.mark.parametrize(("name", "given", "message"), CASES)
def test_bad_input_stops_before_anything_compiles_naming_the_field(
    name, given, message, compiles, load_experiment, capsys
):
    before = compiles()
    if name is None:
        with pytest.raises(ValueError) as error:
            given()
        said = str(error.value)
    else:
        experiment = load_experiment(name)
        with pytest.raises(SystemExit) as exit_info:
            harness.parse(experiment.Config, experiment.PRESETS, given)
        assert exit_info.value.code == 2
        captured = capsys.readouterr()
        said = captured.err + captured.out
    assert message in said, said
    assert compiles() == before, f"{compiles() - before} program(s) compiled before the error"
