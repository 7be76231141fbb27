"""Nash learning in control: the preference model, mixed policies, Nash-MD on PPO, offline
DPO/IPO, the population evaluation and the experiment's config checks.

The closed forms (Gaussian geometric mixture, tabular Nash-MD, DPO/IPO losses by hand) are in
``tests/test_nash_core.py``; here are the learned and control-side pieces, at toy sizes.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State

from vpl_jax import nash as N
from vpl_jax import policies as P
from vpl_jax import rewards as R
from vpl_jax.nash.matrix_game import exploitability as table_exploitability
from vpl_jax.rewards.batch import PairBatch, SegmentBank, UserPairs

CYCLIC = jnp.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])  # 0 ≻ 1 ≻ 2 ≻ 0


# --- the preference model ---------------------------------------------------------------------
def random_batch(key, shape=(3, 5), horizon=4, dim=6) -> PairBatch:
    k = jax.random.split(key, 4)
    return PairBatch(
        inputs_a=jax.random.normal(k[0], (*shape, horizon, dim)),
        inputs_b=jax.random.normal(k[1], (*shape, horizon, dim)),
        alive_a=jax.random.bernoulli(k[2], 0.8, (*shape, horizon)).at[..., 0].set(True),
        alive_b=jax.random.bernoulli(k[3], 0.8, (*shape, horizon)).at[..., 0].set(True),
        labels=jnp.full(shape, 1.0),
        mask=jnp.ones(shape, bool),
    )


@pytest.mark.parametrize("latent_dim", [0, 3])
def test_preference_model_is_antisymmetric_for_any_params(latent_dim):
    model = N.PreferenceModel(hidden=(16, 16), embed_dim=8, latent_dim=latent_dim)
    batch = random_batch(jax.random.PRNGKey(0))
    for seed in range(3):
        params = model.init(jax.random.PRNGKey(seed), batch)
        z_key = jax.random.PRNGKey(10 + seed)
        z = jax.random.normal(z_key, (3, latent_dim)) if latent_dim else None
        p_ab = jax.nn.sigmoid(model.pair_logits(params, batch, z))
        p_ba = jax.nn.sigmoid(model.pair_logits(params, batch.swapped(), z))
        p_aa = jax.nn.sigmoid(model.pair_logits(params, batch.replace(
            inputs_b=batch.inputs_a, alive_b=batch.alive_a), z))  # fmt: skip
        np.testing.assert_allclose(p_ab + p_ba, 1.0, atol=1e-6)
        np.testing.assert_allclose(p_aa, 0.5, atol=1e-6)
        assert float(jnp.std(p_ab)) > 1e-4  # not trivially 1/2 everywhere


def test_win_probability_is_the_mean_pairwise_preference():
    model = N.PreferenceModel(hidden=(16,), embed_dim=4)
    batch = random_batch(jax.random.PRNGKey(1), shape=(1,))
    params = model.init(jax.random.PRNGKey(0), batch)
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 4, 6))
    y = jax.random.normal(jax.random.PRNGKey(3), (7, 4, 6))
    alive_x, alive_y = jnp.ones((5, 4), bool), jnp.ones((7, 4), bool)
    win = model.win_probability(params, x, alive_x, y, alive_y)
    pairwise = jax.nn.sigmoid(
        model.logit(params, x[:, None], alive_x[:, None], y[None], alive_y[None])
    )
    np.testing.assert_allclose(win, pairwise.mean(1), atol=1e-6)
    # Against itself, a set of trajectories wins exactly half the time on average.
    np.testing.assert_allclose(model.win_probability(params, x, alive_x, x, alive_x).mean(), 0.5,
                               atol=1e-6)  # fmt: skip


def cyclic_pairs(key, num_users=24, pairs_per_user=48, noise=0.3) -> UserPairs:
    """Segments (one step, 2-D) near three points; labels follow the cycle 0 ≻ 1 ≻ 2 ≻ 0
    (same-cluster pairs are unlabelled)."""
    k_seg, k_pairs = jax.random.split(key)
    centres = jnp.array([[1.0, 0.0], [-0.5, 0.87], [-0.5, -0.87]])
    per_cluster = 64
    cluster = jnp.repeat(jnp.arange(3), per_cluster)
    x = centres[cluster] + noise * jax.random.normal(k_seg, (3 * per_cluster, 2))
    bank = SegmentBank(inputs=x[:, None, :], alive=jnp.ones((3 * per_cluster, 1), bool), kind="obs")
    pairs = jax.random.randint(k_pairs, (num_users, pairs_per_user, 2), 0, 3 * per_cluster)
    ca, cb = cluster[pairs[..., 0]], cluster[pairs[..., 1]]
    labels = CYCLIC[ca, cb]
    return UserPairs(
        bank=bank,
        pairs=pairs,
        labels=labels,
        mask=ca != cb,
        type_id=jnp.zeros(num_users, jnp.int32),
        type_names=("cyclic",),
    )


@pytest.mark.slow
def test_preference_model_learns_a_cycle_that_bradley_terry_cannot():
    train = cyclic_pairs(jax.random.PRNGKey(0))
    test = cyclic_pairs(jax.random.PRNGKey(1), num_users=8)
    config = R.TrainConfig(num_epochs=60, users_per_batch=8, learning_rate=3e-3)
    accuracy = {}
    models = {
        "preference": N.PreferenceModel(hidden=(32, 32), embed_dim=8),
        "btl": R.make_model("btl", R.ModelSizes(hidden=(32, 32), inputs="obs")),
    }
    for name, model in models.items():
        params, _ = R.fit(model, config, jax.random.PRNGKey(2), train)
        batch = test.batch()
        logits = model.predict(params, batch, batch)
        correct = (logits > 0) == (batch.labels > 0.5)
        accuracy[name] = float(jnp.sum(correct & batch.mask) / jnp.sum(batch.mask))
    # A transitive score gets at most two of the three cyclic comparisons right.
    assert accuracy["preference"] >= 0.9, accuracy
    assert accuracy["btl"] <= 0.75, accuracy
    assert accuracy["preference"] - accuracy["btl"] >= 0.2, accuracy


def test_preference_model_rejects_bad_fields():
    with pytest.raises(ValueError, match="embed_dim"):
        N.PreferenceModel(embed_dim=0)
    with pytest.raises(ValueError, match="max_context"):
        N.PreferenceModel(latent_dim=2, min_context=4, max_context=2)


# --- mixed policies ---------------------------------------------------------------------------
def test_geometric_mixture_of_tanh_gaussians_is_the_squashed_mixture():
    """Squashing leaves the geometric mixture in closed form: the Jacobians enter with total
    power one, so the normalised product of the two squashed densities on (-1, 1) is the density
    of tanh of the Gaussian mixture."""
    a = np.linspace(-1 + 1e-6, 1 - 1e-6, 400_001)
    da = a[1] - a[0]
    u = np.arctanh(a)
    m1, s1, m2, s2, beta = 0.4, 0.7, -1.2, 0.3, 0.35

    def squashed(m, s):
        return np.exp(-0.5 * ((u - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)) / (1 - a**2)

    product = squashed(m1, s1) ** (1 - beta) * squashed(m2, s2) ** beta
    product /= product.sum() * da
    mean, std = (float(v) for v in N.geometric_mixture(m1, s1, m2, s2, beta))
    np.testing.assert_allclose(product, squashed(mean, std), rtol=2e-3, atol=1e-3)


def test_trajectory_log_prob_integrates_the_noise_input():
    config = P.PPOConfig(hidden_sizes=(8,))
    network = N.policy_network(config, 2)
    obs = jax.random.normal(jax.random.PRNGKey(0), (4, 5, 3))
    params = network.init(jax.random.PRNGKey(1), jnp.zeros(3 + 2))
    u = jax.random.normal(jax.random.PRNGKey(2), (4, 5, 2))
    alive = jnp.ones((4, 5), bool).at[0, 3:].set(False)
    nodes = N.noise_nodes(6)
    got = N.trajectory_log_prob(network, params, obs, u, alive, nodes)

    def per_node(eps):
        x = jnp.concatenate([obs, jnp.broadcast_to(eps, (4, 5, 2))], -1)
        lp = N.gaussian_log_prob(*N.gaussian(network, params, x), u)
        return jnp.sum(jnp.where(alive, lp, 0.0), -1)

    expected = jnp.log(jnp.mean(jnp.exp(jnp.stack([per_node(e) for e in nodes])), 0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="num_nodes"):
        N.noise_nodes(0)
    # With a lottery's weights it is the mixture likelihood log sum_k w_k pi(tau | eps_k).
    log_w = jax.nn.log_softmax(jnp.arange(6.0))
    got = N.trajectory_log_prob(network, params, obs, u, alive, nodes, log_w)
    per = jnp.stack([per_node(e) for e in nodes])
    expected = jnp.log(jnp.sum(jnp.exp(log_w)[:, None] * jnp.exp(per), 0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_stratified_modes_follow_the_lottery_and_modes_are_recovered_from_noise():
    log_w = jnp.log(jnp.array([0.5, 0.25, 0.0, 0.25]))
    modes = N.stratified_modes(log_w, 400)
    np.testing.assert_array_equal(jnp.bincount(modes, length=4), [200, 100, 0, 100])
    nodes = N.noise_nodes(4)
    np.testing.assert_array_equal(N.mode_of(nodes[modes], nodes), modes)


# --- Nash-MD on PPO, on a one-step three-outcome game ----------------------------------------
class ChoiceEnv(Env):
    """One step: the action's direction picks outcome 0, 1 or 2 (three 120° sectors, so each
    outcome borders both others, as the goals of a cyclic game should); the observation after
    the step is the action."""

    episode_length = 1

    def reset(self, rng):
        del rng
        zero = jnp.zeros(())
        return State(None, jnp.zeros(2), zero, zero, {}, {})

    def step(self, state, action):
        return state.replace(obs=action, reward=jnp.zeros(()), done=jnp.zeros(()))

    @property
    def observation_size(self):
        return 2

    @property
    def action_size(self):
        return 2

    @property
    def backend(self):
        return "none"


def outcome(action):
    """i32[...]: the sector of ``action: f32[..., 2]`` (sector 0 centred on the -x axis, then
    counter-clockwise)."""
    angle = jnp.mod(jnp.arctan2(action[..., 1], action[..., 0]) - 2 * jnp.pi / 3, 2 * jnp.pi)
    return jnp.minimum(jnp.floor(angle / (2 * jnp.pi / 3)).astype(jnp.int32), 2)


@dataclasses.dataclass(frozen=True)
class CyclicPreference:
    """A known (not learned) preference over episodes: the cyclic table on their outcomes."""

    latent_dim: int = 0
    inputs: str = "obs"

    def win_probability(self, params, x, alive, x_opponents, alive_opponents, weights=None):
        del params, alive, alive_opponents
        mine, theirs = outcome(x[:, -1]), outcome(x_opponents[:, -1])
        table = CYCLIC[mine[:, None], theirs[None, :]]
        return table.mean(-1) if weights is None else table @ weights


@dataclasses.dataclass(frozen=True)
class OutcomeReward:
    """A known (not learned) reward model on observations: 1 for outcome 1, else 0."""

    inputs: str = "obs"

    def reward(self, params, x, z=None):
        del params, z
        return (outcome(x) == 1).astype(jnp.float32)


SECTOR_CENTRES = jnp.array([jnp.pi, 5 * jnp.pi / 3, jnp.pi / 3])  # of outcomes 0, 1, 2
REFERENCE_OUTCOMES = jnp.array([0, 0, 0, 0, 1, 2])  # of the reference's six modes


def shares_of(network, params, log_weights, key, n=4096):
    """Outcome shares of the lottery ``(params, log_weights)`` over its modes."""
    nodes = N.noise_nodes(log_weights.shape[0])
    eps = nodes[N.stratified_modes(log_weights, n)]
    obs = jnp.concatenate([jnp.zeros((n, 2)), eps], -1)
    mean, std = N.gaussian(network, params, obs)
    a = jnp.tanh(mean + std * jax.random.normal(key, mean.shape))
    return jnp.bincount(outcome(a), length=3) / n


@pytest.fixture(scope="module")
def choice_game():
    env = ChoiceEnv()
    ppo_config = N.nash_ppo_config(
        P.PPOConfig(
            total_timesteps=64 * 800,
            num_envs=64,
            num_minibatches=2,
            hidden_sizes=(16, 16),
            learning_rate=3e-3,
            gamma=1.0,
            init_log_std=-0.5,
        ),
        env.episode_length,
    )
    network = N.policy_network(ppo_config, env.action_size)
    # The reference: a clone of noisy demonstrations whose outcome is set by the noise's arc,
    # REFERENCE_OUTCOMES of six equal arcs: outcome 0 two thirds of the time.
    k_init, k_demo, k_clone = jax.random.split(jax.random.PRNGKey(0), 3)
    eps = N.noise_nodes(600)
    arc = jnp.floor(N.noise_angle(eps) / (2 * jnp.pi) * 6).astype(jnp.int32)
    direction = N.on_circle(SECTOR_CENTRES[REFERENCE_OUTCOMES[jnp.clip(arc, 0, 5)]])
    u = 0.8 * direction + 0.2 * jax.random.normal(k_demo, direction.shape)
    obs = jnp.concatenate([jnp.zeros((600, 2)), eps], -1)
    params = network.init(k_init, obs[0])
    reference, _ = N.clone(network, params, obs, u, N.CloneConfig(num_steps=500), k_clone)
    return env, ppo_config, network, reference


@pytest.mark.slow
def test_nash_md_on_ppo_finds_the_cycle_lottery_from_a_one_sided_reference(choice_game):
    env, ppo_config, network, reference = choice_game
    uniform = N.uniform_log_weights(6)
    start = shares_of(network, reference, uniform, jax.random.PRNGKey(1))
    np.testing.assert_allclose(start, [4 / 6, 1 / 6, 1 / 6], atol=0.03)
    config = N.NashConfig(mixture=0.02, kl_coef=0.04, num_modes=6, num_opponents=60)
    ppo = N.make_nash_md(env, CyclicPreference(), None, reference, ppo_config, config)
    state, metrics = jax.jit(ppo.train)(jax.random.PRNGKey(2))
    params, log_weights = N.lottery(state)
    final = shares_of(network, params, log_weights, jax.random.PRNGKey(1))
    before = float(table_exploitability(CYCLIC, start))
    after = float(table_exploitability(CYCLIC, final))
    assert before > 0.45, (start, before)  # outcome 2 beats it by 0.5
    assert after <= 0.1, (final, after)
    assert set(metrics) >= {"win_probability", "kl", "mode_kl", "max_mode_weight"}
    assert float(metrics["kl"][-1]) > 0.0
    # Self-play (the opponent is the current policy, no pull to the reference) keeps cycling:
    # its last iterates stay far from the lottery.
    ppo = N.make_nash_md(env, CyclicPreference(), None, reference, ppo_config, N.self_play(config))
    state, _ = jax.jit(ppo.train)(jax.random.PRNGKey(2))
    params, log_weights = N.lottery(state)
    final = shares_of(network, params, log_weights, jax.random.PRNGKey(1))
    assert float(table_exploitability(CYCLIC, final)) > 0.3, final


def test_rlhf_on_the_lottery_moves_to_the_rewarded_outcome(choice_game):
    """KL-regularised RL from the reference on a reward (the RLHF step) re-weights the modes
    towards the outcome the reward prefers, here outcome 1, which the reference picks 1/6 of
    the time."""
    env, ppo_config, network, reference = choice_game
    config = N.NashConfig(mixture=0.02, kl_coef=0.04, num_modes=6, num_opponents=6)
    ppo = N.make_rlhf(env, OutcomeReward(), None, reference, ppo_config, config)
    state, metrics = jax.jit(ppo.train)(jax.random.PRNGKey(3))
    params, log_weights = N.lottery(state)
    final = shares_of(network, params, log_weights, jax.random.PRNGKey(1))
    assert float(final[1]) > 0.8, final
    assert float(metrics["episode_score"][-1]) > float(metrics["episode_score"][0]) + 0.5


def test_lottery_ppos_with_other_params_share_one_compiled_update(choice_game):
    """The reference's and the score's params travel in the runner state: two RLHF PPOs of one
    model and config with other params (another population's reward, another reference) run
    the same compiled update, each with its own params."""
    env, ppo_config, _, reference = choice_game
    config = N.NashConfig(mixture=0.02, kl_coef=0.04, num_modes=6, num_opponents=6)
    other = jax.tree.map(lambda x: x + 0.1, reference)
    a = N.make_rlhf(env, OutcomeReward(), None, reference, ppo_config, config)
    b = N.make_rlhf(env, OutcomeReward(), None, other, ppo_config, config, scale=0.0)
    assert a.train_chunk is b.train_chunk
    nash = N.make_nash_md(env, CyclicPreference(), None, reference, ppo_config, config)
    assert nash.train_chunk is N.make_nash_md(env, CyclicPreference(), None, other, ppo_config,
                                              config).train_chunk  # fmt: skip
    step = jax.jit(a.train_chunk, static_argnums=1)
    key = jax.random.PRNGKey(4)
    state_a, metrics_a = step(a.init(key), 1)
    state_b, metrics_b = step(b.init(key), 1)
    assert step._cache_size() == 1
    chex.assert_trees_all_equal(state_b.hook_state.reference, other)
    assert float(state_a.hook_state.scored[0]) == 1.0
    # b's reward is scaled to 0: every episode scores 0; a's reward pays outcome 1's episodes.
    assert float(jnp.abs(metrics_b["episode_score"]).max()) == 0.0
    assert float(metrics_a["episode_score"][0]) > 0.05


@dataclasses.dataclass(frozen=True)
class LatentFirstFeature:
    """A known latent reward: ``z[0] * obs[0]`` per step."""

    inputs: str = "obs"

    def reward(self, params, x, z):
        del params
        return x[..., 0] * z[..., 0]


def test_latent_lotteries_give_each_user_the_modes_their_reward_prefers():
    """Three modes whose rollouts score -1, 0, +1 per step on feature 0 (with per-rollout
    spread): a user with z > 0 puts the most weight on mode 2, one with z < 0 on mode 0; the
    weights are the reference's uniform ones tilted by the scaled returns over kl_coef, and a
    large kl_coef keeps the reference's; episode n goes to user n mod U."""
    level = jnp.array([-1.0, 0.0, 1.0])[:, None, None, None]  # [K, 1, 1, 1]
    spread = jnp.linspace(-0.1, 0.1, 4)[None, :, None, None]  # [1, M, 1, 1]
    obs = jnp.broadcast_to(level + spread, (3, 4, 5, 2))  # [K, M, T, O]
    z = jnp.array([[1.0], [-2.0]])
    log_w = N.latent_lotteries(LatentFirstFeature(), None, z, obs, 0.05, 0.2)
    w = np.exp(np.asarray(log_w))
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert w[0].argmax() == 2 and w[1].argmax() == 0
    returns = np.asarray(obs[..., 0].sum(-1))  # [K, M] per rollout, for z = 1
    scale = 0.2 / returns.std()  # the per-user scale: the spread of z * returns is |z| times
    expected = np.exp(returns.mean(-1) * scale / 0.05)
    np.testing.assert_allclose(w[0], expected / expected.sum(), rtol=1e-4)
    np.testing.assert_allclose(w[1], expected[::-1] / expected.sum(), rtol=1e-4)
    flat = np.exp(np.asarray(N.latent_lotteries(LatentFirstFeature(), None, z, obs, 1e6, 0.2)))
    np.testing.assert_allclose(flat, 1 / 3, atol=1e-5)
    latents = N.user_lottery_latents(log_w, jax.random.PRNGKey(0))(400)
    modes = np.asarray(N.mode_of(latents, N.noise_nodes(3)))
    assert (modes[0::2] == 2).mean() > 0.9 and (modes[1::2] == 0).mean() > 0.9


class ChoiceTask(ChoiceEnv):
    """:class:`ChoiceEnv` with what recorded rollouts read: the action as the step's features
    and the observation as the position."""

    def reset(self, rng):
        return super().reset(rng).replace(info={"features": jnp.zeros(2)})

    def step(self, state, action):
        return super().step(state, action).replace(info={"features": action})

    def position(self, state):
        return state.obs


def test_vpl_lotteries_are_latent_lotteries_of_the_reference_modes_rollouts(choice_game):
    """On the one-step game the reference's modes 0-3 go to outcome 0 (x < 0) and modes 4, 5 to
    outcomes 1 and 2 (x > 0): under the latent reward ``z * x`` a user with z > 0 weights modes
    4, 5 most, one with z < 0 modes 0-3; the weights are :func:`latent_lotteries` of
    :func:`mode_rollouts` with the first half of the split key, the episodes' modes drawn with
    the second half."""
    _, _, network, reference = choice_game
    env, z, key = ChoiceTask(), jnp.array([[1.0], [-1.0]]), jax.random.PRNGKey(5)
    log_w, latents = N.vpl_lotteries(env, network, reference, LatentFirstFeature(), None, z,
                                     6, 8, 0.05, 0.2, key)  # fmt: skip
    assert log_w.shape == (2, 6)
    w = np.exp(np.asarray(log_w))
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert w[0, 4:].sum() > 0.9 and w[1, :4].sum() > 0.9, w
    k_roll, k_modes = jax.random.split(key)
    obs = N.mode_rollouts(env, network, reference, 6, 8, k_roll)
    expected = N.latent_lotteries(LatentFirstFeature(), None, z, obs, 0.05, 0.2)
    np.testing.assert_allclose(log_w, expected, rtol=1e-6)
    np.testing.assert_array_equal(latents(10), N.user_lottery_latents(log_w, k_modes)(10))
    modes = np.asarray(N.mode_of(latents(400), N.noise_nodes(6)))
    assert (modes[0::2] >= 4).mean() > 0.9 and (modes[1::2] < 4).mean() > 0.9


@pytest.mark.slow  # 19 s in the fast tier on 2 cores (2026-12-07)
def test_train_lottery_returns_the_learned_lottery_of_a_chunked_run(choice_game):
    env, ppo_config, _, reference = choice_game
    config = N.NashConfig(mixture=0.02, kl_coef=0.04, num_modes=6, num_opponents=6)
    ppo = N.make_rlhf(env, OutcomeReward(), None, reference, ppo_config, config)
    key = jax.random.PRNGKey(6)
    (params, log_weights), history = N.train_lottery(ppo, key, 3, 2)
    assert history["episode_score"].shape[0] == 3
    assert log_weights.shape == (6,)
    np.testing.assert_allclose(jax.nn.logsumexp(log_weights), 0.0, atol=1e-5)
    assert not np.allclose(log_weights, N.uniform_log_weights(6))  # the modes were re-weighted
    # The same numbers as one chunk of all three updates.
    state, metrics = jax.jit(ppo.train_chunk, static_argnums=1)(ppo.init(key), 3)
    chex.assert_trees_all_close((params, log_weights), N.lottery(state), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history["episode_score"], metrics["episode_score"], rtol=1e-5)


def test_make_nash_md_rejects_configs_it_cannot_run(choice_game):
    env, ppo_config, _, reference = choice_game
    bad = dataclasses.replace(ppo_config, num_steps=2 * env.episode_length)
    with pytest.raises(ValueError, match="num_steps"):
        N.make_nash_md(env, CyclicPreference(), None, reference, bad)
    bad = dataclasses.replace(ppo_config, normalize_observations=True)
    with pytest.raises(ValueError, match="normalize_observations"):
        N.make_nash_md(env, CyclicPreference(), None, reference, bad)
    with pytest.raises(ValueError, match="mixture"):
        N.make_nash_md(env, CyclicPreference(), None, reference, ppo_config,
                       N.NashConfig(mixture=1.5))  # fmt: skip
    with pytest.raises(ValueError, match="latent_dim"):
        N.make_nash_md(env, N.PreferenceModel(latent_dim=2), None, reference, ppo_config)
    with pytest.raises(ValueError, match=r"make_rlhf needs .* got inputs='obs', latent_dim=2"):
        N.make_rlhf(env, N.PreferenceModel(latent_dim=2), None, reference, ppo_config)
    play = N.self_play(N.NashConfig(mixture=0.1, kl_coef=0.02))
    assert play.mixture == 0.0 and play.eta == pytest.approx(5.0)
    with pytest.raises(ValueError, match="num_opponents"):
        N.NashConfig(num_modes=8, num_opponents=4).validate()
    with pytest.raises(ValueError, match="step_size"):
        N.NashConfig(kl_coef=0.0).validate()


# --- offline DPO / IPO ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def direct_data():
    """Recorded 3-step trajectories whose actions are either mostly positive (preferred) or
    mostly negative; pairs compare one of each (in both orders)."""
    k_obs, k_act, k_init = jax.random.split(jax.random.PRNGKey(0), 3)
    s, t = 64, 3
    good = jnp.arange(s) % 2 == 0
    obs = jax.random.normal(k_obs, (s, t, 2))
    u = jnp.where(good[:, None, None], 0.5, -0.5) + 0.5 * jax.random.normal(k_act, (s, t, 1))
    actions = jnp.tanh(u)
    pairs = jnp.stack([jnp.arange(0, s, 2), jnp.arange(1, s, 2)], -1)  # (good, bad)
    pairs = jnp.concatenate([pairs, pairs[:, ::-1]])
    labels = jnp.concatenate([jnp.ones(s // 2), jnp.zeros(s // 2)])
    network = N.policy_network(P.PPOConfig(hidden_sizes=(16,)), 1)
    reference = network.init(k_init, jnp.zeros(2 + 2))
    return network, reference, obs, actions, jnp.ones((s, t), bool), pairs, labels


def margins(network, reference, policy, obs, actions, alive, pairs):
    params, log_weights = policy
    nodes = N.noise_nodes(log_weights.shape[0])
    u = N.pre_squash(actions)

    def lp(p, w):
        return N.trajectory_log_prob(network, p, obs, u, alive, nodes, w)

    ratio = lp(params, log_weights) - lp(reference, N.uniform_log_weights(nodes.shape[0]))
    return ratio[pairs[:, 0]] - ratio[pairs[:, 1]]


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_direct_preference_training_prefers_the_preferred(direct_data, loss):
    network, reference, obs, actions, alive, pairs, labels = direct_data
    config = N.DirectConfig(loss=loss, num_steps=200, pairs_per_batch=16, learning_rate=3e-3,
                            tau=0.5, beta=0.5, num_modes=8)  # fmt: skip
    mask = jnp.ones(len(labels), bool)
    policy, losses = N.train_direct(network, reference, obs, actions, alive, pairs, labels, mask,
                                    config, jax.random.PRNGKey(1))  # fmt: skip
    h = margins(network, reference, policy, obs, actions, alive, pairs[: len(pairs) // 2])
    # The run starts at the reference: margin 0, so DPO's loss is log 2 and IPO's 1/(2 tau)^2.
    start = np.log(2.0) if loss == "dpo" else 1.0
    np.testing.assert_allclose(losses[0], start, rtol=1e-4)
    assert float(losses[-20:].mean()) < float(losses[0]), losses
    assert float(jnp.median(h)) > 0.3, h
    if loss == "ipo":
        # IPO regresses the margin to 1/(2 tau) = 1 rather than pushing it to infinity.
        assert 0.5 < float(jnp.mean(h)) < 1.5, float(jnp.mean(h))


def test_train_direct_on_dataset_uses_the_training_users_pairs_of_recorded_segments(nav_dataset):
    network = N.policy_network(P.PPOConfig(hidden_sizes=(8,)), 2)
    obs_size = nav_dataset.segments.obs.shape[-1]
    reference = network.init(jax.random.PRNGKey(0), jnp.zeros(obs_size + 2))
    config = N.DirectConfig(num_steps=4, pairs_per_batch=8, num_modes=2)
    key = jax.random.PRNGKey(1)
    (params, log_weights), losses = N.train_direct_on_dataset(network, reference, nav_dataset,
                                                              config, key)  # fmt: skip
    assert losses.shape == (4,) and log_weights.shape == (2,)
    np.testing.assert_allclose(losses[0], np.log(2.0), rtol=1e-4)  # starts at the reference
    train, _ = nav_dataset.split()
    pairs = R.user_pairs(train, "all")
    assert pairs.pairs.shape[0] == train.num_users < nav_dataset.num_users  # no test user
    seg = nav_dataset.segments
    expected = N.train_direct(network, reference, seg.previous_obs, seg.actions, seg.alive,
                              pairs.pairs.reshape(-1, 2), pairs.labels.reshape(-1),
                              pairs.mask.reshape(-1), config, key)  # fmt: skip
    chex.assert_trees_all_equal(((params, log_weights), losses), expected)


# --- judging a policy by the population's true preferences ------------------------------------
def test_exploitability_of_lotteries_under_a_cyclic_population():
    # Three rational types, features = one-hot of the goal reached; type k ranks k > k+1 > k+2.
    theta = jnp.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.5, 0.0, 1.0]])
    shares = jnp.full(3, 1 / 3)
    n = 300
    goal_of = jnp.arange(n) % 3
    phi_pure = jnp.broadcast_to(jnp.eye(3)[:, None, :], (3, n, 3))

    def judge(outcome):
        phi = jnp.eye(3)[outcome]
        return (
            float(N.exploitability(theta, shares, phi, outcome, phi_pure)),
            np.asarray(N.type_win_rates(theta, phi, outcome, phi_pure)),
        )

    lottery, lottery_wins = judge(goal_of)
    np.testing.assert_allclose(lottery, 0.0, atol=1e-6)
    np.testing.assert_allclose(lottery_wins, 0.5, atol=1e-6)
    single, single_wins = judge(jnp.zeros(n, jnp.int32))
    np.testing.assert_allclose(single, 1 / 3, atol=1e-6)  # goal 2 beats goal 0 by 2 to 1
    np.testing.assert_allclose(single_wins, [5 / 6, 1 / 6, 1 / 2], atol=1e-6)
    margins = N.pure_strategy_margins(theta, shares, jnp.eye(3)[jnp.zeros(n, jnp.int32)],
                                      jnp.zeros(n, jnp.int32), phi_pure)  # fmt: skip
    np.testing.assert_allclose(margins, [0.0, -1 / 3, 1 / 3], atol=1e-6)


# --- the experiment's config checks (no compiling) ---------------------------------------------
@pytest.fixture(scope="module")
def experiment(load_experiment):
    return load_experiment("nash")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"methods": ("btl", "rlhf")}, "methods"),
        ({"cases": ("cyclic", "chaotic")}, "cases"),
        ({"reference_goals": "abd"}, "reference_goals"),
        ({"transitive_shares": (0.5, 0.5)}, "transitive_shares"),
        ({"num_eval_episodes": 0}, "num_eval_episodes"),
        ({"nash": N.NashConfig(num_opponents=0)}, "num_opponents"),
        ({"nash": N.NashConfig(num_modes=4)}, "num_modes"),
        ({"goal_episode_share": 1.5}, "goal_episode_share"),
        ({"rlhf_return_std": 0.0}, "rlhf_return_std"),
        ({"direct": N.DirectConfig(loss="kto")}, "loss"),
        ({"preference": N.PreferenceModel(latent_dim=2)}, "preference"),
    ],
)
def test_bad_experiment_config_fails_naming_the_field(experiment, changes, field):
    config = dataclasses.replace(experiment.PRESETS["cpu"], **changes)
    with pytest.raises(ValueError, match=field):
        config.validate()


