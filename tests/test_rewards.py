"""Reward models without training: batches, likelihoods, the set encoder's symmetries, numerical
safety, reward scaling, LinearBayes' Laplace posterior, and input validation."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax import rewards as R
from vpl_jax.data import gather_features
from vpl_jax.rewards.base import input_statistics
from vpl_jax.rewards.batch import untyped
from vpl_jax.rewards.likelihood import bradley_terry_nll, cross_entropy, probit_log_probs

SMALL = {"hidden": (16, 16)}
SMALL_VPL = {"latent_dim": 3, "embed_dim": 16, "encoder_hidden": (16,), "decoder_hidden": (16,)}
MODELS = {
    "btl": R.BTL(**SMALL),
    "vpl": R.VPL(**SMALL_VPL),
    "vpl_attention": R.VPL(**SMALL_VPL, pooling="attention", num_heads=2),
    "vpl_basis": R.VPL(**SMALL_VPL, decoder="basis"),
    "dpl_mean_variance": R.DPLMeanVariance(**SMALL),
    "dpl_categorical": R.DPLCategorical(**SMALL, num_atoms=5),
    "ensemble": R.Ensemble(R.BTL(**SMALL), size=2),
    "linear_bayes": R.LinearBayes(),
}


def random_batch(key, shape=(2, 5), horizon=4, dim=3) -> R.PairBatch:
    """A PairBatch[*shape] of Gaussian inputs with random labels in {0, 0.5, 1}."""
    ks = jax.random.split(key, 4)
    inputs = jax.random.normal(ks[0], (2, *shape, horizon, dim))
    alive = jax.random.uniform(ks[1], (2, *shape, horizon)) < 0.9
    labels = jax.random.randint(ks[2], shape, 0, 3) / 2.0
    return R.PairBatch(
        inputs_a=inputs[0],
        inputs_b=inputs[1],
        alive_a=alive[0],
        alive_b=alive[1],
        labels=labels,
        mask=jax.random.uniform(ks[3], shape) < 0.8,
    )


def init(model, batch: R.PairBatch, seed: int = 0):
    """The model's params (init under jit: much faster than op-by-op on CPU)."""
    return jax.jit(model.init)(jax.random.PRNGKey(seed), batch)


def take_pairs(batch: R.PairBatch, index) -> R.PairBatch:
    """The batch restricted to some pairs (index along the Q axis)."""
    return jax.tree.map(lambda x: jnp.take(x, jnp.asarray(index), axis=1), batch)


def random_user_pairs(key, num_users=7, num_pairs=6, kind=R.DEFAULT_INPUTS) -> R.UserPairs:
    """UserPairs over a random bank, every pair labelled, labels in {0, 1}; two user types."""
    ks = jax.random.split(key, 4)
    bank = R.SegmentBank(
        inputs=jax.random.normal(ks[0], (40, 4, 3)),
        alive=jax.random.uniform(ks[1], (40, 4)) < 0.9,
        kind=kind,
    )
    return R.UserPairs(
        bank=bank,
        pairs=jax.random.randint(ks[2], (num_users, num_pairs, 2), 0, 40),
        labels=jax.random.randint(ks[3], (num_users, num_pairs), 0, 2).astype(jnp.float32),
        mask=jnp.ones((num_users, num_pairs), bool),
        type_id=jnp.arange(num_users) % 2,
        type_names=("a", "b"),
    )


# --- batches -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pair_batch_gathers_the_datasets_segments(nav_dataset):
    batch = jax.jit(R.pair_batch, static_argnames="inputs")(
        nav_dataset, nav_dataset.context, inputs="features"
    )
    fa, fb = gather_features(nav_dataset.segments, nav_dataset.context.pairs)
    chex.assert_trees_all_equal((batch.inputs_a, batch.inputs_b), (fa, fb))
    chex.assert_trees_all_equal(batch.labels, nav_dataset.context.labels)
    transition = R.pair_batch(nav_dataset, nav_dataset.heldout)  # the default kind
    chex.assert_shape(transition.inputs_a, (16, 16, 10, 8 + 2 + 8))  # U, M, H, O + A + O
    seg = nav_dataset.segments
    a, b = nav_dataset.heldout.pairs[..., 0], nav_dataset.heldout.pairs[..., 1]
    expected = jnp.concatenate([seg.previous_obs, seg.actions, seg.obs], -1)
    chex.assert_trees_all_equal(
        (transition.inputs_a, transition.inputs_b), (expected[a], expected[b])
    )
    obs = R.pair_batch(nav_dataset, nav_dataset.heldout, "obs")
    chex.assert_shape(obs.inputs_a, (16, 16, 10, 8))  # U, M, H, O


