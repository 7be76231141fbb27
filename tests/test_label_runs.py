"""An experiment's run folder keeps its datasets and trained models; the app serves them."""

import dataclasses

import pytest

pytest.importorskip("flask")

from vpl_jax import harness
from vpl_jax import rewards as R
from vpl_jax.data import DatasetConfig, load_dataset

pytestmark = pytest.mark.slow  # three tiny experiment runs: about 5 minutes on 2 cores


@pytest.fixture(scope="module")
def run_folder(load_experiment, tmp_path_factory):
    """A tiny reward_accuracy run on navigation (LinearBayes and VPL, two seeds, two epochs)."""
    experiment = load_experiment("reward_accuracy")
    config = dataclasses.replace(
        experiment.PRESETS["cpu"],
        results_dir=str(tmp_path_factory.mktemp("results")),
        run_name="tiny",
        tasks=("navigation",),
        methods=("linear_bayes", "vpl"),
        num_seeds=2,
        data=DatasetConfig(
            num_users=16, context_size=8, heldout_size=16, pool_size=512, num_episodes=64
        ),
        train=R.TrainConfig(num_epochs=2, users_per_batch=8),
        sizes=R.ModelSizes(hidden=(8,), latent_dim=2),
    ).validate()
    results = harness.RunResults("reward_accuracy", config)
    results.write(experiment.main(config, results))  # metrics.json and summary.md
    return results.path


def test_a_run_folder_keeps_each_tasks_dataset_and_every_seeds_models(run_folder):
    """Seed 0 in the model's folder (what the app serves), seed 1 in its ``seed_1`` subfolder:
    the same model, trained from another key."""
    import chex

    dataset = load_dataset(harness.dataset_path(run_folder, "navigation"))
    assert dataset.meta.task == "navigation" and dataset.num_users == 16
    for method, cls in (("vpl", R.VPL), ("linear_bayes", R.LinearBayes)):
        folder = harness.model_folder(run_folder, "navigation", method)
        model, params = R.load_model(folder, dataset)
        assert isinstance(model, cls)
        other, other_params = R.load_model(folder / "seed_1", dataset)
        assert other == model and not (folder / "seed_2").exists()
        if method == "vpl":  # LinearBayes' posterior is the same for every key
            with pytest.raises(AssertionError):
                chex.assert_trees_all_close(params, other_params)
        assert not list(folder.rglob(".*.tmp")), "written atomically: no temporary files left"


def test_a_run_reports_how_far_apart_each_latent_model_puts_the_types(run_folder):
    """Per seed, type and latent method: nearest-centre recovery, spread and the distance to the
    nearest other centre; the summary adds how often the types' labels disagree."""
    rows = harness.load_metrics(run_folder)["rows"]
    for metric in ("latent_recovery", "latent_spread", "latent_nearest"):
        got = {(r["method"], r["seed"], r["user_type"]) for r in rows if r["metric"] == metric}
        assert got == {(m, s, t) for m in ("linear_bayes", "vpl") for s in (0, 1)
                       for t in ("goal_a", "goal_b")}, metric  # fmt: skip
    recovery = [r["value"] for r in rows if r["metric"] == "latent_recovery"]
    assert all(0.0 <= v <= 1.0 for v in recovery)
    summary = (run_folder / "summary.md").read_text()
    assert "how often the types' rational labels disagree" in summary
    # goal_a and goal_b users want opposite goals: they disagree on most pairs that do not tie.
    line = next(x for x in summary.splitlines() if x.startswith("| goal_a | 0.00 |"))
    assert float(line.split("|")[3]) > 0.5
    assert "| vpl | goal_b |" in summary and "| linear_bayes | goal_a |" in summary


def test_a_nested_model_an_ensemble_saves_and_loads(run_folder, tmp_path):
    import chex
    import jax

    dataset = load_dataset(harness.dataset_path(run_folder, "navigation"))
    model = R.make_model("btl_ensemble", R.ModelSizes(hidden=(4,), ensemble_size=2))
    batch = R.user_pairs(dataset, "context", model.inputs).batch(jax.numpy.arange(1))
    params = model.init(jax.random.PRNGKey(0), batch)
    loaded, restored = R.load_model(R.save_model(tmp_path / "e", model, params), dataset)
    assert loaded == model
    chex.assert_trees_all_close(restored, params)


def test_the_app_from_a_run_folder_serves_an_info_gain_query(run_folder, tmp_path, capsys):
    from vpl_jax.label.__main__ import build_app

    app, _ = build_app(["--run", str(run_folder), "--out", str(tmp_path)])
    assert "models/navigation_vpl" in capsys.readouterr().out
    client = app.test_client()
    token = client.post("/api/session", json={"person": "ann"}).json["token"]
    q = client.get("/api/ann/query", headers={"X-Token": token}).json["query"]
    assert len(q["pair"]) == 2 and len(q["segments"]) == 2
    latent = client.get("/api/ann/summary", headers={"X-Token": token}).json["latent"]
    assert len(latent["mean"]) == 2  # served by the run's VPL (latent_dim 2)