def test_experiment_presets_validate(experiment):
    for config in experiment.PRESETS.values():
        config.validate()


def test_the_population_preference_model_has_no_latent_and_is_scored(nav_dataset):
    """Nash's population model (latent_dim=0) has a posterior method that raises; held-out
    scoring took it for a latent model and called it, so nash's cpu preset died in fit_models."""
    from vpl_jax import pipeline
    from vpl_jax import rewards as R

    model = N.PreferenceModel(hidden=(16,), embed_dim=4)
    assert not R.is_latent(model)
    assert R.is_latent(N.PreferenceModel(hidden=(16,), embed_dim=4, latent_dim=2))
    train = R.TrainConfig(num_epochs=2, users_per_batch=4)
    fit = pipeline.fit_reward(model, train, jax.random.PRNGKey(0), nav_dataset)
    assert np.isfinite(np.asarray(fit.evaluation.log_likelihood)).all()


# --- navigation's goal game: scripted goals, lotteries, the reference, scores --------------------
@pytest.fixture(scope="module")
def three_goals():
    from vpl_jax import envs

    return envs.make("navigation", num_goals=3)


@pytest.mark.slow  # navigation rollouts compile (1-3 min on 2 busy cores)
def test_scripted_goal_policies_reach_their_goal_and_stay(three_goals):
    from vpl_jax.data.rollouts import rollout_episode
    from vpl_jax.envs.navigation import goal_policy

    env = three_goals
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    _, outcome = N.pure_episodes(env, keys)
    np.testing.assert_array_equal(outcome, np.arange(3)[:, None].repeat(8, 1))

    def positions(k):
        return jnp.stack([rollout_episode(env, goal_policy(env, g), k, 40)[1].positions
                          for g in range(3)])  # fmt: skip

    positions = jax.jit(positions)(keys[0])
    # Within 15 of the 40 steps (0.6 m at up to 1 m/s, 0.1 s a step), and there to the end.
    dist = np.linalg.norm(np.asarray(positions) - np.asarray(env.goals)[:, None], axis=-1)
    assert (dist[:, 15:] < env.goal_radius).all(), dist


