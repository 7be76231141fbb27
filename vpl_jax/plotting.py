"""Figures: one house style for every experiment's plots, and the arena picture.

Error bars and bands are 95 % confidence intervals over seeds (:mod:`vpl_jax.intervals`, as
``summary.md`` reports them), never the spread over users: average over users first, then pass
one value per seed.

matplotlib is an optional dependency (the ``figures`` extra); headless machines get its Agg
backend automatically.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from vpl_jax.intervals import seed_interval

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

__all__ = ["band", "bars", "errorbars", "over_seeds", "plt"]


def over_seeds(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, low, high)``, each ``f64[N]``: per column of ``values: f32[S, N]`` (seeds along
    ``axis``), the mean over its finite seeds and the 95 % interval over them
    (:func:`vpl_jax.intervals.seed_interval`; one seed gives a zero-width interval, none NaN)."""
    values = np.moveaxis(np.asarray(values, dtype=float), axis, 0)
    values = values.reshape(len(values), -1)
    out = np.full((3, values.shape[1]), np.nan)
    for n, column in enumerate(values.T):
        finite = column[np.isfinite(column)]
        if finite.size:
            interval = seed_interval(finite)
            out[:, n] = interval.estimate, interval.low, interval.high
    return out[0], out[1], out[2]


def band(ax, x, values, label: str, axis: int = 0, **kwargs):
    """Plots the mean over seeds of ``values: f32[S, N]`` (seeds along ``axis``) against
    ``x: [N]``, with the 95 % interval over seeds as a band (:func:`over_seeds`)."""
    mean, low, high = over_seeds(values, axis)
    (line,) = ax.plot(x, mean, label=label, **kwargs)
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    return line


def _mean_and_error(values, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean f64[N], yerr f64[2, N])`` of :func:`over_seeds`, as matplotlib's error bars."""
    mean, low, high = over_seeds(values, axis)
    # A percentile interval need not hold the mean to the last bit; matplotlib refuses a
    # negative error.
    return mean, np.maximum(np.stack([mean - low, high - mean]), 0.0)


def bars(ax, x, values, width: float, label: str, axis: int = 0, **kwargs):
    """Bars at ``x: [N]`` of the mean over seeds of ``values: f32[S, N]`` (seeds along
    ``axis``), with the 95 % interval over seeds as error bars (:func:`over_seeds`)."""
    mean, yerr = _mean_and_error(values, axis)
    kwargs.setdefault("capsize", 2)
    return ax.bar(x, mean, width, yerr=yerr, label=label, **kwargs)


def errorbars(ax, x, values, label: str, axis: int = 0, **kwargs):
    """A line through the mean over seeds of ``values: f32[S, N]`` (seeds along ``axis``) at
    ``x: [N]``, with the 95 % interval over seeds as error bars (:func:`over_seeds`)."""
    mean, yerr = _mean_and_error(values, axis)
    kwargs.setdefault("capsize", 2)
    return ax.errorbar(x, mean, yerr=yerr, label=label, **kwargs)


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
