"""What the page draws under a segment's path: the task's static layout, seen from above.

Only the dataset travels to the app (no environment), so the layout comes from the task modules'
geometry constants and the dataset's feature names:

* navigation — the arena ``[-1, 1]^2``, the goals (one per ``progress_*`` feature, on the circle
  the environment uses), the hazard disc and the bystander's patrol line;
* highway — the lane centres and road edges of the environment's default three lanes (the
  dataset does not record the lane count); the view follows the ego car along the road;
* any other task (e.g. ant) — just the path, in bounds fitted to it.
"""

from __future__ import annotations

import numpy as np

from vpl_jax.data.dataset import PreferenceDataset


def scene(dataset: PreferenceDataset) -> dict:
    """A JSON-able description of ``dataset``'s task layout (see the module docstring):
    ``{"task", "kind": "arena" | "road" | "path", ...}``."""
    task = dataset.meta.task
    names = tuple(dataset.meta.feature_names)
    if task == "navigation":
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
    if task == "highway":
        from vpl_jax.envs import highway as hw

        lanes = np.asarray(hw.lane_centres(3)).tolist()
        return {
            "task": task,
            "kind": "road",
            "lanes": lanes,
            "lane_width": hw.LANE_WIDTH,
            "car": [hw.CAR_LENGTH, hw.CAR_WIDTH],
        }
    return {"task": task, "kind": "path"}


def segment_view(dataset: PreferenceDataset, index: int) -> dict:
    """``{"index", "positions": [[x, y]] * H, "alive": [bool] * H}`` of segment ``index``."""
    positions = np.asarray(dataset.segments.positions[index], float)
    alive = np.asarray(dataset.segments.alive[index], bool)
    return {"index": int(index), "positions": positions.round(4).tolist(), "alive": alive.tolist()}