@pytest.mark.slow  # navigation rollouts compile (1-3 min on 2 busy cores)
def test_goal_data_policy_mixes_scripted_goal_runs_with_broad_behaviour(three_goals):
    from vpl_jax.data import collect
    from vpl_jax.envs.navigation import goal_data_policy

    env = three_goals

    def goal_ends(share):
        traj = collect(env, jax.random.PRNGKey(1), 96, policy=goal_data_policy(env, share))
        end = np.asarray(traj.positions[:, -1])
        dist = np.linalg.norm(end[:, None] - np.asarray(env.goals)[None], axis=-1)
        return np.where(dist.min(1) < env.goal_radius, dist.argmin(1), -1)

    scripted = goal_ends(1.0)
    assert np.mean(scripted >= 0) > 0.9  # noisy runs still end at their goal
    assert set(np.unique(scripted[scripted >= 0])) == {0, 1, 2}  # every goal, drawn uniformly
    assert np.mean(goal_ends(0.0) >= 0) < 0.6  # broad behaviour wanders


def test_lottery_latents_are_the_modes_noise_in_the_lottery_proportions():
    log_weights = jnp.log(jnp.array([0.5, 0.25, 0.25, 0.0]))
    latents = N.lottery_latents(log_weights)(8)
    assert latents.shape == (8, 2)
    np.testing.assert_allclose(jnp.linalg.norm(latents, axis=-1), 1.0, rtol=1e-6)
    modes = N.mode_of(latents, N.noise_nodes(4))
    np.testing.assert_array_equal(jnp.bincount(modes, length=4), [4, 2, 2, 0])
    np.testing.assert_allclose(latents, N.noise_nodes(4)[modes], atol=1e-7)


