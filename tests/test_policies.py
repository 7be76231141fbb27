"""PPO's pieces: the squashed-Gaussian log-density, GAE, the latent and auto-reset wrappers, and
the trainer's determinism under ``vmap`` over seeds and chunking."""

import dataclasses
import warnings

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

from vpl_jax.policies import (
    ActorCritic,
    LatentReward,
    PPOConfig,
    balanced_log_weights,
    constant_sampler,
    generalized_advantages,
    learned_reward,
    log_prob_of_pre_squash,
    make_train,
    no_latent,
    oracle_reward,
    posterior_sampler,
    prior_sampler,
    scaled_latent_reward,
    table_sampler,
    tanh_gaussian,
    user_log_weights,
    wrap_for_training,
)


def test_squashed_log_prob_includes_the_tanh_jacobian():
    mean, log_std = jnp.array([0.3, -0.2]), jnp.array([-0.5, 0.1])
    u = jnp.array([[0.4, -1.2], [1.5, 0.2]])
    dist = tanh_gaussian(mean, log_std)
    expected = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)).log_prob(u) - jnp.sum(
        jnp.log(1 - jnp.tanh(u) ** 2), -1
    )
    chex.assert_trees_all_close(log_prob_of_pre_squash(dist, u), expected, rtol=1e-5)
    chex.assert_trees_all_close(dist.log_prob(jnp.tanh(u)), expected, rtol=1e-4)
    # Where tanh(u) rounds to 1 in float32, inverting tanh fails; the pre-squash form does not.
    assert np.isfinite(log_prob_of_pre_squash(dist, jnp.array([12.0, 0.0])))


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.5
    value = jnp.array([1.0, 2.0, 3.0])
    reward = jnp.array([1.0, 0.0, 2.0])
    done = jnp.array([0.0, 1.0, 0.0])  # the first episode ends after step 1
    last_value = jnp.array(4.0)
    # Step 2 starts a new episode and bootstraps from last_value; step 1 ends with no future.
    d2 = 2.0 + 0.9 * 4.0 - 3.0
    d1 = 0.0 - 2.0
    d0 = 1.0 + 0.9 * 2.0 - 1.0
    expected = jnp.array([d0 + 0.45 * d1, d1, d2])
    for gae in (generalized_advantages, jax.jit(generalized_advantages, static_argnums=(4, 5))):
        chex.assert_trees_all_close(gae(value, reward, done, last_value, gamma, lam), expected)