def test_user_pairs_joins_context_and_heldout(nav_dataset):
    data = R.user_pairs(nav_dataset, "all", "obs_action")
    assert data.num_pairs == 8 + 16
    assert data.bank.input_dim == 8 + 2  # obs + action
    np.testing.assert_array_equal(data.pairs[:, 8:], nav_dataset.heldout.pairs)
    k3 = data.with_context_size(3)
    assert np.asarray(k3.mask[:, 3:]).sum() == 0


def test_validation_split_keeps_test_users_out(nav_dataset):
    fit_users, valid_users = R.validation_split(nav_dataset, 0.3)
    assert not np.any(np.asarray(fit_users.is_test)) and not np.any(np.asarray(valid_users.is_test))
    assert fit_users.num_users + valid_users.num_users == int((~nav_dataset.is_test).sum())
    assert set(np.asarray(valid_users.users.type_id)) == {0, 1}


def test_too_few_training_users_to_validate_is_an_error_naming_num_users(nav_dataset):
    """One training user per type (what DatasetConfig(num_users=4) gives two types): the error
    says why and what to change (it said only 'no user type has two or more training users')."""
    is_test, type_id = np.asarray(nav_dataset.is_test), np.asarray(nav_dataset.users.type_id)
    first_train = [int(np.flatnonzero(~is_test & (type_id == t))[0]) for t in (0, 1)]
    few = nav_dataset.select_users(np.concatenate([first_train, np.flatnonzero(is_test)]))
    with pytest.raises(ValueError, match=r"per type \{'goal_a': 1, 'goal_b': 1\}.*num_users"):
        R.validation_split(few)


def test_sampled_contexts_are_random_subsets_of_the_labelled_pairs():
    from vpl_jax.rewards.base import sample_context

    batch = random_batch(jax.random.PRNGKey(20), shape=(64, 12))
    context = jax.jit(sample_context, static_argnums=(2, 3))(jax.random.PRNGKey(21), batch, 2, 5)
    chex.assert_shape(context.labels, (64, 5))  # only max_size pairs are gathered
    sizes = np.asarray(context.mask.sum(-1))
    labelled = np.asarray(batch.mask.sum(-1))
    assert np.all(sizes == np.clip(sizes, np.minimum(2, labelled), np.minimum(5, labelled)))
    assert len(set(sizes.tolist())) >= 3  # the size varies per user
    x_a, chosen = np.asarray(batch.inputs_a), np.asarray(context.inputs_a)
    for u in range(64):
        for k in np.flatnonzero(np.asarray(context.mask[u])):
            (match,) = np.flatnonzero((x_a[u] == chosen[u, k]).all(axis=(-2, -1)))
            assert batch.mask[u, match]  # a labelled pair of the same user


def test_sampled_context_size_is_uniform_up_to_the_users_labelled_pairs():
    from vpl_jax.rewards.base import sample_context

    users = 6000
    batch = random_batch(jax.random.PRNGKey(22), shape=(users, 10))
    # Users labelled all 10 pairs, 3 of them (fewer than K' = 8) or 1 (fewer than min_size).
    labelled = np.array([10, 3, 1])[np.arange(users) % 3]
    batch = batch.replace(mask=jnp.arange(10) < labelled[:, None])
    context = jax.jit(sample_context, static_argnums=(2, 3))(jax.random.PRNGKey(23), batch, 2, 8)
    sizes = np.asarray(context.mask.sum(-1))
    for n, allowed in ((10, range(2, 9)), (3, range(2, 4)), (1, [1])):
        counts = np.bincount(sizes[labelled == n], minlength=11)
        expected = np.zeros(11)
        expected[list(allowed)] = (labelled == n).sum() / len(allowed)
        # Within 5 standard deviations of a uniform draw on min_size..min(K', n) (clipped to n).
        np.testing.assert_allclose(counts, expected, atol=5 * np.sqrt(expected.max()))


@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_sampled_context_takes_typed_and_raw_keys_alike():
    from vpl_jax.rewards.base import sample_context

    batch = random_batch(jax.random.PRNGKey(24), shape=(3, 4, 6))
    sample = jax.jit(sample_context, static_argnums=(2, 3))
    typed = sample(jax.random.key(25), batch, 1, 4)
    raw = sample(jax.random.key_data(jax.random.key(25)), batch, 1, 4)
    chex.assert_trees_all_equal(typed, raw)
    one_user = jax.tree.map(lambda x: x[0, 0], batch)  # no leading axes
    chex.assert_trees_all_equal(
        sample(jax.random.key(26), one_user, 1, 4),
        sample(jax.random.PRNGKey(26), one_user, 1, 4),
    )