def test_network_act_is_one_function_per_network_drawing_the_squashed_gaussian():
    network = N.policy_network(P.PPOConfig(hidden_sizes=(8,)), 2)
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(4))
    act = N.network_act(network)
    assert N.network_act(network) is act  # jitted consumers keyed on act compile once
    obs, key = jnp.array([0.1, -0.2, 1.0, 0.0]), jax.random.PRNGKey(1)
    mean, std = N.gaussian(network, params, obs)
    np.testing.assert_allclose(
        act(params, obs, key), jnp.tanh(mean + std * jax.random.normal(key, (2,))), rtol=1e-6
    )


@pytest.mark.slow  # navigation rollouts compile (1-3 min on 2 busy cores)
def test_mode_rollouts_are_latent_episodes_of_each_mode(three_goals):
    env = three_goals
    network = N.policy_network(P.PPOConfig(hidden_sizes=(8,)), env.action_size)
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(env.observation_size + 2))
    key = jax.random.PRNGKey(2)
    obs = N.mode_rollouts(env, network, params, 3, 2, key)
    assert obs.shape == (3, 2, env.episode_length, env.observation_size)
    k = jax.random.split(key, 6)[2 * 1 + 1]  # mode 1, its second episode
    _, traj = jax.jit(
        lambda k: P.latent_episode(env, N.network_act(network), params, N.noise_nodes(3)[1], k)
    )(k)
    np.testing.assert_array_equal(obs[1, 1], traj.obs)


