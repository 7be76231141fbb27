"""What the page draws: the task's layout (:func:`vpl_jax.render.scene`) and segments' paths.

The layout comes from the dataset's task name and feature names: a registered variant is drawn
as its root task, and highway's lanes are those of the task as registered, or of the
environment the app was given (e.g. the one its saved policies act in), so a task built with
other arguments than its registered ones is drawn as it was built.
"""

from __future__ import annotations

from vpl_jax import render
from vpl_jax.data.dataset import PreferenceDataset
from vpl_jax.envs.base import FeatureEnv


def scene(dataset: PreferenceDataset, env: FeatureEnv | None = None) -> dict:
    """The layout of ``dataset``'s task (:func:`vpl_jax.render.scene`), as ``env`` has it when
    given."""
    return render.scene(dataset.meta.task, dataset.meta.feature_names, env)


def segment_view(dataset: PreferenceDataset, index: int) -> dict:
    """``{"index", "positions": [[x, y]] * H, "alive": [bool] * H}`` of segment ``index``."""
    path = render.path_view(dataset.segments.positions[index], dataset.segments.alive[index])
    return {"index": int(index), **path}