# --- likelihoods --------------------------------------------------------------------------------
EXTREME = jnp.array([-1e30, -1e4, -20.0, 0.0, 20.0, 1e4, 1e30])


@pytest.mark.parametrize("label", [0.0, 0.5, 1.0])
def test_likelihoods_stay_finite_for_extreme_logits(label):
    y = jnp.full_like(EXTREME, label)

    def bt(x):
        return jnp.sum(bradley_terry_nll(x, y))

    def probit(x):
        return jnp.sum(cross_entropy(*probit_log_probs(x), y))

    for f in (bt, probit):
        value, grad = jax.value_and_grad(f)(EXTREME)
        chex.assert_tree_all_finite((value, grad))


def test_bradley_terry_by_hand():
    nll = bradley_terry_nll(jnp.array([0.0, 2.0, 2.0, 0.0]), jnp.array([0.5, 1.0, 0.0, 1.0]))
    expected = [np.log(2), np.log1p(np.exp(-2)), np.log1p(np.exp(2)), np.log(2)]
    np.testing.assert_allclose(nll, expected, rtol=1e-6)
    # An "equal" label is a soft target whose optimum is a logit of 0.
    grad = jax.grad(lambda x: bradley_terry_nll(x, 0.5))(0.0)
    assert abs(float(grad)) < 1e-7


@pytest.mark.parametrize("name", list(MODELS))
def test_loss_is_finite_for_extreme_rewards(name):
    model = MODELS[name]
    dim = 5
    batch = random_batch(jax.random.PRNGKey(0), dim=dim)
    params = init(model, batch, 1)
    # Blow up every weight (rewards ~1e3-1e12) and the inputs: losses and gradients stay finite.
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x if "input_norm" in str(p) else x * 10.0, params
    )
    batch = batch.replace(inputs_a=batch.inputs_a * 1e3, inputs_b=batch.inputs_b * 1e3)
    (loss, metrics), grads = jax.jit(jax.value_and_grad(model.loss, has_aux=True))(
        params, batch, jax.random.PRNGKey(2), jnp.asarray(10)
    )
    chex.assert_tree_all_finite((loss, metrics, grads))


@pytest.mark.parametrize("name", ["btl", "vpl", "dpl_categorical", "linear_bayes"])
def test_masked_pairs_do_not_change_the_loss(name):
    model = MODELS[name]
    batch = random_batch(jax.random.PRNGKey(3))
    params = init(model, batch, 4)
    noisy = random_batch(jax.random.PRNGKey(5))
    # Replace everything about the masked pairs; a model that honours the mask cannot tell.
    changed = jax.tree.map(
        lambda x, y: jnp.where(
            jnp.reshape(batch.mask, batch.mask.shape + (1,) * (x.ndim - 2)), x, y
        ),
        batch,
        noisy.replace(mask=batch.mask),
    )
    loss = jax.jit(model.loss)
    key, step = jax.random.PRNGKey(6), jnp.asarray(0)
    chex.assert_trees_all_close(
        loss(params, batch, key, step), loss(params, changed, key, step), atol=1e-5
    )


def test_input_statistics_come_from_the_labelled_pairs_only():
    batch = random_batch(jax.random.PRNGKey(3))
    # Skipped and padded pairs can hold anything: here inputs a thousand times as large.
    changed = batch.replace(
        inputs_a=jnp.where(batch.mask[..., None, None], batch.inputs_a, 1e3 * batch.inputs_a),
        inputs_b=jnp.where(batch.mask[..., None, None], batch.inputs_b, 1e3 * batch.inputs_b),
    )
    labelled = np.asarray(batch.mask)
    x = np.concatenate([np.asarray(batch.inputs_a)[labelled], np.asarray(batch.inputs_b)[labelled]])
    alive = np.concatenate(
        [np.asarray(batch.alive_a)[labelled], np.asarray(batch.alive_b)[labelled]]
    )
    steps = x[alive]  # [N, D]: the live steps of both segments of every labelled pair
    expected = {"mean": steps.mean(0), "inv_std": 1.0 / steps.std(0)}
    for b in (batch, changed):
        chex.assert_trees_all_close(jax.jit(input_statistics)(b), expected, rtol=1e-5)
    # With no labelled pair at all, every pair's segments describe the inputs.
    unlabelled = batch.replace(mask=jnp.zeros_like(batch.mask))
    everything = batch.replace(mask=jnp.ones_like(batch.mask))
    chex.assert_trees_all_close(
        input_statistics(unlabelled), input_statistics(everything), rtol=1e-6
    )