@pytest.mark.slow
def test_cloned_reference_follows_the_demonstrated_goal_of_each_noise_arc(three_goals):
    """Demonstrations (:func:`N.clone_reference`) go to goal a on the upper half of the noise
    circle and to goal c on the lower half; the clone's modes go where their arc's
    demonstrations went, and its likelihood of the demonstrated actions rises well above the
    untrained network's. Scored (:func:`N.score_policy`) by a population that wants goal a, the
    half of its episodes at goal c lose to the scripted goal a."""
    env = three_goals
    ppo_config = N.nash_ppo_config(P.PPOConfig(hidden_sizes=(32, 32)), env.episode_length)
    network, params, losses = N.clone_reference(
        env, (0, 2), 0.2, 64, ppo_config, N.CloneConfig(num_steps=400, batch_size=256),
        jax.random.PRNGKey(0),
    )  # fmt: skip
    assert float(losses[-50:].mean()) < float(losses[:10].mean()) - 1.0
    nodes = N.noise_nodes(4)  # two modes on each half
    latents = jnp.repeat(nodes, 8, axis=0)
    keys = jax.random.split(jax.random.PRNGKey(1), 32)
    act = N.network_act(network)
    phi, outcome = N.policy_episodes(env, act, params, latents, keys)
    wanted = np.where(np.asarray(latents[:, 1]) > 0, 0, 2)
    assert np.mean(np.asarray(outcome) == wanted) > 0.8
    theta = jnp.zeros((1, env.num_features)).at[0, 0].set(1.0)  # progress to goal a only
    pure = N.pure_episodes(env, keys)
    s = N.score_policy(env, act, params, latents, keys, theta, jnp.ones(1), pure, "abc")
    expected = N.policy_scores(theta, jnp.ones(1), phi, outcome, pure, "abc")
    assert s["goal_share"] == expected["goal_share"]
    assert s["goal_share"]["a"] == pytest.approx(np.mean(np.asarray(outcome) == 0))
    np.testing.assert_allclose(s["margin"], expected["margin"])
    assert s["exploitability"] == pytest.approx(s["margin"][0]) and s["margin"][0] > 0.3