def test_gae_bootstraps_a_truncated_episode_like_its_continuation():
    """An episode cut by the time limit at step 2 gets the advantages of the same steps in an
    episode that goes on past its final observation (whose value is the bootstrap), while a
    terminated one's future is worth nothing; the next episode is untouched by either."""
    gamma, lam = 0.9, 0.8
    value = jnp.array([1.0, -0.5, 2.0, 0.3, 1.5])
    reward = jnp.array([0.5, 1.0, -1.0, 2.0, 0.0])
    done = jnp.array([0.0, 0.0, 1.0, 0.0, 0.0])  # the first episode ends with step 2
    final_value = jnp.array([9.0, 9.0, 3.0, 9.0, 9.0])  # V(obs step 2 ended in) = 3
    last_value = jnp.array(0.7)
    cut = generalized_advantages(
        value, reward, done, last_value, gamma, lam,
        truncation=done, final_value=final_value,
    )  # fmt: skip
    continued = generalized_advantages(
        value[:3], reward[:3], jnp.zeros(3), final_value[2], gamma, lam
    )
    chex.assert_trees_all_close(cut[:3], continued, rtol=1e-6)
    terminated = generalized_advantages(value, reward, done, last_value, gamma, lam)
    chex.assert_trees_all_close(terminated[:3], generalized_advantages(
        value[:3], reward[:3], jnp.zeros(3), jnp.array(0.0), gamma, lam), rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(
        cut[:3] - terminated[:3], gamma * 3.0 * (gamma * lam) ** jnp.arange(2, -1, -1), rtol=1e-5
    )
    chex.assert_trees_all_close(cut[3:], terminated[3:])  # the second episode is not bootstrapped
    with pytest.raises(ValueError, match="truncation and final_value go together"):
        generalized_advantages(value, reward, done, last_value, gamma, lam, truncation=done)


def test_gae_batches_over_environments():
    key = jax.random.PRNGKey(0)
    value, reward = jax.random.normal(key, (2, 5, 3))
    done = (jax.random.uniform(key, (5, 3)) < 0.3).astype(jnp.float32)
    last = jnp.arange(3.0)
    batched = generalized_advantages(value, reward, done, last, 0.99, 0.95)
    for b in range(3):
        single = generalized_advantages(value[:, b], reward[:, b], done[:, b], last[b], 0.99, 0.95)
        chex.assert_trees_all_close(batched[:, b], single, rtol=1e-6)


@pytest.mark.slow
def test_latent_reward_redraws_z_at_every_auto_reset(navigation):
    sampler = prior_sampler(navigation.num_features)
    # A per-episode context (here sum(z)), computed at reset and read by the reward.
    env = LatentReward(
        navigation,
        sampler,
        lambda state, z: oracle_reward(state, z) + state.info["reward_context"],
        episode_context=jnp.sum,
    )
    env = wrap_for_training(env, 5)
    num_envs, num_steps = 4, 12

    @jax.jit
    def run(key):
        k_reset, k_act = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def step(state, k):
            action = jax.random.uniform(k, (num_envs, 2), minval=-1)
            next_state = jax.vmap(env.step)(state, action)
            return next_state, (state, next_state)

        _, (before, after) = jax.lax.scan(step, state, jax.random.split(k_act, num_steps))
        return before, after

    before, after = run(jax.random.PRNGKey(0))
    obs_size = navigation.observation_size
    z = after.info["latent"]  # [T, B, F]
    # z is appended to the observation, and the reward is z · phi (+ the context) of the
    # finished step, with the z that was in force during that step.
    chex.assert_trees_all_close(after.obs[..., obs_size:], z)
    z_then = before.info["latent"]
    expected = jnp.sum(z_then * after.info["features"], -1) + jnp.sum(z_then, -1)
    chex.assert_trees_all_close(after.reward, expected, rtol=1e-5, atol=1e-6)

    done = np.asarray(after.done, bool)
    np.testing.assert_array_equal(done[:, 0], (np.arange(num_steps) + 1) % 5 == 0)
    np.testing.assert_array_equal(np.asarray(after.info["truncation"], bool), done)
    # Every reset draws a new start and a new z and restarts the task's own clock; within an
    # episode z stays fixed.
    z_before = np.asarray(before.info["latent"])
    assert np.all(np.any(np.asarray(z)[done] != z_before[done], axis=-1))
    np.testing.assert_array_equal(np.asarray(z)[~done], z_before[~done])
    np.testing.assert_array_equal(np.asarray(after.info["t"])[done], 0)
    np.testing.assert_array_equal(np.asarray(after.info["steps"])[done], 0)
    # final_obs keeps where the finished episode ended, for bootstrapping.
    final = np.asarray(after.info["final_obs"])
    assert np.all(np.any(final[done] != np.asarray(after.obs)[done], axis=-1))
    np.testing.assert_array_equal(final[~done], np.asarray(after.obs)[~done])


def test_unconditioned_variant_keeps_the_observation_and_uses_the_learned_reward(navigation):
    goal = navigation.goals[1]
    reward = learned_reward(lambda obs, z: -jnp.linalg.norm(obs[:2] - goal))
    env = LatentReward(navigation, no_latent(), reward)
    assert env.latent_size == 0
    state = env.step(env.reset(jax.random.PRNGKey(0)), jnp.array([0.5, -1.0]))
    chex.assert_shape(state.obs, (navigation.observation_size,))
    chex.assert_trees_all_close(state.reward, -jnp.linalg.norm(state.obs[:2] - goal))


TINY = PPOConfig(
    total_timesteps=2 * 8 * 16,
    num_envs=8,
    num_steps=16,
    num_minibatches=2,
    update_epochs=2,
    episode_length=10,
)


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_chunked_runs_and_repeat_exactly(navigation):
    """The task's own reward, no latent: also the path ``benchmarks/ppo_ant.py`` takes."""
    ppo = make_train(navigation, TINY)
    assert TINY.num_updates == 2
    init, one_update = jax.jit(ppo.init), jax.jit(ppo.train_chunk, static_argnums=1)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)

    batched_state, batched_metrics = jax.jit(jax.vmap(ppo.train))(keys)
    for s in range(2):
        state, first = one_update(init(keys[s]), 1)
        state, second = one_update(state, 1)
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), first, second)
        chex.assert_trees_all_close(
            (state.params, state.obs_stats.mean, metrics),
            jax.tree.map(
                lambda x, s=s: x[s],
                (batched_state.params, batched_state.obs_stats.mean, batched_metrics),
            ),
            rtol=1e-5,
            atol=1e-6,
        )
    assert int(state.update) == 2
    chex.assert_tree_all_finite(state.params)
    # The same seed and config give bit-identical results.
    again, _ = one_update(one_update(init(keys[1]), 1)[0], 1)
    chex.assert_trees_all_equal(again, state)