def test_a_run_folder_without_what_is_asked_is_refused(run_folder, tmp_path, capsys):
    from vpl_jax.label.__main__ import build_app

    for argv, message in [
        (["--run", str(tmp_path)], "holds no <task>_dataset.npz"),
        (["--run", str(run_folder), "--task", "highway"], "no dataset of task 'highway'"),
        (["--run", str(run_folder), "--model", "m"], "--model goes with --dataset"),
        (["--dataset", "d.npz", "--method", "vpl"], "choose within a --run folder"),
    ]:
        with pytest.raises(SystemExit):
            build_app(argv)
        assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def policy_run(load_experiment, tmp_path_factory):
    """A tiny underspecification run on navigation (BTL and VPL, one seed, two PPO updates)."""
    from vpl_jax import policies as P

    experiment = load_experiment("underspecification")
    config = dataclasses.replace(
        experiment.PRESETS["cpu"],
        results_dir=str(tmp_path_factory.mktemp("results")),
        run_name="tiny",
        methods=("btl", "vpl"),
        data=DatasetConfig(
            num_users=16, context_size=8, heldout_size=16, pool_size=512, num_episodes=64
        ),
        reward_train=R.TrainConfig(num_epochs=2, users_per_batch=8),
        sizes=R.ModelSizes(hidden=(8,), latent_dim=2),
        ppo=P.PPOConfig(
            total_timesteps=128, num_envs=8, num_steps=8, num_minibatches=1, hidden_sizes=(8,)
        ),
        num_eval_episodes=1,
        render_episodes=0,
    ).validate()
    results = harness.RunResults("underspecification", config)
    experiment.main(config, results)
    return results.path


def test_a_policy_run_saves_its_policies_and_the_app_shows_the_persons(policy_run, tmp_path):
    from vpl_jax.label.__main__ import build_app
    from vpl_jax.policies.files import load_policy

    for method, z_dim in (("btl", 0), ("vpl", 2)):
        folder = harness.policy_folder(policy_run, "navigation", method)
        assert not list(folder.glob(".*.tmp")), "written atomically: no temporary files left"
        policy = load_policy(folder)
        assert (policy.method, policy.latent_size, policy.env.num_goals) == (method, z_dim, 2)
    app, _ = build_app(["--run", str(policy_run), "--out", str(tmp_path)])
    client = app.test_client()
    assert client.get("/api/scene").json["policy"]["methods"] == ["vpl", "btl"]
    token = client.post("/api/session", json={"person": "ann"}).json["token"]
    shown = client.get("/api/ann/policy", headers={"X-Token": token})
    assert shown.status_code == 200, shown.json
    assert [r["method"] for r in shown.json["rollouts"]] == ["vpl", "btl"]
    assert len(shown.json["z"]) == 2


def test_a_run_without_policies_serves_and_says_why(run_folder, tmp_path):
    from vpl_jax.label.__main__ import build_app

    app, _ = build_app(["--run", str(run_folder), "--out", str(tmp_path)])
    client = app.test_client()
    assert "no saved policies" in client.get("/api/scene").json["policy"]["unavailable"]
    token = client.post("/api/session", json={"person": "ann"}).json["token"]
    assert client.get("/api/ann/policy", headers={"X-Token": token}).status_code == 404


def test_reward_accuracy_scores_people_merged_into_its_dataset(
    load_experiment, run_folder, tmp_path
):
    """People's answers, merged into the run's dataset, are scored as the type ``human``."""
    import json

    import numpy as np

    from vpl_jax.data import save_dataset
    from vpl_jax.label import merge_people

    experiment = load_experiment("reward_accuracy")
    base = load_dataset(harness.dataset_path(run_folder, "navigation"))
    pool = np.asarray(base.pool)
    answers = [{"pair": [int(a), int(b)], "label": 1.0} for a, b in pool[:12]]
    merged = save_dataset(merge_people(base, [{"answers": answers}]), tmp_path / "merged.npz")
    argv = [
        "--tasks", "navigation", "--methods", "linear_bayes", "vpl", "--num-seeds", "1",
        "--data.context-size", "8", "--train.num-epochs", "2", "--train.users-per-batch", "8",
        "--sizes.hidden", "8", "--sizes.latent-dim", "2", "--dataset", str(merged),
        "--results-dir", str(tmp_path), "--run-name", "merged",
    ]  # fmt: skip
    results = harness.run_experiment(
        "reward_accuracy", experiment.Config, experiment.PRESETS, experiment.main, argv
    )
    rows = json.loads((results.path / "metrics.json").read_text())["rows"]
    human = {(r["method"], r["metric"]): r["value"] for r in rows if r["user_type"] == "human"}
    for method in ("vpl", "linear_bayes"):  # the person's 4 held-out answers, scored
        assert 0.0 <= human[(method, "heldout_accuracy")] <= 1.0, human
    assert ("linear_bayes", "theta_alignment") not in human  # a person's theta is unknown
    assert load_dataset(harness.dataset_path(results.path, "navigation")).num_users == 17