def test_segment_return_skips_dead_steps():
    model = MODELS["btl"]
    batch = random_batch(jax.random.PRNGKey(7))
    params = init(model, batch, 8)
    x, alive = batch.inputs_a, batch.alive_a
    per_step = model.reward(params, x)
    expected = jnp.sum(per_step * alive, axis=-1)
    chex.assert_trees_all_close(model.segment_return(params, x, alive), expected, atol=1e-5)


# --- the set encoder -----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["vpl", "vpl_attention"])
def encoder_case(request):
    model = MODELS[request.param]
    batch = random_batch(jax.random.PRNGKey(9), shape=(3, 6))
    batch = batch.replace(mask=jnp.ones_like(batch.mask))
    params = init(model, batch, 10)
    posterior = jax.jit(lambda p, b: (lambda q: (q.mean(), q.stddev()))(model.posterior(p, b)))
    return model, params, batch, posterior


def test_encoder_is_invariant_to_the_order_of_pairs(encoder_case):
    _, params, batch, posterior = encoder_case
    perm = np.random.default_rng(0).permutation(batch.num_pairs)
    chex.assert_trees_all_close(
        posterior(params, batch), posterior(params, take_pairs(batch, perm)), atol=1e-5
    )


def test_masking_a_pair_equals_dropping_it(encoder_case):
    _, params, batch, posterior = encoder_case
    drop = 2
    masked = batch.replace(mask=batch.mask.at[:, drop].set(False))
    kept = take_pairs(batch, [i for i in range(batch.num_pairs) if i != drop])
    chex.assert_trees_all_close(posterior(params, masked), posterior(params, kept), atol=1e-5)


def test_encoder_reads_a_pair_and_its_mirror_alike(encoder_case):
    _, params, batch, posterior = encoder_case
    chex.assert_trees_all_close(
        posterior(params, batch), posterior(params, batch.swapped()), atol=1e-5
    )


def test_empty_context_gives_the_prior(encoder_case):
    model, params, batch, posterior = encoder_case
    mean, std = posterior(params, batch.replace(mask=jnp.zeros_like(batch.mask)))
    prior = model.prior(params)
    chex.assert_trees_all_close(mean, jnp.broadcast_to(prior.mean(), mean.shape))
    chex.assert_trees_all_close(std, jnp.broadcast_to(prior.stddev(), std.shape))


def test_posterior_and_reward_shapes():
    model = MODELS["vpl"]
    batch = random_batch(jax.random.PRNGKey(11), shape=(4, 7))
    params = jax.eval_shape(model.init, jax.random.PRNGKey(12), batch)

    def shapes(params, batch):
        q = model.posterior(params, batch)
        z = q.sample(seed=jax.random.PRNGKey(13))
        return (
            z,
            model.pair_logits(params, batch, z),
            model.reward(params, batch.inputs_a, z[:, None, None]),
            model.predict(params, batch, batch),
        )

    z, logits, rewards, predicted = jax.eval_shape(shapes, params, batch)
    chex.assert_shape(z, (4, 3))  # one latent per user
    chex.assert_shape([logits, predicted], (4, 7))
    chex.assert_shape(rewards, (4, 7, 4))  # per step


@pytest.mark.parametrize("name", ["vpl_attention", "dpl_mean_variance"])
@pytest.mark.slow
def test_bfloat16_computation_keeps_float32_params_and_close_losses(name):
    model = MODELS[name]
    half = dataclasses.replace(model, dtype="bfloat16")
    batch = random_batch(jax.random.PRNGKey(19))
    params = init(model, batch, 1)
    loss = jax.jit(lambda m, p: m.loss(p, batch, jax.random.PRNGKey(2), 0)[0], static_argnums=0)
    assert jax.tree.structure(init(half, batch, 1)) == jax.tree.structure(params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(init(half, batch, 1)))
    np.testing.assert_allclose(loss(half, params), loss(model, params), rtol=0.05)


def test_kl_weight_is_annealed():
    model = R.VPL(kl_weight=0.5, kl_warmup_steps=100)
    np.testing.assert_allclose(
        [model.kl_schedule(s) for s in (0, 50, 100, 500)], [0, 0.25, 0.5, 0.5]
    )


