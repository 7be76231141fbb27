"""HTTP tests of the labelling app (vpl_jax.label) through Flask's test client."""

import pytest

pytest.importorskip("flask")

from vpl_jax.data.dataset import load_dataset, save_dataset
from vpl_jax.label import create_app, merge_people, person_dataset


def _start(client, person="ann"):
    r = client.post("/api/session", json={"person": person})
    assert r.status_code == 200, r.json
    return r.json["token"]


def test_answers_are_saved_resumed_and_exported(nav_dataset, tmp_path):
    client = create_app(nav_dataset, tmp_path).test_client()
    token = _start(client)
    h = {"X-Token": token}
    seen = set()
    for answer in ["a", "b", "equal", "cant_tell"]:
        q = client.get("/api/ann/query", headers=h).json["query"]
        assert tuple(sorted(q["pair"])) not in seen
        seen.add(tuple(sorted(q["pair"])))
        r = client.post("/api/ann/answer", headers=h, json={"query_id": q["id"], "answer": answer})
        assert r.status_code == 200 and r.json["answered"] == len(seen)
    # A restarted server resumes the session from the file.
    client = create_app(nav_dataset, tmp_path).test_client()
    r = client.post("/api/session", json={"person": "ann", "token": token})
    assert r.json["resumed"] and r.json["answered"] == 4
    state = __import__("json").loads((tmp_path / "ann.json").read_text())
    path = save_dataset(person_dataset(nav_dataset, state), tmp_path / "ann.npz")
    loaded = load_dataset(path)
    assert loaded.meta.type_names[-1] == "human" and loaded.context.pairs.shape == (1, 4, 2)
    # Merged into the dataset: a test user of type human, 4 answers in its K = 8 context slots.
    merged = merge_people(nav_dataset, [state, state])
    assert merged.num_users == nav_dataset.num_users + 2
    assert merged.meta.type_names[-1] == "human" and int(merged.users.type_id[-1]) == 2
    assert merged.context.mask[-1].tolist() == [True] * 3 + [False] * 5  # "can't tell" masked
    assert not merged.heldout.mask[-1].any() and merged.is_test[-2:].all()
    assert load_dataset(save_dataset(merged, tmp_path / "merged.npz")).num_users == 18


def test_bad_requests_are_refused_and_nothing_written(nav_dataset, tmp_path):
    client = create_app(nav_dataset, tmp_path).test_client()
    token = _start(client)
    q = client.get("/api/ann/query", headers={"X-Token": token}).json["query"]
    before = (tmp_path / "ann.json").read_text()
    bad = [
        ({"X-Token": "nope"}, {"query_id": q["id"], "answer": "a"}, 403),
        ({"X-Token": token}, {"query_id": "other", "answer": "a"}, 409),
        ({"X-Token": token}, {"query_id": q["id"], "answer": "maybe"}, 400),
    ]
    for headers, body, status in bad:
        r = client.post("/api/ann/answer", headers=headers, json=body)
        assert r.status_code == status and "error" in r.json
    assert client.post("/api/bob/answer", json={}).status_code == 404
    assert client.post("/api/session", json={"person": "../x"}).status_code == 400
    assert client.post("/api/session", json={"person": "ann"}).status_code == 403
    assert (tmp_path / "ann.json").read_text() == before


def _small_vpl(dataset):
    import jax

    from vpl_jax.rewards import VPL, user_pairs

    model = VPL(latent_dim=2, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
    batch = user_pairs(dataset, "context", model.inputs).batch(jax.numpy.arange(2))
    return model, model.init(jax.random.PRNGKey(1), batch)


@pytest.mark.slow  # 14 s in the fast tier on 2 cores (2026-12-07)
def test_a_saved_model_loads_with_its_params_and_a_bad_folder_is_refused(nav_dataset, tmp_path):
    import json

    import chex

    from vpl_jax.rewards import ModelFileError, load_model, save_model

    model, params = _small_vpl(nav_dataset)
    save_model(tmp_path / "m", model, params)
    loaded, restored = load_model(tmp_path / "m", nav_dataset)
    assert loaded == model
    chex.assert_trees_all_close(restored, params)
    description = json.loads((tmp_path / "m" / "model.json").read_text())
    wider = {**description["fields"], "latent_dim": description["fields"]["latent_dim"] + 1}
    (tmp_path / "m" / "model.json").write_text(json.dumps({**description, "fields": wider}))
    with pytest.raises(ModelFileError, match="shapes do not fit"):
        load_model(tmp_path / "m", nav_dataset)
    (tmp_path / "m" / "model.json").write_text(json.dumps({"class": "Nope", "fields": {}}))
    with pytest.raises(ModelFileError, match="Nope"):
        load_model(tmp_path / "m", nav_dataset)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path / "missing", nav_dataset)


