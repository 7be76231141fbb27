"""Figures: one house style for every experiment's plots, and the arena picture.

matplotlib is an optional dependency (the ``figures`` extra); headless machines get its Agg
backend automatically.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
    }
)

__all__ = ["band", "plt"]


def band(ax, x, values, label: str, axis: int = 0, **kwargs):
    """Plots the mean of ``values`` over ``axis`` with a 95% normal confidence band."""
    values = np.asarray(values, dtype=float)
    mean = np.nanmean(values, axis=axis)
    n = np.maximum(np.sum(np.isfinite(values), axis=axis), 1)
    half = 1.96 * np.nanstd(values, axis=axis) / np.sqrt(n)
    (line,) = ax.plot(x, mean, label=label, **kwargs)
    ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    return line
