"""Training reward models for real (CPU-sized): the paper's claim that VPL recovers each user
type where BTL averages them, the baselines learning, and the trainer's guarantees (vmapped
seeds equal separate runs, pure early stopping)."""

import dataclasses
import functools

import chex
import jax
import numpy as np
import pytest

from vpl_jax import rewards as R
from vpl_jax.checks import ConfigError
from vpl_jax.data import DatasetConfig, build_dataset
from vpl_jax.users import Population

# 64 users (48 train, 16 test), K = 8 context and M = 32 held-out pairs each. Rollout sizes match
# the shared nav_dataset fixture, so the rollouts compile once per session.
CONFIG = DatasetConfig(
    num_users=64, context_size=8, heldout_size=32, pool_size=512, num_episodes=64
)
TRAIN = R.TrainConfig(num_epochs=120, users_per_batch=16, learning_rate=1e-3)


def _dataset(navigation, types):
    population = Population.mixture("navigation", navigation.feature_names, types)
    return build_dataset(jax.random.PRNGKey(0), navigation, population, CONFIG)


@pytest.fixture(scope="module")
def two_goals(navigation):
    """Rational users of two types that want opposite goals (a at the top, b at the bottom)."""
    return _dataset(navigation, ["goal_a", "goal_b"])


@pytest.fixture(scope="module")
def one_goal(navigation):
    return _dataset(navigation, ["goal_a"])


def fit_and_evaluate(model, dataset, config=TRAIN, seed=1):
    """Trains on the training users' pairs (context + held-out); evaluates the test users'
    held-out pairs given their context pairs."""
    train, test = dataset.split()
    params, history = R.fit(
        model, config, jax.random.PRNGKey(seed), R.user_pairs(train, "all", model.inputs)
    )
    context = R.user_pairs(test, "context", model.inputs)
    heldout = R.user_pairs(test, "heldout", model.inputs)
    return params, history, R.evaluate(model, params, context, heldout), context, heldout


VPL_MODEL = R.VPL(latent_dim=8, max_context=CONFIG.context_size)


@pytest.fixture(scope="module")
def vpl_two_goals(two_goals):
    return fit_and_evaluate(VPL_MODEL, two_goals)


@pytest.mark.slow
def test_vpl_recovers_each_user_type_where_btl_averages(two_goals, vpl_two_goals):
    _, _, btl, _, _ = fit_and_evaluate(R.BTL(), two_goals)
    _, _, vpl, _, _ = vpl_two_goals
    btl_acc, vpl_acc = np.asarray(btl.type_accuracy), np.asarray(vpl.type_accuracy)
    print(f"held-out accuracy per type: BTL {btl_acc}, VPL {vpl_acc}")
    assert np.all(vpl_acc >= 0.9), vpl_acc
    assert np.min(btl_acc) <= 0.7, btl_acc


@pytest.mark.slow
def test_vpl_with_a_shared_basis_decoder_recovers_each_user_type(two_goals):
    model = dataclasses.replace(VPL_MODEL, decoder="basis")
    _, _, evaluation, _, _ = fit_and_evaluate(model, two_goals)
    acc = np.asarray(evaluation.type_accuracy)
    assert np.all(acc >= 0.9), acc


@pytest.mark.slow
def test_with_one_user_type_btl_and_vpl_both_learn(one_goal):
    for model in (R.BTL(), VPL_MODEL):
        _, _, result, _, _ = fit_and_evaluate(model, one_goal)
        acc = float(result.type_accuracy[0])
        print(f"{type(model).__name__} held-out accuracy, one type: {acc:.3f}")
        assert acc >= 0.9