def test_info_gain_asks_the_most_informative_unasked_pair(nav_dataset):
    import jax.numpy as jnp

    from vpl_jax.active import information_gain, particle_probs
    from vpl_jax.label import QueryChooser

    model, params = _small_vpl(nav_dataset)
    chooser = QueryChooser(nav_dataset, model, params)
    assert chooser.queries == "info_gain"
    answers = []
    for label in [1.0, 0.0, 0.5, None, 1.0]:
        pair = chooser.next_pair("ann", answers)
        context, _, available = chooser.context(answers)
        key = chooser.key("ann", len(answers))
        p, _, w = particle_probs(chooser.belief, params, context, chooser.candidates, key)
        gain = jnp.where(available, information_gain(p, w), -jnp.inf)
        assert chooser.candidate_of(pair) == int(jnp.argmax(gain))
        assert tuple(sorted(pair)) not in {tuple(sorted(a["pair"])) for a in answers}
        answers.append({"pair": pair, "label": label})


def test_random_queries_ask_every_pool_pair_once_then_stop(nav_dataset):
    from vpl_jax.label import QueryChooser

    small = nav_dataset.replace(pool=nav_dataset.pool[:10])
    chooser = QueryChooser(small)
    assert chooser.queries == "random"
    answers = []
    while (pair := chooser.next_pair("bob", answers)) is not None:
        answers.append({"pair": pair, "label": 1.0})
    asked = [tuple(sorted(a["pair"])) for a in answers]
    assert len(asked) == len(set(asked)) == chooser.candidates.num_candidates
    with pytest.raises(ValueError, match="needs a trained model"):
        QueryChooser(small, queries="info_gain")


def test_the_page_is_self_contained_and_queries_carry_the_paths(nav_dataset, tmp_path):
    import re

    client = create_app(nav_dataset, tmp_path).test_client()
    r = client.get("/")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and r.mimetype == "text/html" and "<canvas" in html
    assert not re.search(r"<script[^>]*\bsrc=", html), "scripts must be inline (offline)"
    assert "http://" not in html and "https://" not in html
    scene = client.get("/api/scene").json
    assert scene["scene"]["kind"] == "arena" and len(scene["scene"]["goals"]) == 2
    token = _start(client)
    q = client.get("/api/ann/query", headers={"X-Token": token}).json["query"]
    horizon = nav_dataset.segments.positions.shape[1]
    assert [s["index"] for s in q["segments"]] == q["pair"]
    assert all(len(s["positions"]) == horizon for s in q["segments"])


def _answer_as(client, person, token, theta, features, n):
    """Answers n queries over HTTP as a rational labeller with weights theta."""
    import numpy as np

    h = {"X-Token": token}
    for _ in range(n):
        q = client.get(f"/api/{person}/query", headers=h).json["query"]
        a, b = (float(np.sum(features[i] @ theta)) for i in q["pair"])
        answer = "a" if a > b else "b" if b > a else "equal"
        body = {"query_id": q["id"], "answer": answer}
        r = client.post(f"/api/{person}/answer", headers=h, json=body)
        assert r.status_code == 200, r.json


def test_the_summary_places_a_simulated_person_with_their_type(nav_dataset, tmp_path):
    import numpy as np

    from vpl_jax.label.summary import type_thetas

    client = create_app(nav_dataset, tmp_path).test_client()
    token = _start(client)
    empty = client.get("/api/ann/summary", headers={"X-Token": token}).json
    assert empty["theta"]["mean"] == [0.0] * len(nav_dataset.meta.feature_names)
    assert empty["human_model"]["num_labels"] == 0 and empty["latent"] is None
    theta = type_thetas(nav_dataset)["goal_a"]
    features = np.asarray(nav_dataset.segments.features)
    _answer_as(client, "ann", token, theta, features, 16)
    s = client.get("/api/ann/summary", headers={"X-Token": token}).json
    names = s["theta"]["features"]
    mean = dict(zip(names, s["theta"]["mean"], strict=True))
    assert mean["progress_a"] > mean["progress_b"] and all(x > 0 for x in s["theta"]["std"])
    assert s["human_model"]["type"] == "goal_a" and s["human_model"]["epsilon"] == 0.0
    assert client.get("/api/ann/summary", headers={"X-Token": "x"}).status_code == 403


