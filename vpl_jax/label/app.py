"""The labelling app: sessions, queries from the dataset's pool, validated and atomic answers."""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import jax
import numpy as np
from flask import Flask, Response, jsonify, request

from vpl_jax.atomic import atomic_write
from vpl_jax.data.dataset import PreferenceDataset, Queries
from vpl_jax.envs.base import FeatureEnv
from vpl_jax.label.policy import PolicyRollouts
from vpl_jax.label.queries import QueryChooser
from vpl_jax.label.scene import scene, segment_view
from vpl_jax.label.summary import LatentMap, human_model_summary, theta_posterior
from vpl_jax.policies.files import SavedPolicy
from vpl_jax.render import DRAW_JS
from vpl_jax.rewards import VPL

# The answers the page offers, as labels (None: "can't tell", stored masked out).
ANSWERS = {"a": 1.0, "b": 0.0, "equal": 0.5, "cant_tell": None}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The page with the shared drawing code inlined: one self-contained file.
_PAGE = (
    (resources.files("vpl_jax.label") / "page.html")
    .read_text(encoding="utf-8")
    .replace("/*DRAW_JS*/", DRAW_JS)
)


class LabelStore:
    """Per-person answer files under ``folder`` (``<person>.json``), each written atomically."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, person: str) -> Path:
        return self.folder / f"{person}.json"

    def load(self, person: str) -> dict:
        path = self.path(person)
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        return {"person": person, "token": secrets.token_hex(16), "answers": [], "pending": None}

    def save(self, state: dict) -> None:
        with atomic_write(self.path(state["person"])) as f:
            json.dump(state, f)


def person_dataset(base: PreferenceDataset, state: dict) -> PreferenceDataset:
    """One person's answers as a one-user dataset of type ``human`` sharing ``base``'s segments."""
    answers = state["answers"]
    pairs = np.asarray([a["pair"] for a in answers], np.int32).reshape(1, -1, 2)
    labels = np.asarray(
        [a["label"] if a["label"] is not None else 0.5 for a in answers], np.float32
    )
    mask = np.asarray([a["label"] is not None for a in answers], bool)
    queries = Queries(pairs=pairs, labels=labels[None], mask=mask[None])
    one = base.select_users(np.asarray([0]))
    type_names = (*base.meta.type_names, "human")
    users = one.users.replace(
        theta=np.zeros_like(np.asarray(one.users.theta)),  # unknown: validate refuses NaN
        type_id=np.full_like(np.asarray(one.users.type_id), len(type_names) - 1),
    )
    meta = type(base.meta)(
        task=base.meta.task, feature_names=base.meta.feature_names, type_names=type_names
    )
    return one.replace(
        users=users, context=queries, heldout=queries, is_test=np.ones(1, bool), meta=meta
    )


def _queries(answers: list[dict], size: int) -> Queries:
    """One person's ``answers`` as ``size`` slots of :class:`Queries` (leading user axis of 1);
    slots beyond the answers, and "can't tell" answers, are masked out."""
    pairs = np.zeros((1, size, 2), np.int32)
    labels = np.full((1, size), 0.5, np.float32)
    mask = np.zeros((1, size), bool)
    for i, a in enumerate(answers[:size]):
        pairs[0, i] = a["pair"]
        if a["label"] is not None:
            labels[0, i], mask[0, i] = a["label"], True
    return Queries(pairs=pairs, labels=labels, mask=mask)


def merge_people(
    base: PreferenceDataset, states: list[dict], test: bool = True
) -> PreferenceDataset:
    """``base`` with each person (their saved ``<person>.json`` state) added as a user of type
    ``human``: their first K answers (``base``'s context size) are their context, the next M
    their held-out pairs; slots they did not fill, and "can't tell", are masked out. The people
    are test users when ``test``. Their true θ is unknown, so it is stored as zeros."""
    type_names = tuple(base.meta.type_names)
    if "human" not in type_names:
        type_names = (*type_names, "human")
    k, m = base.context_size, base.heldout.pairs.shape[1]
    parts = [base.replace(meta=dataclasses.replace(base.meta, type_names=type_names))]
    for state in states:
        one = person_dataset(base, state)
        parts.append(
            one.replace(
                users=one.users.replace(
                    type_id=np.full_like(np.asarray(one.users.type_id), type_names.index("human"))
                ),
                context=_queries(state["answers"], k),
                heldout=_queries(state["answers"][k:], m),
                is_test=np.full(1, test),
                meta=parts[0].meta,
            )
        )
    stack = lambda *xs: np.concatenate([np.asarray(x) for x in xs])  # noqa: E731
    merged = parts[0].replace(
        users=jax.tree.map(stack, *[p.users for p in parts]),
        context=jax.tree.map(stack, *[p.context for p in parts]),
        heldout=jax.tree.map(stack, *[p.heldout for p in parts]),
        is_test=stack(*[p.is_test for p in parts]),
    )
    return merged.validate()


def create_app(
    dataset: PreferenceDataset,
    folder: str | Path,
    seed: int = 0,
    model=None,
    params=None,
    queries: str | None = None,
    policies: Mapping[str, SavedPolicy] | None = None,
    env: FeatureEnv | None = None,
) -> Flask:
    """The Flask app serving ``dataset``'s pool; answers go to ``folder``.

    ``model``, ``params``: a trained VPL or LinearBayes (one seed) that chooses the queries and
    places the person; ``queries``: ``"info_gain"`` or ``"random"`` (None: info_gain with a model,
    else random; see :class:`~vpl_jax.label.queries.QueryChooser`). ``policies``: the run's
    saved policies by method (:func:`~vpl_jax.policies.files.load_policy`), which "show my
    policy" rolls out (:mod:`vpl_jax.label.policy`). ``env``: the task as it was built, for its
    layout (None: the environment the policies act in, else the task as registered).
    """
    app = Flask("vpl_jax.label")
    store = LabelStore(folder)
    chooser = QueryChooser(dataset, model, params, queries, seed)
    policies = dict(policies or {})
    if env is None and policies:
        env = next(iter(policies.values())).env
    layout = scene(dataset, env)
    latent_map = LatentMap(dataset, model, params, chooser) if isinstance(model, VPL) else None
    rollouts = PolicyRollouts(dataset, policies, latent_map, seed)

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    def next_query(state: dict) -> dict | None:
        pair = chooser.next_pair(state["person"], state["answers"])
        return None if pair is None else {"id": secrets.token_hex(8), "pair": pair}

    def shown(query: dict | None) -> dict | None:
        """A pending query as the page gets it: with both segments' paths to animate."""
        if query is None:
            return None
        return {**query, "segments": [segment_view(dataset, i) for i in query["pair"]]}

    def authorised(person: str):
        if not _NAME.match(person):
            return None, error(400, f"person name {person!r} must be 1-64 letters, digits, _ or -")
        if not store.path(person).is_file():
            return None, error(404, f"no session for {person!r}; POST /api/session first")
        state = store.load(person)
        if request.headers.get("X-Token") != state["token"]:
            return None, error(403, "wrong or missing session token (X-Token header)")
        return state, None

    @app.post("/api/session")
    def session():
        body = request.get_json(silent=True) or {}
        person = str(body.get("person", ""))
        if not _NAME.match(person):
            return error(400, f"person name {person!r} must be 1-64 letters, digits, _ or -")
        resumed = store.path(person).is_file()
        state = store.load(person)
        if resumed and body.get("token") != state["token"]:
            return error(403, f"{person!r} exists; resuming needs its token")
        if state["pending"] is None:
            state["pending"] = next_query(state)
        store.save(state)
        return jsonify(
            {"token": state["token"], "resumed": resumed, "answered": len(state["answers"])}
        )

    @app.get("/api/<person>/query")
    def query(person):
        state, bad = authorised(person)
        if bad:
            return bad
        return jsonify(
            {
                "query": shown(state["pending"]),
                "answered": len(state["answers"]),
                "answers": list(ANSWERS),
            }
        )

    @app.post("/api/<person>/answer")
    def answer(person):
        state, bad = authorised(person)
        if bad:
            return bad
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object {query_id, answer}")
        if body.get("answer") not in ANSWERS:
            return error(400, f"answer must be one of {list(ANSWERS)}, got {body.get('answer')!r}")
        pending = state["pending"]
        if pending is None or body.get("query_id") != pending["id"]:
            return error(409, "that query was not issued to this session (or was already answered)")
        state["answers"].append(
            {"pair": pending["pair"], "label": ANSWERS[body["answer"]], "answer": body["answer"]}
        )
        state["pending"] = next_query(state)
        store.save(state)
        return jsonify({"answered": len(state["answers"]), "query": shown(state["pending"])})

    @app.get("/api/<person>/summary")
    def summary(person):
        """What the person's answers so far say about them (:mod:`vpl_jax.label.summary`)."""
        state, bad = authorised(person)
        if bad:
            return bad
        answers = state["answers"]
        return jsonify(
            {
                "answered": len(answers),
                "theta": theta_posterior(dataset, answers, model, params),
                "human_model": human_model_summary(dataset, answers),
                "latent": None if latent_map is None else latent_map.place(person, answers),
            }
        )

    @app.get("/api/<person>/policy")
    def policy(person):
        """The person's policy next to BTL's, from the same start (:mod:`vpl_jax.label.policy`);
        404 with the reason when the app has no policy to show."""
        state, bad = authorised(person)
        if bad:
            return bad
        if rollouts.reason:
            return error(404, f"no policy to show: {rollouts.reason}")
        return jsonify(
            {"answered": len(state["answers"]), **rollouts.rollout(person, state["answers"])}
        )

    @app.get("/api/scene")
    def scene_():
        """The task's layout and names (public: nothing about any person)."""
        return jsonify(
            {
                "scene": layout,
                "feature_names": list(dataset.meta.feature_names),
                "type_names": list(dataset.meta.type_names),
                "answers": list(ANSWERS),
                "policy": {"methods": rollouts.methods, "unavailable": rollouts.reason},
            }
        )

    @app.get("/")
    def page():
        """The labelling page: one self-contained HTML file (inline script and style)."""
        return Response(_PAGE, mimetype="text/html")

    return app