def test_vpl_latent_separates_types_and_sharpens_with_context(vpl_two_goals):
    params, _, full, context, heldout = vpl_two_goals
    curve = R.context_size_curve(VPL_MODEL, params, context, heldout, sizes=[0, 2, 8])
    by_size = np.asarray(curve.type_accuracy).mean(axis=1)
    print(f"VPL accuracy with k = 0, 2, 8 context pairs: {by_size}")
    assert by_size[2] >= by_size[0] + 0.25  # the prior alone cannot tell the goals apart
    np.testing.assert_allclose(curve.accuracy[-1], full.accuracy, atol=1e-6)
    projection = R.latent_projection(VPL_MODEL, params, context)
    chex.assert_shape(projection.coords, (context.num_users, 2))
    first = np.asarray(projection.coords[:, 0])
    type_id = np.asarray(projection.type_id)
    a, b = first[type_id == 0], first[type_id == 1]
    # The types fall on opposite sides of the first principal axis.
    assert min(a.max(), b.max()) < max(a.min(), b.min())
    sep = R.latent_separation(VPL_MODEL, params, context)
    print(f"recovery {np.asarray(sep.recovery)}, spread {np.asarray(sep.spread)}")
    assert float(np.min(sep.recovery)) >= 0.9  # each user nearest their own type's centre
    assert float(np.min(sep.nearest)) > 2 * float(np.max(sep.spread))
    # With a seed axis: the same numbers for each seed's params.
    stacked = jax.tree.map(lambda x: np.stack([x, x]), params)
    both = R.latent_separation(VPL_MODEL, stacked, context, seeds=True)
    np.testing.assert_allclose(both.recovery[1], sep.recovery, atol=1e-6)
    with pytest.raises(ValueError, match="no user latent"):
        R.latent_separation(R.BTL(), params, context)
    _, variance = R.posterior_moments(VPL_MODEL, params, context)
    _, prior_variance = R.posterior_moments(VPL_MODEL, params, context.with_context_size(0))
    assert float(variance.mean()) < float(prior_variance.mean())


@pytest.mark.parametrize(
    "model",
    [R.DPLMeanVariance(), R.DPLCategorical(), R.Ensemble(R.BTL(), size=3)],
    ids=["dpl_mean_variance", "dpl_categorical", "ensemble"],
)
@pytest.mark.slow
def test_baselines_learn_a_single_user_type(one_goal, model):
    config = dataclasses.replace(TRAIN, num_epochs=60)
    _, history, result, _, _ = fit_and_evaluate(model, one_goal, config)
    acc = float(result.type_accuracy[0])
    print(f"{type(model).__name__} held-out accuracy, one type: {acc:.3f}")
    assert acc >= 0.8
    assert float(history.train["nll"][-1]) < float(history.train["nll"][0])


@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_linear_bayes_recovers_each_users_weights(two_goals):
    model = R.LinearBayes()
    params, _, result, _, _ = fit_and_evaluate(
        model, two_goals, dataclasses.replace(TRAIN, num_epochs=30)
    )
    test = two_goals.split()[1]
    everything = R.user_pairs(test, "all", "features")
    cosine = R.theta_alignment(model, params, everything, test.users.theta)
    print(
        f"LinearBayes accuracy per type {np.asarray(result.type_accuracy)}, cosine to the true "
        f"theta from K+M pairs: mean {float(cosine.mean()):.3f}, min {float(cosine.min()):.3f}"
    )
    # progress_a and progress_b are state features that sum to nearly a constant along the
    # line between the goals, so comparisons barely identify theta along (1, 1, 0, ...): the
    # cosine stays below the accuracy (measured 0.887 at this size).
    assert float(cosine.mean()) >= 0.85
    assert np.all(np.asarray(result.type_accuracy) >= 0.9)


# --- the trainer ---------------------------------------------------------------------------------
TINY_VPL = R.VPL(latent_dim=2, embed_dim=16, encoder_hidden=(16,), decoder_hidden=(16,))
TINY = R.TrainConfig(num_epochs=3, users_per_batch=4)