# --- LinearBayes ---------------------------------------------------------------------------------
def test_laplace_mean_is_the_map_and_covariance_the_inverse_hessian():
    model = R.LinearBayes(prior_std=2.0)
    batch = random_batch(jax.random.PRNGKey(14), shape=(2, 12), dim=4)
    params = model.init(None, batch)

    def neg_log_posterior(theta, b):
        logits = model.pair_logits(params, b, theta)
        nll = jnp.sum(jnp.where(b.mask, bradley_terry_nll(logits, b.labels), 0.0))
        return nll - model.prior(params).log_prob(theta)

    @jax.jit
    def check(batch):
        q = model.posterior(params, batch)
        grad = jax.vmap(jax.grad(neg_log_posterior))(q.mean(), batch)
        hessian = jax.vmap(jax.hessian(neg_log_posterior))(q.mean(), batch)
        return grad, q.covariance(), jnp.linalg.inv(hessian)

    grad, covariance, inverse_hessian = check(batch)
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    np.testing.assert_allclose(covariance, inverse_hessian, rtol=1e-3, atol=1e-5)


def test_laplace_newton_converges_from_a_prior_mean_far_from_the_map():
    """A broad (learned) prior centred on the wrong side of the data: at its mean the logistic
    curvature vanishes, so plain Newton steps overshoot by orders of magnitude and diverge (to
    ~1e4 here); the backtracking steps must still reach the MAP, where the gradient vanishes."""
    model = R.LinearBayes(prior_std=30.0, newton_steps=30)
    key_d, key_t = jax.random.split(jax.random.PRNGKey(3))
    d = 6.0 * jax.random.normal(key_d, (16, 1, 3))  # per pair: one step of feature differences
    theta_true = jax.random.normal(key_t, (3,))
    labels = (jnp.einsum("qhf,f->q", d, theta_true) > 0).astype(jnp.float32)
    batch = R.PairBatch(
        inputs_a=d,
        inputs_b=jnp.zeros_like(d),
        alive_a=jnp.ones((16, 1), bool),
        alive_b=jnp.ones((16, 1), bool),
        labels=labels,
        mask=jnp.ones((16,), bool),
    )
    params = model.init(None, batch)
    params["prior"]["mean"] = -3.0 * theta_true

    def neg_log_posterior(theta):
        logits = model.pair_logits(params, batch, theta)
        return jnp.sum(bradley_terry_nll(logits, labels)) - model.prior(params).log_prob(theta)

    mean = jax.jit(lambda b: model.posterior(params, b).mean())(batch)
    assert bool(jnp.all(jnp.isfinite(mean)))
    grad = jax.grad(neg_log_posterior)(mean)
    assert float(jnp.max(jnp.abs(grad))) < 1e-3, grad
    assert float(neg_log_posterior(mean)) < float(neg_log_posterior(params["prior"]["mean"]))
    # The MAP separates the data it was given.
    np.testing.assert_array_equal(np.asarray(model.pair_logits(params, batch, mean) > 0), labels)


# --- reward scaling ------------------------------------------------------------------------------
def test_users_differing_only_in_scale_get_comparable_scaled_rewards(nav_dataset):
    """Two users with rewards r and 4r (theta and 4 theta): raw rewards differ by more than two
    standard deviations per state; scaled ones by little (win probability) or nothing."""
    model = R.LinearBayes()
    bank = R.segment_bank(nav_dataset.segments, "features")
    reference = R.reference_inputs(jax.random.PRNGKey(0), bank, 512)
    states = R.reference_inputs(jax.random.PRNGKey(1), bank, 256)
    theta = 10.0 * nav_dataset.users.theta[0]  # a typical learned scale for rational labels
    z = jnp.stack([theta, 4.0 * theta])[:, None]  # [2 users, 1, F] against states [1, N, F]
    raw = model.reward(None, states[None], z)
    gap = lambda r: float(jnp.mean(jnp.abs(r[1] - r[0])) / jnp.std(r[0]))  # noqa: E731
    assert gap(raw) > 2.0
    for method, tolerance in (("win_probability", 0.15), ("standardize", 1e-5), ("minmax", 1e-5)):
        scaled = R.scaled_reward(model, None, states[None], z, reference, method)
        assert gap(scaled) < tolerance, method
        # The ranking of states is each user's own and is kept.
        np.testing.assert_array_equal(jnp.argsort(scaled[0]), jnp.argsort(scaled[1]))
    win = R.scaled_reward(model, None, states[None], z, reference)
    assert float(win.min()) >= 0.0 and float(win.max()) <= 1.0


def test_per_episode_reference_rewards_match_the_one_call_form():
    model = MODELS["vpl"]
    batch = random_batch(jax.random.PRNGKey(15))
    params = init(model, batch, 16)
    reference = batch.inputs_a.reshape(-1, 3)[:20]
    z = jax.random.normal(jax.random.PRNGKey(17), (6, 3))  # one latent per environment
    x = jax.random.normal(jax.random.PRNGKey(18), (6, 3))  # one state per environment

    @jax.jit
    def both(params, x, z):
        per_episode = R.reference_rewards(model, params, reference, z)  # once per episode
        stepped = R.scale_rewards(model.reward(params, x, z), per_episode, "standardize")
        return per_episode, stepped, R.scaled_reward(model, params, x, z, reference, "standardize")

    per_episode, stepped, one_call = both(params, x, z)
    chex.assert_shape(per_episode, (6, 20))
    chex.assert_trees_all_close(stepped, one_call, atol=1e-5)