@pytest.mark.slow
def test_rewards_of_any_scale_train_alike(navigation):
    """Learned rewards come at arbitrary scales; return normalisation divides the scale out.

    Also the pattern for per-seed reward models: ``make_train`` inside ``vmap``, closing over a
    traced reward parameter (here the scale)."""

    def train(scale):
        reward = learned_reward(lambda obs, z: -scale * jnp.linalg.norm(obs[:2]))
        ppo = make_train(LatentReward(navigation, no_latent(), reward), TINY)
        return ppo.train(jax.random.PRNGKey(0))

    state, metrics = jax.jit(jax.vmap(train))(jnp.array([1.0, 1000.0]))
    np.testing.assert_allclose(metrics["return_std"][1], 1000.0 * metrics["return_std"][0], 1e-4)
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[0], state.params),
        jax.tree.map(lambda x: x[1], state.params),
        rtol=1e-3,
        atol=1e-5,
    )


def test_policy_trainer_rejects_episodes_its_policies_are_not_evaluated_on(navigation):
    from vpl_jax.pipeline import PolicyTrainer

    with pytest.raises(ValueError, match=r"ppo.action_repeat=2: must be 1"):
        PolicyTrainer(navigation, "oracle", None, PPOConfig(action_repeat=2))
    with pytest.raises(ValueError, match=rf"episode_length {navigation.episode_length}"):
        PolicyTrainer(navigation, "oracle", None, PPOConfig(episode_length=10))
    PolicyTrainer(navigation, "oracle", None, PPOConfig(episode_length=navigation.episode_length))


