"""Self-contained animations of paths seen from above: no scripts, styles or fonts from anywhere.

Brax's HTML viewer loads three.js and its helpers from public CDNs, so on an offline node (where
many researchers run) its page is blank. These renders are one HTML file with an inline script
(``draw.js``, shared with the labelling page) that draws the task's layout and each path on a
canvas, step by step:

* :func:`scene` — a task's static layout as JSON: navigation's arena, goals, hazard and
  bystander; highway's lanes (as many as the task has) and road edges (the view follows the ego
  car); a registered variant as its root task; any other task (e.g. ant) just the path, in
  bounds fitted to it;
* :func:`rollouts_html` — a page of animated paths in a grid (e.g. test users by method).

A task's name and feature names are all it needs (highway's lane count comes from the task
built as registered, unless the caller passes the environment it used), so the labelling app,
which has only a dataset, draws the same pictures.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from importlib import resources

import numpy as np

#: The drawing functions (``view``, ``drawLayout``, ``drawSegment``) as JavaScript source.
DRAW_JS = (resources.files("vpl_jax.render") / "draw.js").read_text(encoding="utf-8")


def scene(task: str, feature_names: Sequence[str], env=None) -> dict:
    """A JSON-able description of ``task``'s layout (see the module docstring):
    ``{"task", "kind": "arena" | "road" | "path", ...}``.

    A registered variant of a task (:func:`vpl_jax.envs.lineage`) is drawn as its root task.
    Navigation's goals are those its ``progress_*`` features name; highway's lanes are those of
    ``env`` (the task as it was built), or, without one, of the task built as registered. A
    task that is not registered (e.g. a variant whose registration was not imported) is drawn
    as a plain path.
    """
    from vpl_jax import envs

    names = tuple(feature_names)
    root = envs.lineage(task)[-1] if task in envs.names() else task
    if root == "navigation":
        from vpl_jax.envs import navigation as nav

        num_goals = sum(n.startswith("progress_") for n in names)
        goals = zip(
            names[:num_goals], np.asarray(nav.goal_positions(num_goals)).tolist(), strict=True
        )
        return {
            "task": task,
            "kind": "arena",
            "bounds": [-1.0, 1.0, -1.0, 1.0],
            "goals": [{"name": n[len("progress_") :], "xy": g} for n, g in goals],
            "goal_radius": 0.2,  # the environment's default success radius
            "hazard": {"xy": list(nav.HAZARD_CENTER), "r": nav.HAZARD_RADIUS},
            "bystander": {
                "y": nav.BYSTANDER_Y,
                "x": [-nav.BYSTANDER_AMPLITUDE, nav.BYSTANDER_AMPLITUDE],
                "r": nav.PERSONAL_SPACE,
            },
        }
    if root == "highway":
        from vpl_jax.envs import highway as hw

        num_lanes = (env if env is not None else envs.make(task)).num_lanes
        return {
            "task": task,
            "kind": "road",
            "lanes": np.asarray(hw.lane_centres(num_lanes)).tolist(),
            "lane_width": hw.LANE_WIDTH,
            "car": [hw.CAR_LENGTH, hw.CAR_WIDTH],
        }
    return {"task": task, "kind": "path"}


def path_view(positions, alive=None) -> dict:
    """``{"positions": [[x, y]] * T, "alive": [bool] * T}`` of one path ``positions: f32[T, 2]``
    (``alive: bool[T]``; None: alive throughout), as the drawing code takes it."""
    positions = np.asarray(positions, float)
    alive = np.ones(len(positions), bool) if alive is None else np.asarray(alive, bool)
    return {"positions": positions.round(4).tolist(), "alive": alive.tolist()}


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<!-- Self-contained: no external scripts, styles or fonts, so it draws on an offline node. -->
<style>
  body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }}
  table {{ border-collapse: collapse; }}
  th, td {{ padding: .3em .6em; text-align: center; font-weight: normal; }}
  canvas {{ background: #fff; border: 1px solid #bbb; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{note}</p>
<table id="grid"></table>
<script>
{draw_js}
const SCENE = {scene};
const ROWS = {rows};
const COLUMNS = {columns};
const PATHS = {paths};  // PATHS[row][column]: a path or null
const grid = document.getElementById("grid"), canvases = [];
grid.insertRow().innerHTML = "<th></th>" + COLUMNS.map((c) => `<th>${{c}}</th>`).join("");
ROWS.forEach((name, r) => {{
  const row = grid.insertRow();
  row.insertCell().textContent = name;
  COLUMNS.forEach((_, c) => {{
    const cell = row.insertCell();
    if (!PATHS[r][c]) return;
    const canvas = document.createElement("canvas");
    canvas.width = 360; canvas.height = 300;
    cell.appendChild(canvas); canvases.push([canvas, PATHS[r][c]]);
  }});
}});
let frame = 0;
const steps = Math.max(1, ...canvases.map(([, p]) => p.positions.length));
function tick() {{
  const f = frame % (steps + 10);  // a short pause on the last step, then replay
  for (const [canvas, path] of canvases) drawSegment(canvas, SCENE, path, f);
  frame += 1;
  setTimeout(() => requestAnimationFrame(tick), 80);
}}
tick();
</script>
</body>
</html>
"""


def rollouts_html(
    layout: dict,
    paths: Sequence[Sequence[dict | None]],
    rows: Sequence[str],
    columns: Sequence[str],
    title: str = "Rollouts",
    note: str = "",
) -> str:
    """A self-contained HTML page animating ``paths[r][c]`` (each from :func:`path_view`, or
    None for an empty cell) on ``layout`` (:func:`scene`) in a grid of ``rows`` by
    ``columns``."""
    if len(paths) != len(rows) or any(len(p) != len(columns) for p in paths):
        raise ValueError(f"paths must be {len(rows)} rows of {len(columns)} (rows x columns)")

    def js(value) -> str:  # JSON inside <script>: "</" must not end the script early
        return json.dumps(value).replace("</", "<\\/")

    return _PAGE.format(
        title=html.escape(title),
        note=html.escape(note),
        draw_js=DRAW_JS,
        scene=js(layout),
        rows=js(list(rows)),
        columns=js(list(columns)),
        paths=js([list(p) for p in paths]),
    )