# --- bad inputs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_pairs(nav_dataset):
    return R.user_pairs(nav_dataset.split()[0], "all")


def _bank(data, inputs):
    return data.replace(bank=data.bank.replace(inputs=inputs))


def test_bad_training_inputs_are_rejected_before_compiling(train_pairs):
    model, config = MODELS["btl"], R.TrainConfig(num_epochs=1)
    key = jax.random.PRNGKey(0)
    x = train_pairs.bank.inputs
    wider = _bank(train_pairs, jnp.concatenate([x, x[..., :1]], axis=-1))
    with pytest.raises(
        ValueError,
        match=rf"valid.bank.inputs has D \(inputs per step\) = {x.shape[-1] + 1} but train",
    ):
        R.fit(model, config, key, train_pairs, wider)
    nan = _bank(train_pairs, x.at[3, 2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match=r"train.bank.inputs contains NaN .*segment 3, step 2"):
        R.fit(model, config, key, nan)
    with pytest.raises(ValueError, match=r"train.labels must be finite and in \[0, 1\]"):
        R.fit(
            model, config, key, train_pairs.replace(labels=train_pairs.labels.at[0, 0].set(jnp.nan))
        )
    empty = train_pairs.replace(
        pairs=train_pairs.pairs[:, :0],
        labels=train_pairs.labels[:, :0],
        mask=train_pairs.mask[:, :0],
    )
    with pytest.raises(ValueError, match=r"train has 0 pairs per user \(K or Q = 0\)"):
        R.fit(model, config, key, empty)
    with pytest.raises(ValueError, match=r"kind 'transition' but the model consumes 'features'"):
        R.fit(R.LinearBayes(), config, key, train_pairs)
    with pytest.raises(ValueError, match="patience=3 needs validation data"):
        R.fit(model, dataclasses.replace(config, patience=3), key, train_pairs)
    with pytest.raises(
        ValueError, match=r"TrainConfig.monitor='kl': allowed values are \['nll', 'loss'\]"
    ):
        R.fit(model, dataclasses.replace(config, monitor="kl"), key, train_pairs, train_pairs)
    negative = train_pairs.replace(type_id=train_pairs.type_id.at[2].set(-1))
    with pytest.raises(ValueError, match=r"train.type_id has a negative entry \(-1\)"):
        R.fit(model, config, key, negative)


def test_bad_model_fields_that_are_fine():
    # num_heads need not divide embed_dim without attention; an empty hidden tuple is linear.
    R.VPL(embed_dim=64, num_heads=3)
    R.BTL(hidden=())
    R.LinearBayes(min_context=2, max_context=2)


@pytest.mark.parametrize("name", ["vpl", "linear_bayes"])
def test_latent_segment_return_without_z_is_a_clear_error(name):
    model = MODELS[name]
    batch = random_batch(jax.random.PRNGKey(30), dim=3)
    params = init(model, batch, 0)
    with pytest.raises(ValueError, match=r"segment_return needs (a latent )?z"):
        model.segment_return(params, batch.inputs_a, batch.alive_a)


def test_model_sizes_validate_returns_itself():
    sizes = R.ModelSizes(hidden=(8,), kl_warmup_steps=0, kl_weight=0)
    assert sizes.validate() is sizes
    assert R.ModelSizes().validate() == R.ModelSizes()


def test_bad_evaluation_inputs_are_rejected(nav_dataset):
    model = MODELS["vpl"]
    _, test = nav_dataset.split()
    context, heldout = R.user_pairs(test, "context"), R.user_pairs(test, "heldout")
    params = init(model, context.batch(), 0)
    no_context = context.replace(
        pairs=context.pairs[:, :0], labels=context.labels[:, :0], mask=context.mask[:, :0]
    )
    with pytest.raises(ValueError, match=r"context has 0 pairs per user"):
        R.evaluate(model, params, no_context, heldout)
    x = context.bank.inputs
    wide = jnp.concatenate([x, x[..., :2]], axis=-1)
    d = wide.shape[-1]
    with pytest.raises(ValueError, match=rf"heldout.bank.inputs has D \(inputs per step\) = {d}"):
        R.evaluate(model, params, context, _bank(heldout, wide))
    with pytest.raises(ValueError, match=rf"but this VPL expects .* on these inputs \(D={d}\)"):
        R.evaluate(model, params, _bank(context, wide), _bank(heldout, wide))
    with pytest.raises(ValueError, match="same users in the same order"):
        R.evaluate(model, params, context, heldout.select(np.arange(heldout.num_users)[::-1]))
    with pytest.raises(ValueError, match="inputs='pixels' is not one of"):
        R.user_pairs(test, "context", "pixels")


# --- validation and evaluation metrics ------------------------------------------------------------
@pytest.mark.slow
def test_validation_metrics_do_not_depend_on_the_chunk_size():
    from vpl_jax.rewards.trainer import _validation_metrics

    data = random_user_pairs(jax.random.PRNGKey(40), num_users=7, num_pairs=6)
    # Equal labels concentrated on the first users, and one user with only 2 labelled pairs:
    # weighting accuracy by labelled pairs, or counting padding users, would show up here.
    labels = data.labels.at[0, :5].set(0.5).at[1, :3].set(0.5)
    data = data.replace(labels=labels, mask=data.mask.at[4, 2:].set(False))
    key, step = jax.random.PRNGKey(41), jnp.asarray(0)
    metrics = jax.jit(_validation_metrics, static_argnums=(0, 5))

    btl = MODELS["btl"]
    params = init(btl, data.batch())
    exact = jax.jit(btl.loss)(params, data.batch(), key, step)[1]  # all users at once
    for chunk in (2, 3, 7):
        chex.assert_trees_all_close(metrics(btl, data, params, key, step, chunk), exact, rtol=1e-6)

    # VPL with every labelled pair as the context: its per-user KL and context size are
    # deterministic, and must average over the 7 users, never over padding.
    vpl = dataclasses.replace(MODELS["vpl"], min_context=6)
    params = init(vpl, data.batch())
    per_chunk = {c: metrics(vpl, data, params, key, step, c) for c in (2, 3, 7)}
    q = vpl.posterior(params, data.batch())
    kl = np.mean(q.kl_divergence(vpl.prior(params)))
    for values in per_chunk.values():
        np.testing.assert_allclose(values["context_size"], data.mask.sum() / 7, rtol=1e-6)
        np.testing.assert_allclose(values["kl"], kl, rtol=1e-5)


def test_users_without_labelled_heldout_pairs_get_nan_metrics():
    model = MODELS["btl"]
    context = random_user_pairs(jax.random.PRNGKey(42), num_users=6, num_pairs=4)
    heldout = random_user_pairs(jax.random.PRNGKey(43), num_users=6, num_pairs=5)
    heldout = heldout.replace(
        mask=heldout.mask.at[2].set(False),  # user 2 (type 0): no held-out label
        labels=heldout.labels.at[3].set(0.5),  # user 3 (type 1): only "equal" labels
    )
    params = init(model, context.batch())
    ev = R.evaluate(model, params, context, heldout)
    log_lik, accuracy = np.asarray(ev.log_likelihood), np.asarray(ev.accuracy)
    assert np.isnan(log_lik[2]) and np.isnan(accuracy[2])
    assert np.isfinite(log_lik[3]) and np.isnan(accuracy[3])
    assert np.all(np.isfinite(np.delete(log_lik, 2)))
    np.testing.assert_allclose(ev.type_log_likelihood[0], np.mean(log_lik[[0, 4]]), rtol=1e-6)
    np.testing.assert_allclose(ev.type_log_likelihood[1], np.mean(log_lik[[1, 3, 5]]), rtol=1e-6)
    np.testing.assert_allclose(ev.type_accuracy[1], np.mean(accuracy[[1, 5]]), rtol=1e-6)


def test_vpl_decoder_choice_is_validated_and_the_basis_decoder_is_linear_in_its_weights():
    with pytest.raises(ValueError, match="decoder"):
        R.VPL(decoder="bilinear")
    with pytest.raises(ValueError, match=r"ModelSizes.vpl_decoder='x': allowed values are \['mlp'"):
        R.make_model("vpl", R.ModelSizes(vpl_decoder="x"))
    model = MODELS["vpl_basis"]
    batch = random_batch(jax.random.PRNGKey(3))
    params = init(model, batch, 4)
    x = batch.inputs_a[0, 0]  # [H, D]
    z = jax.random.normal(jax.random.PRNGKey(4), (model.latent_dim,))
    # r(x, z) = g(x) . w(z): doubling the last layer of w doubles every step's reward.
    last = params["decoder"]["params"]["weights"]["Dense_1"]
    doubled = jax.tree.map(lambda v: v, params)
    doubled["decoder"]["params"]["weights"]["Dense_1"] = jax.tree.map(lambda v: 2 * v, last)
    chex.assert_trees_all_close(
        model.reward(doubled, x, z), 2 * model.reward(params, x, z), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow  # 17 s in the fast tier on 2 cores (2026-12-07)
def test_latent_log_likelihood_is_the_posterior_predictive_not_the_plug_in():
    """VPL's held-out log-likelihood is log E_{z ~ q} p(y | z) (as LinearBayes' is its
    predictive), not log p(y | E[z]): checked against a 4096-sample estimate, on a model whose
    posterior is wide enough that the two differ (they were the plug-in before)."""
    model = MODELS["vpl"]
    context = random_user_pairs(jax.random.PRNGKey(7), num_users=5, num_pairs=2)
    heldout = random_user_pairs(jax.random.PRNGKey(8), num_users=5, num_pairs=6)
    params = init(model, context.batch())
    # A decoder that reads z strongly: the reward differs a lot across posterior samples.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 2.0 if "decoder" in jax.tree_util.keystr(path) else x, params
    )
    ev = R.evaluate(model, params, context, heldout)

    def reference(u):
        ctx, targets = context.batch(jnp.array([u])), heldout.batch(jnp.array([u]))
        q = model.posterior(params, ctx)
        z = q.sample(seed=jax.random.PRNGKey(100 + u), sample_shape=(4096,))
        logits = jax.vmap(lambda zi: model.pair_logits(params, targets, zi))(z)
        log_p = jax.nn.log_sigmoid(jnp.where(targets.labels[None] > 0.5, logits, -logits))
        predictive = jax.nn.logsumexp(log_p, axis=0) - jnp.log(4096.0)
        plug_in = jax.nn.log_sigmoid(
            jnp.where(targets.labels > 0.5, 1, -1) * model.predict(params, ctx, targets)
        )
        return float(jnp.mean(predictive)), float(jnp.mean(plug_in))

    predictive, plug_in = np.array([reference(u) for u in range(5)]).T
    log_lik = np.asarray(ev.log_likelihood)
    # 64 samples estimate the predictive to about 0.1 here; the plug-in is off by 0.4 to 3.5.
    np.testing.assert_allclose(log_lik, predictive, atol=0.15)
    assert np.all(np.abs(log_lik - plug_in) > 0.3), (log_lik, plug_in)


def test_type_separation_by_hand():
    # Type 0 at (0, 0) and (2, 0); type 1 at (10, 0) and (0.5, 0) — its second user sits nearer
    # type 0's centre; type 2 has no user.
    points = jnp.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [0.5, 0.0]])
    type_id = jnp.array([0, 0, 1, 1])
    sep = R.type_separation(points, type_id, 3)
    np.testing.assert_allclose(sep.centres[:2], [[1.0, 0.0], [5.25, 0.0]])
    assert np.isnan(np.asarray(sep.centres[2])).all()
    np.testing.assert_allclose(sep.spread[:2], [1.0, 4.75])
    np.testing.assert_allclose(sep.nearest[:2], [4.25, 4.25])
    np.testing.assert_allclose(sep.centre_distance[0, 1], 4.25)
    np.testing.assert_allclose(sep.recovery[:2], [1.0, 0.5])
    assert np.isnan(np.asarray(sep.recovery[2])) and np.isnan(np.asarray(sep.nearest[2]))
    # Invariant to the users' order.
    order = jnp.array([3, 1, 0, 2])
    again = R.type_separation(points[order], type_id[order], 3)
    np.testing.assert_allclose(again.recovery[:2], sep.recovery[:2])
    np.testing.assert_allclose(again.spread[:2], sep.spread[:2])


@pytest.mark.slow
def test_the_posterior_predictive_holds_a_bounded_number_of_users_in_memory(nav_dataset):
    """VPL's Monte-Carlo predictive scores every user's pairs under 64 samples of z at once, so
    it takes few users per chunk: its working memory must not grow with the number of test
    users (256 users at a time needed 30 GB on highway with 240 test users)."""
    model = R.VPL(latent_dim=2, embed_dim=16, encoder_hidden=(16,), decoder_hidden=(16,))
    _, test = nav_dataset.split()

    def temp_bytes(num_users):
        users = test.select_users(np.arange(num_users) % test.num_users)
        context = R.user_pairs(users, "context", model.inputs)
        heldout = R.user_pairs(users, "heldout", model.inputs)
        params = model.init(jax.random.PRNGKey(0), context.batch(jnp.arange(2)))
        fn = jax.jit(lambda p, c, h: R.heldout_log_probs(model, p, c, h))
        compiled = fn.lower(params, untyped(context), untyped(heldout)).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    few, many = temp_bytes(16), temp_bytes(128)
    assert many < 1.5 * few, (few, many)