def test_unnormalised_rewards_at_an_extreme_scale_warn():
    from vpl_jax.checks import DataWarning

    with pytest.warns(DataWarning, match="reward_scale=1e"):
        PPOConfig(reward_scale=1e6, normalize_rewards=False)
    with pytest.warns(DataWarning, match="reward_scale=0.001"):
        PPOConfig(reward_scale=1e-3, normalize_rewards=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        PPOConfig(reward_scale=1e6)  # normalised: the scale cancels
        PPOConfig(reward_scale=10.0, normalize_rewards=False)


def test_a_nan_ppo_loss_is_reported_with_where_it_happened():
    from vpl_jax.policies import TrainingDivergedError, check_converged

    finite = {"policy_loss": np.zeros((3, 2)), "value_loss": np.ones((3, 2))}
    check_converged({**finite, "env_steps": np.ones((3, 2))})
    value_loss = np.ones((3, 2))
    value_loss[1, 1] = np.inf
    steps = np.array([[128, 128], [256, 256], [384, 384]])
    with pytest.raises(
        TrainingDivergedError, match=r"value_loss is inf at 256 env steps \(run 1\)"
    ):
        check_converged({**finite, "value_loss": value_loss, "env_steps": steps})


@pytest.mark.slow
def test_a_diverged_ppo_stops_instead_of_training_on_nan_params(navigation, tmp_path):
    """learning_rate=1e30 (valid: finite and > 0) sends PPO's losses to inf/NaN within its
    first update; the run went on before, to NaN params and NaN returns. Now it stops after
    that chunk, before the diverged state is saved."""
    from vpl_jax.pipeline import PolicyTrainer
    from vpl_jax.policies import TrainingDivergedError
    from vpl_jax.runtime.checkpoint import Checkpointer

    wild = dataclasses.replace(TINY, episode_length=None, learning_rate=1e30)
    trainer = PolicyTrainer(navigation, "oracle", None, wild, 1, reward_scaling="none")
    theta = jnp.ones((1, 4, len(navigation.feature_names)))
    checkpoints = Checkpointer(tmp_path, {}, every=1)
    with pytest.raises(TrainingDivergedError, match=r"PPO diverged: \w+ is (nan|inf) at 128 env"):
        trainer.train(jax.random.PRNGKey(0)[None], {"theta": theta}, checkpointer=checkpoints)
    assert not [p for p in tmp_path.iterdir() if p.name.isdigit()]  # no diverged state saved


def test_scaled_rewards_without_reference_steps_are_refused_before_compiling(navigation):
    """Standardised rewards (the default) need reference steps; an oracle given only theta
    failed deep inside tracing with a TypeError on None @ z (a CI failure). Now the trainer
    says what is missing and how to get it, and nothing is compiled."""
    from vpl_jax.pipeline import PolicyTrainer

    config = dataclasses.replace(TINY, episode_length=None)
    trainer = PolicyTrainer(navigation, "oracle", None, config)
    theta = jnp.ones((1, 4, len(navigation.feature_names)))
    missing = r"reward_scaling='standardize'.*'references'.*policy_inputs"
    with pytest.raises(ValueError, match=missing):
        trainer.train(jax.random.PRNGKey(0)[None], {"theta": theta})
    assert trainer._acting is None


# --- the standard deviation as a function of the latent -----------------------------------------
class OneStep(Env):
    """One step, nothing to observe: the reward is all in the action (see ``noise_averse``)."""

    episode_length = 1

    def reset(self, rng):
        del rng
        zero = jnp.zeros(())
        return State(None, jnp.zeros(1), zero, zero, {}, {})

    def step(self, state, action):
        return state.replace(reward=jnp.zeros(()), done=jnp.zeros(()))

    @property
    def observation_size(self):
        return 1

    @property
    def action_size(self):
        return 1

    @property
    def backend(self):
        return "none"


class Dice(OneStep):
    """Starts at a random point (so resets depend on their keys) and moves by the action; counts
    the resets that actually run (a host callback inside ``reset``)."""

    def __init__(self, counter: list):
        self.counter = counter

    def reset(self, rng):
        jax.debug.callback(lambda: self.counter.append(1))
        zero = jnp.zeros(())
        return State(None, jax.random.uniform(rng, (1,)), zero, zero, {}, {})

    def step(self, state, action):
        return state.replace(obs=state.obs + action, reward=jnp.sum(action), done=jnp.zeros(()))


def test_batched_auto_reset_runs_resets_only_when_an_episode_ends():
    """step_batch equals vmap(step) step for step, but runs no reset on the steps where no
    episode ends (it used to run one per environment and step)."""
    counter: list[int] = []
    env = wrap_for_training(Dice(counter), 5)
    num_envs, num_steps = 3, 12

    def run(step_fn, key):
        state = jax.vmap(env.reset)(jax.random.split(key, num_envs))

        def step(state, k):
            next_state = step_fn(state, jax.random.uniform(k, (num_envs, 1), minval=-1))
            return next_state, next_state

        return jax.lax.scan(step, state, jax.random.split(key, num_steps))[1]

    key = jax.random.PRNGKey(3)
    batched = jax.jit(lambda k: run(env.step_batch, k))(key)
    chex.assert_trees_all_equal(batched, jax.jit(lambda k: run(jax.vmap(env.step), k))(key))
    assert bool(jnp.any(batched.obs[5] != batched.obs[4]))  # the episodes restarted

    state = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    jax.effects_barrier()
    counter.clear()
    step = jax.jit(env.step_batch)
    action = jnp.zeros((num_envs, 1))
    for _ in range(4):  # steps 1..4 of 5: no episode ends
        state = step(state, action)
    jax.effects_barrier()
    assert counter == []
    state = step(state, action)  # step 5 ends every episode
    jax.effects_barrier()
    assert counter and bool(np.all(np.asarray(state.info["steps"]) == 0))


def noise_averse(next_state, z):
    """User z = 1 is punished for any action away from 0; user z = 0 does not care."""
    return -4.0 * z[0] * jnp.sum(next_state.info["action"] ** 2)


@pytest.fixture(scope="module")
def one_step_runs():
    env = LatentReward(OneStep(), table_sampler(jnp.array([[0.0], [1.0]])), noise_averse)
    config = PPOConfig(
        total_timesteps=64 * 8 * 150, num_envs=64, num_steps=8, ent_coef=0.02, init_log_std=0.0
    )
    runs = {}
    for state_dependent in (False, True):
        ppo = make_train(env, dataclasses.replace(config, state_dependent_std=state_dependent))
        runner_state, _ = jax.jit(ppo.train)(jax.random.PRNGKey(0))
        runs[state_dependent] = (ppo, ppo.policy_params(runner_state))
    return runs


def test_state_dependent_std_starts_at_init_log_std_for_every_input():
    net = ActorCritic(action_size=3, hidden_sizes=(8,), init_log_std=-0.7, state_dependent_std=True)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros(4))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    mean, log_std, _ = net.apply(params, obs)
    chex.assert_shape([mean, log_std], (5, 3))
    np.testing.assert_allclose(log_std, -0.7)
    # and it is a function of the input once trained: its kernel gets a gradient
    grad = jax.grad(lambda p: net.apply(p, obs)[1].sum())(params)
    assert np.abs(np.asarray(grad["params"]["log_std"]["kernel"])).sum() > 0


