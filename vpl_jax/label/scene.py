"""What the page draws: the task's layout (:func:`vpl_jax.render.scene`) and segments' paths.

Only the dataset travels to the app (no environment), so the layout comes from the task's name
and the dataset's feature names; highway's lane count is not recorded, so the environment's
default three lanes are drawn.
"""

from __future__ import annotations

from vpl_jax import render
from vpl_jax.data.dataset import PreferenceDataset


def scene(dataset: PreferenceDataset) -> dict:
    """The layout of ``dataset``'s task (:func:`vpl_jax.render.scene`)."""
    return render.scene(dataset.meta.task, dataset.meta.feature_names)


def segment_view(dataset: PreferenceDataset, index: int) -> dict:
    """``{"index", "positions": [[x, y]] * H, "alive": [bool] * H}`` of segment ``index``."""
    path = render.path_view(dataset.segments.positions[index], dataset.segments.alive[index])
    return {"index": int(index), **path}