@pytest.mark.slow
def test_vmapped_training_over_seeds_equals_separate_runs(nav_dataset):
    train = R.user_pairs(nav_dataset.split()[0], "all")
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = R.fit(TINY_VPL, TINY, keys, train)
    for s in range(3):
        single = R.fit(TINY_VPL, TINY, keys[s], train)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, s=s: x[s], batched), single, rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize(
    ("model", "inputs"), [(TINY_VPL, "transition"), (R.LinearBayes(max_context=4), "features")]
)
@pytest.mark.slow
def test_training_takes_typed_keys_and_matches_their_raw_form(nav_dataset, model, inputs):
    fit_users, valid_users = R.validation_split(nav_dataset)
    train, valid = R.user_pairs(fit_users, "all", inputs), R.user_pairs(valid_users, "all", inputs)
    typed = jax.random.key(3)
    raw = jax.random.key_data(typed)
    chex.assert_trees_all_equal(
        R.fit(model, TINY, typed, train, valid), R.fit(model, TINY, raw, train, valid)
    )
    seeds = jax.random.split(typed, 2)  # a batch of typed keys: one vmapped call
    chex.assert_trees_all_equal(
        R.fit(model, TINY, seeds, train, valid),
        R.fit(model, TINY, jax.random.key_data(seeds), train, valid),
    )


def test_make_train_gives_a_pure_vmappable_function(nav_dataset):
    train = R.user_pairs(nav_dataset.split()[0], "all")
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    run = R.make_train(R.BTL(hidden=(16,)), TINY, train)
    first, _ = jax.jit(jax.vmap(run))(keys)
    second, _ = jax.jit(jax.vmap(run))(keys)
    chex.assert_trees_all_equal(first, second)
    leaves = jax.tree.leaves(first)
    assert all(leaf.shape[0] == 2 for leaf in leaves)
    assert not np.allclose(leaves[-1][0], leaves[-1][1])  # the seeds differ


def test_early_stopping_freezes_updates_and_returns_the_best_params(nav_dataset):
    fit_users, valid_users = R.validation_split(nav_dataset, 0.3)
    train, valid = R.user_pairs(fit_users), R.user_pairs(valid_users)
    model = R.BTL(hidden=(16,))
    # min_delta is out of reach after the first epoch: no later epoch counts as improvement.
    config = R.TrainConfig(num_epochs=5, users_per_batch=4, patience=1, min_delta=10.0)
    params, history = R.fit(model, config, jax.random.PRNGKey(0), train, valid)
    np.testing.assert_array_equal(history.updating, [True, True, False, False, False])
    assert int(history.best_epoch) == 0
    valid_nll = np.asarray(history.valid["nll"])
    np.testing.assert_allclose(valid_nll[2:], valid_nll[1])  # frozen params after epoch 1
    _, metrics = jax.jit(model.loss)(params, valid.batch(), jax.random.PRNGKey(0), 0)
    np.testing.assert_allclose(metrics["nll"], valid_nll[0], rtol=1e-5)  # the best epoch's
    assert not np.isclose(valid_nll[0], valid_nll[1])


@pytest.mark.slow
def test_chunked_training_equals_one_call_and_resumes_from_a_checkpoint(nav_dataset, tmp_path):
    from vpl_jax.runtime.checkpoint import Checkpointer

    model = TINY_VPL
    config = dataclasses.replace(TINY, num_epochs=6)
    fit_users, valid_users = R.validation_split(nav_dataset)
    train, valid = R.user_pairs(fit_users), R.user_pairs(valid_users)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    reference = R.fit(model, config, keys, train, valid)
    chunked = R.fit_chunked(model, config, keys, train, valid, chunk_epochs=4)
    chex.assert_trees_all_close(chunked, reference, atol=1e-6)

    class Killed(Exception):
        pass

    checkpointer = Checkpointer(tmp_path, {"run": 1}, every=2)
    save = checkpointer.save

    def save_then_die(step, state, history):
        save(step, state, history)
        if step == 4:
            raise Killed

    checkpointer.save = save_then_die
    with pytest.raises(Killed):
        R.fit_chunked(model, config, keys, train, valid, chunk_epochs=2, checkpointer=checkpointer)
    resumed = R.fit_chunked(
        model,
        config,
        keys,
        train,
        valid,
        chunk_epochs=2,
        checkpointer=Checkpointer(tmp_path, {"run": 1}, every=2),
    )
    chex.assert_trees_all_close(resumed, reference, atol=1e-6)