def test_policy_scores_of_a_single_goal_policy():
    theta = jnp.eye(3)[jnp.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]])]
    theta = jnp.einsum("kgf,g->kf", theta, jnp.array([3.0, 2.0, 1.0]))  # type k ranks goals
    shares = jnp.full(3, 1 / 3)
    n = 6
    phi_pure = jnp.broadcast_to(jnp.eye(3)[:, None], (3, n, 3))
    outcome = jnp.array([0, 0, 0, 0, -1, -1])
    phi = jnp.where((outcome >= 0)[:, None], jnp.eye(3)[0], 0.0)
    s = N.policy_scores(theta, shares, phi, outcome, (phi_pure, None), ("a", "b", "c"))
    assert s["goal_share"] == pytest.approx({"a": 4 / 6, "b": 0.0, "c": 0.0, "none": 2 / 6})
    np.testing.assert_allclose(s["margin"], N.pure_strategy_margins(theta, shares, phi, outcome,
                                                                     phi_pure))  # fmt: skip
    assert s["exploitability"] == pytest.approx(float(np.max(s["margin"])))
    np.testing.assert_allclose(s["win_rate"], N.type_win_rates(theta, phi, outcome, phi_pure))
    rows = N.score_rows(s, ("a", "b", "c"), ("cycle_abc", "cycle_bca", "cycle_cab"))
    assert [r["metric"] for r in rows] == ["goal_share"] * 4 + ["margin"] * 3 + [
        "exploitability"] + ["win_rate"] * 3  # fmt: skip
    assert rows[0] == {"metric": "goal_share", "value": 4 / 6, "goal": "a"}
    assert rows[3] == {"metric": "goal_share", "value": 2 / 6, "goal": "none"}
    assert [r["goal"] for r in rows[4:7]] == ["a", "b", "c"]
    np.testing.assert_array_equal([r["value"] for r in rows[4:7]], s["margin"])
    assert rows[7] == {"metric": "exploitability", "value": s["exploitability"]}
    assert [r["user_type"] for r in rows[8:]] == ["cycle_abc", "cycle_bca", "cycle_cab"]
    np.testing.assert_array_equal([r["value"] for r in rows[8:]], s["win_rate"])


@pytest.mark.slow  # navigation rollouts compile (1-3 min on 2 busy cores)
def test_goal_preference_table_is_antisymmetric(three_goals):
    model = N.PreferenceModel(hidden=(8,), embed_dim=4)
    env = three_goals
    batch = random_batch(jax.random.PRNGKey(0), horizon=env.episode_length,
                         dim=env.observation_size)  # fmt: skip
    params = model.init(jax.random.PRNGKey(0), batch)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    table = N.goal_preference_table(env, model, params, keys)
    assert table.shape == (3, 3)
    np.testing.assert_allclose(table + table.T, 1.0, atol=1e-5)
    np.testing.assert_allclose(np.diag(table), 0.5, atol=1e-5)
    # Another model's params (another population's, as the Nash study's second case) reuse
    # the compiled rollouts and scoring.
    from vpl_jax.nash.evaluation import _goal_preferences

    before = _goal_preferences._cache_size()
    other = N.goal_preference_table(env, model, model.init(jax.random.PRNGKey(5), batch), keys)
    assert _goal_preferences._cache_size() == before and not np.allclose(other, table)
