"""HTTP tests of the labelling app (vpl_jax.label) through Flask's test client."""

import pytest

pytest.importorskip("flask")

from vpl_jax.data.dataset import load_dataset, save_dataset
from vpl_jax.label import create_app, person_dataset


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
