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


def draw_arena(ax, env) -> None:
    """Draws the navigation arena seen from above: walls, goals, hazard, the bystander's path."""
    from matplotlib.patches import Circle, Rectangle

    from vpl_jax.envs import navigation as nav

    ax.add_patch(Rectangle((-1, -1), 2, 2, fill=False, lw=1.5, color="black"))
    for name, (x, y) in zip(env.goal_names, np.asarray(env.goals), strict=True):
        ax.add_patch(Circle((x, y), env.goal_radius, color="tab:green", alpha=0.25))
        ax.text(x, y, name, ha="center", va="center", fontsize=9, weight="bold")
    ax.add_patch(Circle(nav.HAZARD_CENTER, nav.HAZARD_RADIUS, color="tab:red", alpha=0.3))
    amp = nav.BYSTANDER_AMPLITUDE
    ax.plot([-amp, amp], [nav.BYSTANDER_Y] * 2, ls="--", color="tab:purple", lw=1)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_paths(ax, positions, colors, alpha: float = 0.6) -> None:
    """Plots paths ``positions: f32[N, T, 2]`` with one colour per path (start dot, end cross)."""
    positions = np.asarray(positions)
    for path, color in zip(positions, colors, strict=True):
        ax.plot(path[:, 0], path[:, 1], color=color, lw=0.8, alpha=alpha)
        ax.plot(*path[0], "o", color=color, ms=2, alpha=alpha)
        ax.plot(*path[-1], "x", color=color, ms=4, alpha=alpha)