@pytest.mark.slow
def test_restarts_return_each_seeds_run_with_the_best_validation_value(nav_dataset):
    """restarts=R trains R runs per seed (keys split off the seed's key) and returns the one
    whose best validation nll is lowest: the same params and history as that run alone, in
    fit and in fit_chunked alike."""
    fit_users, valid_users = R.validation_split(nav_dataset)
    train, valid = R.user_pairs(fit_users), R.user_pairs(valid_users)
    config = dataclasses.replace(TINY, restarts=3)
    seeds = jax.random.split(jax.random.PRNGKey(0), 2)
    params, history = R.fit(TINY_VPL, config, seeds, train, valid)
    for s in range(2):
        runs = [R.fit(TINY_VPL, TINY, k, train, valid) for k in jax.random.split(seeds[s], 3)]
        best = [float(h.valid["nll"][h.best_epoch]) for _, h in runs]
        assert len(set(best)) == 3  # the runs differ, so the choice is real
        chosen = runs[int(np.argmin(best))]
        got = jax.tree.map(lambda x, s=s: x[s], (params, history))
        chex.assert_trees_all_close(got, chosen, rtol=1e-4, atol=1e-5)
    chunked = R.fit_chunked(TINY_VPL, config, seeds, train, valid, chunk_epochs=2)
    chex.assert_trees_all_close(chunked, (params, history), rtol=1e-4, atol=1e-5)
    single = R.fit_chunked(TINY_VPL, config, seeds[1], train, valid, chunk_epochs=3)
    chex.assert_trees_all_close(single, jax.tree.map(lambda x: x[1], (params, history)),
                                rtol=1e-4, atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match=r"TrainConfig.restarts=3 needs validation data"):
        R.fit(TINY_VPL, config, seeds, train)
    # A model without a user latent has no type to merge: it trains once, as with restarts=1.
    btl = R.BTL(hidden=(16,))
    chex.assert_trees_all_equal(R.fit(btl, config, seeds, train), R.fit(btl, TINY, seeds, train))
    with pytest.raises(ConfigError, match="restarts=0"):
        dataclasses.replace(TINY, restarts=0).validate()


# --- degenerate data and diverged training stop (they trained silently before) ------------------
def test_all_pairs_skipped_stops_before_training(nav_dataset):
    train = R.user_pairs(nav_dataset.split()[0], "all")
    skipped = train.replace(mask=np.zeros(train.mask.shape, bool))
    with pytest.raises(ValueError, match=r"train has no labelled pair: all .* skipped or masked"):
        R.fit(TINY_VPL, TINY, jax.random.PRNGKey(0), skipped)
    with pytest.raises(ValueError, match="valid has no labelled pair"):
        R.fit(TINY_VPL, TINY, jax.random.PRNGKey(0), train, skipped)


def test_all_equal_answers_warn(nav_dataset):
    train = R.user_pairs(nav_dataset.split()[0], "all")
    equal = train.replace(labels=np.full(train.labels.shape, 0.5, np.float32))
    with pytest.warns(UserWarning, match=r"every one of its .* labelled pairs is an 'equal'"):
        R.fit(R.BTL(hidden=(8,)), TINY, jax.random.PRNGKey(0), equal)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_diverged_training_raises_instead_of_returning_initial_params(nav_dataset, chunked):
    train = R.user_pairs(nav_dataset.split()[0], "all")
    wild = dataclasses.replace(TINY, learning_rate=1e30, max_grad_norm=None)
    fit = functools.partial(R.fit_chunked, chunk_epochs=1) if chunked else R.fit
    with pytest.raises(R.TrainingDivergedError, match="reward training diverged: the loss is"):
        fit(R.BTL(hidden=(8,)), wild, jax.random.split(jax.random.PRNGKey(0), 2), train)