def test_with_vpl_the_summary_places_the_persons_z(nav_dataset, tmp_path):
    model, params = _small_vpl(nav_dataset)
    client = create_app(nav_dataset, tmp_path, model=model, params=params).test_client()
    token = _start(client)
    latent = client.get("/api/ann/summary", headers={"X-Token": token}).json["latent"]
    assert len(latent["mean"]) == model.latent_dim and latent["nearest_type"] in latent["share"]
    assert abs(sum(latent["share"].values()) - 1.0) < 1e-6
    train, _ = nav_dataset.split()
    assert len(latent["map"]["users"]) == len(latent["map"]["user_type"]) == train.num_users
    assert len(latent["map"]["mean"]) == 2 and len(latent["map"]["samples"][0]) == 2


def test_the_command_refuses_a_remote_host_and_info_gain_without_a_model(tmp_path, capsys):
    from vpl_jax.label.__main__ import main

    with pytest.raises(SystemExit):
        main(["--dataset", str(tmp_path / "d.npz"), "--host", "0.0.0.0"])
    assert "needs --allow-remote" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dataset", str(tmp_path / "d.npz"), "--queries", "info_gain"])
    assert "needs --model" in capsys.readouterr().err


# --- the policy that serves the person ----------------------------------------------------------
@pytest.mark.slow  # 11 s in the fast tier on 2 cores (2026-12-07)
def test_a_saved_policy_acts_as_it_did_and_a_bad_folder_is_refused(
    navigation, untrained_policy, tmp_path
):
    import json

    import chex
    import jax

    from vpl_jax.policies.files import PolicyFileError, load_policy, save_policy

    ppo, params = untrained_policy(navigation, 3, key=0)
    folder = save_policy(tmp_path / "p", ppo, params, "navigation", "vpl", {"num_goals": 2})
    assert not list(folder.glob(".*.tmp")), "written atomically: no temporary files left"
    loaded = load_policy(folder)
    assert (loaded.task, loaded.method, loaded.latent_size) == ("navigation", "vpl", 3)
    chex.assert_trees_all_close(loaded.params, params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, navigation.observation_size + 3))
    chex.assert_trees_all_close(loaded.ppo.act(loaded.params, obs), ppo.act(params, obs))
    description = json.loads((folder / "policy.json").read_text())
    for change, message in [
        ({"ppo": {**description["ppo"], "hidden_sizes": [8]}}, "shapes do not fit"),
        ({"latent_size": 2}, "shapes do not fit"),
        ({"task": "nowhere"}, "unknown task 'nowhere'"),
        ({"ppo": {**description["ppo"], "bogus": 1}}, "bogus"),
    ]:
        (folder / "policy.json").write_text(json.dumps({**description, **change}))
        with pytest.raises(PolicyFileError, match=message):
            load_policy(folder)
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy(tmp_path / "missing")


@pytest.mark.slow  # two navigation rollouts compiled, and the summary's programs: ~30 s
def test_show_my_policy_rolls_out_vpl_on_the_persons_z_next_to_btl(
    nav_dataset, nav_policies, tmp_path
):
    import jax.numpy as jnp
    import numpy as np

    model, params = _small_vpl(nav_dataset)
    app = create_app(nav_dataset, tmp_path, model=model, params=params, policies=nav_policies)
    client = app.test_client()
    assert client.get("/api/scene").json["policy"] == {
        "methods": ["vpl", "btl"],
        "unavailable": None,
    }
    token = _start(client)
    h = {"X-Token": token}
    for answer in ["a", "b", "a"]:
        q = client.get("/api/ann/query", headers=h).json["query"]
        client.post("/api/ann/answer", headers=h, json={"query_id": q["id"], "answer": answer})
    assert client.get("/api/ann/policy", headers={"X-Token": "x"}).status_code == 403
    r = client.get("/api/ann/policy", headers=h)
    assert r.status_code == 200, r.json
    shown = r.json
    z = client.get("/api/ann/summary", headers=h).json["latent"]["mean"]
    np.testing.assert_allclose(shown["z"], z, rtol=1e-5)
    assert [x["method"] for x in shown["rollouts"]] == ["vpl", "btl"]
    horizon = nav_policies["vpl"].env.episode_length
    assert all(len(x["path"]["positions"]) == horizon for x in shown["rollouts"])
    # Each is the policy's own episode from the person's one start state, VPL acting on their z
    # (and not on another z: the drawn weights make z matter).
    from vpl_jax.label.policy import PolicyRollouts

    key = PolicyRollouts(nav_dataset, nav_policies, None, seed=0).key("ann")
    theta = jnp.asarray([shown["theta"]])
    for shown_one, z_m in zip(
        shown["rollouts"], (jnp.asarray([z]), jnp.zeros((1, 0))), strict=True
    ):
        ev = nav_policies[shown_one["method"]].evaluate(z_m, theta, key)
        positions = np.asarray(ev.positions[0, 0])
        np.testing.assert_allclose(shown_one["path"]["positions"], positions, atol=1e-4)
        assert shown_one["return"] == pytest.approx(float(ev.true_return[0]), rel=1e-5, abs=1e-5)
    other = nav_policies["vpl"].evaluate(jnp.asarray([z]) + 1.0, theta, key).positions[0, 0]
    assert np.abs(np.asarray(other) - shown["rollouts"][0]["path"]["positions"]).max() > 1e-2


