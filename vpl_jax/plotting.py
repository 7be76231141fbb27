"""Figures: one house style for every experiment's plots, a grid of metrics from result rows
(:func:`metric_grid`), and the arena picture.

Error bars and bands are 95 % confidence intervals over seeds (:mod:`vpl_jax.intervals`, as
``summary.md`` reports them), never the spread over users: average over users first, then pass
one value per seed.

matplotlib is an optional dependency (the ``figures`` extra); headless machines get its Agg
backend automatically.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

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

__all__ = ["band", "bars", "errorbars", "metric_grid", "over_seeds", "plt"]


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


def metric_grid(
    rows: Sequence[dict],
    metrics: Sequence[str],
    columns: dict[str, str],
    lines: Sequence[str],
    *,
    column: str,
    x: str,
    line: str = "method",
    variant: tuple[str, str, str] | None = None,
    colors: Sequence[str] | None = None,
) -> plt.Figure:
    """A grid of line plots of long-format result rows (``{"metric", "value", ...}``, as
    :meth:`vpl_jax.harness.RunResults.add` writes them): a row of axes per metric, a column per
    value of ``row[column]``, a line per value of ``row[line]`` (its ``value`` against
    ``row[x]``, sorted by x). Where a line has several rows at one x (one per seed), it goes
    through their mean with the 95 % interval over them as error bars (:func:`errorbars`).

    Args:
      rows: the rows; each has ``"metric"``, ``"value"`` and the keys named below.
      metrics: the metrics to plot, in order (one without rows gets no axes row).
      columns: the values of ``row[column]`` to plot, in order, each mapped to its x label.
      lines: the values of ``row[line]`` to draw, in order (solid, circles).
      variant: ``(key, value, label)``: rows whose ``key`` is ``value`` form lines of their own,
        dashed with squares, labelled ``"{line} ({label})"``.
      colors: the order in which line values take the colour cycle (default ``lines``), so a
        line keeps its colour whichever lines are drawn.
    """
    metrics = [m for m in metrics if any(r["metric"] == m for r in rows)]
    fig, axes = plt.subplots(
        len(metrics), len(columns), figsize=(3.2 * len(columns), 2.8 * len(metrics)), squeeze=False
    )
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = dict(zip(lines if colors is None else colors, palette, strict=False))

    def is_variant(r: dict) -> bool:
        return variant is not None and r[variant[0]] == variant[1]

    for i, metric in enumerate(metrics):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            for name in lines:
                for dashed, style in ((False, "-o"), (True, "--s")):
                    at = defaultdict(list)  # x -> its values (one per seed)
                    for r in rows:
                        if (
                            r["metric"] == metric
                            and r[line] == name
                            and r[column] == col
                            and is_variant(r) == dashed
                        ):
                            at[r[x]].append(r["value"])
                    if not at:
                        continue
                    label = f"{name} ({variant[2]})" if dashed else name
                    xs = sorted(at)
                    values = np.full((max(map(len, at.values())), len(xs)), np.nan)  # [S, N]
                    for n, v in enumerate(xs):
                        values[: len(at[v]), n] = at[v]
                    if len(values) == 1:
                        ax.plot(xs, values[0], style, color=color[name], label=label, ms=4)
                    else:
                        errorbars(ax, xs, values, label, fmt=style, color=color[name], ms=4)
            if i == len(metrics) - 1:
                ax.set_xlabel(columns[col])
            if j == 0:
                ax.set_ylabel(metric.replace("_", " "))
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="lower center",
        ncol=4,
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


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