@pytest.mark.slow
def test_latent_conditioned_std_serves_a_noise_averse_user_a_shared_one_cannot(one_step_runs):
    def std_and_reward(state_dependent):
        ppo, policy = one_step_runs[state_dependent]
        obs = jnp.array([[0.0, 0.0], [0.0, 1.0]])  # z = 0, z = 1
        dist = ppo.distribution(policy, obs)
        actions = dist.sample(seed=jax.random.PRNGKey(3), sample_shape=(4096,))
        return dist.distribution.stddev()[:, 0], -4.0 * jnp.mean(actions[:, 1, 0] ** 2)

    shared_std, shared_reward = std_and_reward(False)
    own_std, own_reward = std_and_reward(True)
    np.testing.assert_allclose(shared_std[0], shared_std[1])  # one std for both users
    # The noise-averse user gets a much narrower policy than the indifferent one, whose
    # entropy bonus keeps it wide; with one shared std the two pull against each other.
    assert own_std[1] < 0.5 * own_std[0], own_std
    assert own_reward > shared_reward + 0.1, (own_reward, shared_reward)


# --- user sampling ------------------------------------------------------------------------------
def _clusters(sizes, spread=0.05, seed=0):
    """Points of well-separated clusters (centres 0, 1, 2, ... on every axis) and their labels."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([c + spread * rng.standard_normal((n, 3)) for c, n in enumerate(sizes)])
    return jnp.asarray(points, jnp.float32), np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("sizes", [(70, 20, 10), (50, 45, 5), (10, 10)])
def test_balanced_weights_give_every_cluster_an_equal_share(sizes):
    points, label = _clusters(sizes)
    w = np.exp(np.asarray(balanced_log_weights(points), np.float64))
    share = np.array([w[label == c].sum() for c in range(len(sizes))]) / w.sum()
    np.testing.assert_allclose(share, 1 / len(sizes), atol=0.03)
    # within a cluster the weights are about equal (no user stands for its whole type)
    assert all(w[label == c].max() / w[label == c].min() < 1.5 for c in range(len(sizes)))


def test_balanced_weights_are_permutation_equivariant_and_uniform_for_one_cluster():
    points, _ = _clusters((30, 10))
    perm = np.random.default_rng(1).permutation(40)
    np.testing.assert_allclose(
        balanced_log_weights(points)[perm], balanced_log_weights(points[perm]), rtol=1e-5
    )
    one, _ = _clusters((40,), spread=0.0)  # identical points: nobody is over-represented
    np.testing.assert_allclose(np.ptp(np.asarray(balanced_log_weights(one))), 0.0, atol=1e-5)


def test_samplers_draw_users_by_their_log_weights():
    table = jnp.arange(4, dtype=jnp.float32)[:, None]
    log_weights = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    for sampler in (
        table_sampler(table, log_weights),
        posterior_sampler(table, jnp.zeros_like(table), log_weights),
    ):
        picks = np.asarray(jax.vmap(sampler)(keys))[:, 0].astype(int)
        np.testing.assert_allclose(
            np.bincount(picks, minlength=4) / len(picks), [0.1, 0.2, 0.3, 0.4], atol=0.015
        )
    uniform = np.asarray(jax.vmap(table_sampler(table))(keys))[:, 0].astype(int)
    np.testing.assert_allclose(np.bincount(uniform) / len(uniform), 0.25, atol=0.015)


def test_user_sampling_choice_is_checked():
    with pytest.raises(ValueError, match=r"user_sampling='density'.*uniform.*balanced"):
        user_log_weights(jnp.zeros((3, 2)), "density")
    assert user_log_weights(jnp.zeros((3, 2)), "uniform") is None


def wants_action_z(next_state, z):
    """User z wants the action z (a quadratic penalty around it)."""
    return -jnp.sum((next_state.info["action"] - z) ** 2)


@pytest.mark.slow
def test_balanced_user_sampling_serves_a_minority_that_uniform_sampling_neglects():
    """A 5 % user who wants the opposite action: with users drawn uniformly, PPO at a small
    budget has learned the majority and not yet them; drawn balanced, both (3 seeds)."""
    table = jnp.asarray([[-0.8]] * 19 + [[0.8]] * 1)
    config = PPOConfig(total_timesteps=64 * 4 * 6, num_envs=64, num_steps=4, init_log_std=-1.0)
    errors = {}
    for sampling in ("uniform", "balanced"):
        env = LatentReward(
            OneStep(), table_sampler(table, user_log_weights(table, sampling)), wants_action_z
        )
        ppo = make_train(env, config)
        states, _ = jax.jit(jax.vmap(ppo.train))(jax.random.split(jax.random.PRNGKey(0), 3))

        def action_error(state, ppo=ppo):
            policy = ppo.policy_params(state)
            z = jnp.array([[-0.8], [0.8]])
            act = jax.vmap(lambda z: ppo.act(policy, jnp.concatenate([jnp.zeros(1), z])))
            return jnp.abs(act(z)[:, 0] - z[:, 0])

        errors[sampling] = np.asarray(jax.vmap(action_error)(states)).mean(
            0
        )  # [majority, minority]
    assert errors["balanced"][1] < 0.6 * errors["uniform"][1], errors  # the minority
    assert errors["balanced"][0] < errors["uniform"][0] + 0.05, errors  # the majority as well


# --- per-user reward scaling --------------------------------------------------------------------
class ActionFeatures(OneStep):
    """One step whose feature is the action: a reward of kind ``"features"`` reads the action."""

    def reset(self, rng):
        del rng
        zero = jnp.zeros(())
        return State(None, jnp.zeros(1), zero, zero, {}, {"features": jnp.zeros(1)})

    def step(self, state, action):
        info = {**state.info, "features": action}
        return state.replace(reward=jnp.zeros(()), done=jnp.zeros(()), info=info)


def wants_target(x, z):
    """User ``z = (target, scale, offset)``: ``offset - scale * (x - target)²``."""
    return z[2] - z[1] * jnp.sum((x - z[0]) ** 2)


REFERENCE_ACTIONS = jnp.linspace(-1.0, 1.0, 65)[:, None]


def reference_rewards_of(z):
    return jax.vmap(wants_target, (0, None))(REFERENCE_ACTIONS, z)


def scaled_step_rewards(scaling, z, actions):
    """f32[A]: the rewards ``scaled_latent_reward`` gives user ``z`` for each action."""
    env = scaled_latent_reward(
        ActionFeatures(), constant_sampler(z), wants_target, "features", scaling,
        reference_rewards_of,
    )  # fmt: skip

    def reward(action):
        return env.step(env.reset(jax.random.PRNGKey(0)), action).reward

    return jax.jit(jax.vmap(reward))(actions)


def test_standardized_reward_ignores_each_users_scale_and_offset():
    """Two users who rank actions alike but whose rewards differ by a factor 100 and an
    offset get the same standardised reward: mean 0 and std 1 on the reference steps."""
    small, large = jnp.array([0.3, 0.1, 0.0]), jnp.array([0.3, 10.0, 5.0])
    for scaling in ("standardize", "minmax"):  # both invariant to scale and offset
        np.testing.assert_allclose(
            scaled_step_rewards(scaling, small, REFERENCE_ACTIONS),
            scaled_step_rewards(scaling, large, REFERENCE_ACTIONS),
            atol=1e-4,
        )
    on_references = scaled_step_rewards("standardize", small, REFERENCE_ACTIONS)
    np.testing.assert_allclose([on_references.mean(), on_references.std()], [0.0, 1.0], atol=1e-4)
    raw_small = scaled_step_rewards("none", small, REFERENCE_ACTIONS)
    np.testing.assert_allclose(raw_small, reference_rewards_of(small), rtol=1e-6)
    raw_large = scaled_step_rewards("none", large, REFERENCE_ACTIONS)
    np.testing.assert_allclose(np.ptp(raw_large), 100 * np.ptp(raw_small), rtol=1e-4)  # unscaled
    with pytest.raises(ValueError, match=r"scaling='zscore'.*standardize"):
        scaled_latent_reward(ActionFeatures(), constant_sampler(small), wants_target, "features",
                             "zscore", reference_rewards_of)  # fmt: skip
    with pytest.raises(ValueError, match="needs reference_rewards"):
        scaled_latent_reward(ActionFeatures(), constant_sampler(small), wants_target, "features",
                             "standardize")  # fmt: skip


@pytest.mark.slow
def test_standardized_rewards_serve_a_user_whose_rewards_are_small():
    """Half the users want action -0.6 with rewards 100 times larger than the other half's,
    who want +0.6. On raw rewards PPO serves the loud half and hardly moves for the quiet one
    (its advantages vanish beside the others' in every minibatch); standardised per user, both
    are served (3 seeds)."""
    table = jnp.asarray([[-0.6, 10.0, 0.0], [0.6, 0.1, 0.0]])
    config = PPOConfig(total_timesteps=64 * 4 * 8, num_envs=64, num_steps=4, init_log_std=-1.0)
    errors = {}
    for scaling in ("none", "standardize"):
        env = scaled_latent_reward(
            ActionFeatures(), table_sampler(table), wants_target, "features", scaling,
            reference_rewards_of,
        )  # fmt: skip
        ppo = make_train(env, config)
        states, _ = jax.jit(jax.vmap(ppo.train))(jax.random.split(jax.random.PRNGKey(0), 3))

        def action_error(state, ppo=ppo):
            policy = ppo.policy_params(state)
            act = jax.vmap(lambda z: ppo.act(policy, jnp.concatenate([jnp.zeros(1), z])))
            return jnp.abs(act(table)[:, 0] - table[:, 0])

        errors[scaling] = np.asarray(jax.vmap(action_error)(states)).mean(0)  # [loud, quiet]
    assert errors["standardize"][1] < 0.5 * errors["none"][1], errors  # the quiet user
    assert errors["standardize"][0] < errors["none"][0] + 0.05, errors  # the loud one as well


# --- acting on a latent, and chunked training ----------------------------------------------------
@pytest.mark.slow  # 35 s / 2 min on 2 busy cores (navigation rollouts, three PPO compiles)
def test_latent_episode_acts_on_the_observation_with_z_appended(navigation):
    """One episode of ``act(params, [obs, z], key)``: what a hand-written behaviour policy with
    the latent appended does, step for step, and evaluate's deterministic episodes score it."""
    from vpl_jax.data.rollouts import rollout_episode
    from vpl_jax.envs.base import BehaviourPolicy
    from vpl_jax.policies import evaluate, latent_episode

    obs_size = navigation.observation_size
    w = jax.random.normal(jax.random.PRNGKey(1), (2, obs_size + 3))
    z = jnp.array([0.5, -1.0, 2.0])
    key = jax.random.PRNGKey(2)

    def act(params, obs, k):
        assert obs.shape == (obs_size + 3,)
        return jnp.tanh(params @ obs + 0.1 * jax.random.normal(k, (2,)))

    by_hand = BehaviourPolicy(
        init=lambda k: None, act=lambda _, s, k: act(w, jnp.concatenate([s.obs, z]), k)
    )
    final, traj = jax.jit(lambda k: latent_episode(navigation, act, w, z, k))(key)
    final_ref, traj_ref = jax.jit(lambda k: rollout_episode(navigation, by_hand, k, 40))(key)
    chex.assert_trees_all_equal(traj, traj_ref)
    chex.assert_trees_all_equal(final.obs, final_ref.obs)
    other, _ = jax.jit(lambda k: latent_episode(navigation, act, w, -z, k))(key)
    assert not np.allclose(final.obs, other.obs)  # z is read

    # evaluate's episodes are latent episodes of the deterministic act, from shared starts.
    deterministic = lambda params, obs: jnp.tanh(params @ obs)  # noqa: E731
    theta = jnp.ones((1, navigation.num_features))
    result = evaluate(navigation, deterministic, w, z[None], theta, key, 2)
    k_episode = jax.random.split(key, 2)[1]
    _, traj = jax.jit(
        lambda k: latent_episode(navigation, lambda p, o, _: deterministic(p, o), w, z, k)
    )(k_episode)
    np.testing.assert_allclose(result.episode_true_return[0, 1], traj.features.sum(0) @ theta[0],
                               rtol=1e-6)  # fmt: skip


@pytest.mark.slow  # 35 s / 2 min on 2 busy cores (navigation rollouts, three PPO compiles)
def test_train_ppo_in_chunks_equals_one_run_and_stops_at_a_diverged_loss(navigation):
    from vpl_jax.policies import TrainingDivergedError, train_ppo

    ppo = make_train(navigation, TINY)
    key = jax.random.PRNGKey(3)
    state, history = train_ppo(ppo, key, TINY.num_updates, chunk_size=1)
    whole, metrics = jax.jit(ppo.train_chunk, static_argnums=1)(
        jax.jit(ppo.init)(key), TINY.num_updates
    )
    chex.assert_trees_all_equal(state.params, whole.params)
    chex.assert_trees_all_equal(history["policy_loss"], np.asarray(metrics["policy_loss"]))
    assert history["policy_loss"].shape[0] == TINY.num_updates
    wild = make_train(navigation, dataclasses.replace(TINY, learning_rate=1e30))
    with pytest.raises(TrainingDivergedError, match="PPO diverged"):
        train_ppo(wild, key, TINY.num_updates, chunk_size=1)