@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_evaluate_with_params_of_another_size_or_model_names_the_mismatch(nav_dataset):
    train, test = nav_dataset.split()
    context = R.user_pairs(test, "context")
    heldout = R.user_pairs(test, "heldout")
    params, _ = R.fit(TINY_VPL, TINY, jax.random.PRNGKey(0), R.user_pairs(train, "all"))
    wider = dataclasses.replace(TINY_VPL, decoder_hidden=(32,))
    with pytest.raises(ValueError, match=r"params\[.*\] has shape .* but this VPL expects"):
        R.evaluate(wider, params, context, heldout)
    with pytest.raises(ValueError, match="params do not belong to this BTL"):
        R.evaluate(R.BTL(hidden=(16,)), params, context, heldout)


@pytest.mark.slow
def test_chunked_training_takes_the_data_as_arguments_not_as_captured_constants(nav_dataset):
    """fit_chunked's jitted chunk receives the datasets as arguments: a second dataset of the
    same shapes reuses the compiled chunk (a closure over the data compiled a new one per call
    and baked the data into the program as constants)."""
    from vpl_jax.rewards import trainer

    config = dataclasses.replace(TINY, num_epochs=2)
    fit_users, valid_users = R.validation_split(nav_dataset)
    train, valid = R.user_pairs(fit_users), R.user_pairs(valid_users)
    key = jax.random.PRNGKey(0)
    R.fit_chunked(TINY_VPL, config, key, train, valid, chunk_epochs=2)
    compiled = trainer._chunked_epochs._cache_size()
    flipped = train.replace(labels=1.0 - train.labels)  # same shapes, other data
    params, _ = R.fit_chunked(TINY_VPL, config, key, flipped, valid, chunk_epochs=2)
    assert trainer._chunked_epochs._cache_size() == compiled
    reference, _ = R.fit(TINY_VPL, config, key, flipped, valid)
    chex.assert_trees_all_close(params, reference, atol=1e-6)  # and it trained on the new data


@pytest.mark.slow  # 79 s in the fast tier on 2 cores (2026-12-07)
def test_pipeline_fits_train_on_the_validation_split_and_chunking_changes_nothing(nav_dataset):
    """pipeline.train_reward is fit on validation_split's parts; fit_reward trains the same
    params and scores the test users; chunked_fit (what experiments pass to checkpoint) gives
    the numbers of one call, S seeds included."""
    from vpl_jax import pipeline

    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    fit_users, valid_users = R.validation_split(nav_dataset, 0.25)
    pairs = lambda ds: R.user_pairs(ds, "all", TINY_VPL.inputs)  # noqa: E731
    direct, _ = R.fit(TINY_VPL, TINY, keys, pairs(fit_users), pairs(valid_users))
    trained, _ = pipeline.train_reward(TINY_VPL, TINY, keys, nav_dataset, 0.25)
    chex.assert_trees_all_equal(trained, direct)
    chunked = pipeline.chunked_fit(chunk_epochs=1)
    fitted = pipeline.fit_reward(TINY_VPL, TINY, keys, nav_dataset, 0.25, fit=chunked)
    chex.assert_trees_all_close(fitted.params, direct, atol=1e-6)
    assert fitted.evaluation.accuracy.shape[0] == 2  # per seed
    _, test = nav_dataset.split()
    expected = R.evaluate(
        TINY_VPL,
        direct,
        R.user_pairs(test, "context", TINY_VPL.inputs),
        R.user_pairs(test, "heldout", TINY_VPL.inputs),
        seeds=True,
    )
    np.testing.assert_allclose(fitted.evaluation.accuracy, expected.accuracy, atol=1e-6)
    other, _ = pipeline.train_reward(TINY_VPL, TINY, keys, nav_dataset, 0.5)
    assert not np.array_equal(
        jax.tree.leaves(other)[0], jax.tree.leaves(direct)[0]
    )  # the fraction reaches the split