def test_without_saved_policies_the_app_serves_and_says_why_there_is_no_policy(
    nav_dataset, nav_policies, tmp_path
):
    model, params = _small_vpl(nav_dataset)
    cases = [
        (None, model, params, "no saved policies"),
        ({"btl": nav_policies["btl"]}, model, params, "saved no VPL policy"),
        (nav_policies, None, None, "serve the run's VPL reward model"),
    ]
    for i, (policies, served, served_params, reason) in enumerate(cases):
        app = create_app(
            nav_dataset, tmp_path, model=served, params=served_params, policies=policies
        )
        client = app.test_client()
        info = client.get("/api/scene").json["policy"]
        assert info["methods"] == [] and reason in info["unavailable"]
        token = _start(client, f"p{i}")
        r = client.get(f"/api/p{i}/policy", headers={"X-Token": token})
        assert r.status_code == 404 and reason in r.json["error"]


# --- what the page draws -------------------------------------------------------------------------
def test_a_task_variant_is_drawn_as_its_parent_with_its_own_lanes(nav_dataset, tmp_path):
    """Registrations come from a run folder's config (or --register with --dataset), so the
    page draws a registered highway variant as a road with the variant's four lanes."""
    import dataclasses
    import json

    from vpl_jax.label.__main__ import build_app

    name = "highway_4lanes_for_label_tests"
    register = tmp_path / "variant.py"
    register.write_text(
        "import functools\nfrom vpl_jax import envs\n"
        f"envs.register({name!r}, functools.partial(envs.Highway, num_lanes=4, num_cars=3))\n"
    )
    # A stand-in dataset of the variant: only its task name matters to the layout.
    variant = nav_dataset.replace(meta=dataclasses.replace(nav_dataset.meta, task=name))
    run = tmp_path / "run"
    save_dataset(variant, run / f"{name}_dataset.npz")
    (run / "config.json").write_text(json.dumps({"register": [str(register)]}))
    for argv in (
        ["--run", str(run)],
        ["--dataset", str(run / f"{name}_dataset.npz"), "--register", str(register)],
    ):
        app, _ = build_app([*argv, "--out", str(tmp_path / "labels")])
        layout = app.test_client().get("/api/scene").json["scene"]
        assert layout["kind"] == "road" and len(layout["lanes"]) == 4, argv


# --- people's answers in the experiments ----------------------------------------------------------
def test_an_experiment_takes_a_merged_dataset_and_names_the_field_of_a_bad_one(
    nav_dataset, load_experiment, tmp_path, capsys
):
    import numpy as np

    from vpl_jax import harness

    experiment = load_experiment("reward_accuracy")
    state = {"answers": [{"pair": [0, 1], "label": 1.0}, {"pair": [2, 3], "label": 0.0}]}
    merged = save_dataset(merge_people(nav_dataset, [state]), tmp_path / "merged.npz")
    base = ["--tasks", "navigation", "--data.context-size", "8", "--results-dir", str(tmp_path)]
    config = harness.parse(experiment.Config, experiment.PRESETS, [*base, "--dataset", str(merged)])
    assert config.dataset == (str(merged),)
    dataset = harness.task_dataset(config, "navigation", None)  # the file, not a built one
    assert dataset.num_users == nav_dataset.num_users + 1 and dataset.meta.type_names[-1] == "human"
    all_test = nav_dataset.replace(is_test=np.ones(nav_dataset.num_users, bool))
    cases = [
        ([*base, "--dataset", str(tmp_path / "no.npz")], "dataset='"),
        (["--tasks", "highway", "--dataset", str(merged)], "which is not one of tasks=['highway']"),
        ([*base, "--data.context-size", "4", "--dataset", str(merged)], "has 8 context pairs"),
        ([*base, "--dataset", str(merged), str(merged)], "given two dataset files"),
        ([*base, "--dataset", str(save_dataset(all_test, tmp_path / "t.npz"))], "0 training"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            harness.parse(experiment.Config, experiment.PRESETS, argv)
        err = capsys.readouterr().err
        assert "error: dataset" in err and message in err, (argv, err)
