"""Figures of an active-query study (``experiments/active_queries.py``): accuracy and a
latent-conditioned policy's success against the number of queries asked, and the uncertainty
report.

* :func:`plot_accuracy` — per task and model, each criterion's held-out accuracy;
* :func:`plot_policy_success` — per task, the policy's success on each criterion's posteriors;
* :func:`plot_uncertainty` — per task, spread against error and the reliability diagram of the
  random-query runs (:func:`~vpl_jax.active.uncertainty.uncertainty_report`).

Lines are means over seeds with their 95 % band (:func:`vpl_jax.plotting.band`), each seed's
value its mean over users; random is the grey dashed control. Traces are keyed by
``(model, criterion)`` and drawn in the order of their keys. Needs matplotlib (the ``figures``
extra), so :mod:`vpl_jax.active` does not import this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from vpl_jax.active.evaluation import mean_curve
from vpl_jax.plotting import band, plt

if TYPE_CHECKING:
    from vpl_jax.active.elicitation import Trace
    from vpl_jax.active.uncertainty import UncertaintyReport

#: How a criterion's line is drawn: random, the control, grey and dashed.
RANDOM_STYLE = {"ls": "--", "color": "grey"}


def _style(criterion: str) -> dict[str, Any]:
    return RANDOM_STYLE if criterion == "random" else {}


def plot_accuracy(
    per_task: dict[str, dict[tuple[str, str], Trace]], n_queries, reference_queries: int
) -> plt.Figure:
    """A panel per task (rows) and model (columns): each criterion's held-out accuracy
    (``trace.accuracy: f32[S, U, R+1]``) after ``n_queries: [R+1]`` queries, with a dotted line
    at random's accuracy after ``reference_queries``."""
    models = list(dict.fromkeys(m for traces in per_task.values() for m, _ in traces))
    fig, axes = plt.subplots(
        len(per_task),
        len(models),
        figsize=(4.6 * len(models), 3.6 * len(per_task)),
        squeeze=False,
        sharex=True,
    )
    for row, (task, traces) in zip(axes, per_task.items(), strict=True):
        for ax, model in zip(row, models, strict=True):
            for (m, criterion), trace in traces.items():
                if m != model:
                    continue
                acc = np.nanmean(np.asarray(trace.accuracy), axis=1)  # [S, U, R+1] -> [S, R+1]
                band(ax, n_queries, acc, criterion, marker=".", **_style(criterion))
            if (model, "random") in traces:
                ref = list(n_queries).index(reference_queries)
                ax.axhline(mean_curve(traces[model, "random"])[ref], color="grey", lw=0.7, ls=":")
            ax.set_title(f"{task}: {model}")
            ax.set_xlabel("queries asked")
            ax.set_ylabel("held-out accuracy (test users)")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_policy_success(policy: dict[str, dict[str, Any]], n_queries) -> plt.Figure:
    """A panel per task: the latent-conditioned policy's success on each criterion's posterior
    means (``policy[task][criterion]``, a :func:`vpl_jax.pipeline.policy_curves` evaluation with
    ``success: f32[S, R+1, U]``) after ``n_queries: [R+1]`` queries."""
    fig, axes = plt.subplots(1, len(policy), figsize=(4.8 * len(policy), 3.6), squeeze=False)
    for ax, (task, evaluations) in zip(axes[0], policy.items(), strict=True):
        for criterion, ev in evaluations.items():
            success = np.moveaxis(np.asarray(ev.success), 1, -1)  # [S, U, R+1]
            # The band is over seeds: each seed's mean over its users.
            mean = np.nanmean(success, axis=1)
            band(ax, n_queries, mean, criterion, marker=".", **_style(criterion))
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{task}: VPL policy on the elicited z")
        ax.set_xlabel("queries asked")
        ax.set_ylabel("success (test users)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_uncertainty(
    per_task: dict[str, dict[tuple[str, str], Trace]],
    reports: dict[tuple[str, str], UncertaintyReport],
    round_index: int,
) -> plt.Figure:
    """A row per task: each model's random-query users, their spread (ranked within the model)
    against their held-out error after ``round_index`` rounds; and the reliability diagram
    after all queries (``reports[task, model]``)."""
    fig, axes = plt.subplots(len(per_task), 2, figsize=(10, 3.8 * len(per_task)), squeeze=False)
    for (ax_scatter, ax_rel), (task, traces) in zip(axes, per_task.items(), strict=True):
        for (model, criterion), trace in traces.items():
            if criterion != "random":
                continue
            spread = np.asarray(trace.spread[..., round_index]).ravel()
            error = 1.0 - np.asarray(trace.accuracy[..., round_index]).ravel()
            # Spreads of different models are on different scales: rank within each model.
            rank = np.argsort(np.argsort(spread)) / max(len(spread) - 1, 1)
            corr = reports[task, model].correlation[round_index]
            ax_scatter.scatter(rank, error, s=10, alpha=0.6, label=f"{model} (ρ={corr:.2f})")
            cal = jax.tree.map(lambda x: x[-1], reports[task, model].calibration)
            ax_rel.plot(
                cal.predicted,
                cal.frequency,
                marker="o",
                label=f"{model} (ECE {float(cal.ece):.3f})",
            )
        ax_scatter.set_xlabel(f"posterior spread, rank within model (after {round_index} queries)")
        ax_scatter.set_ylabel("held-out error")
        ax_scatter.set_title(f"{task}: does uncertainty predict error?")
        ax_scatter.legend(fontsize=8)
        ax_rel.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax_rel.set_xlabel("predicted P(a ≻ b)")
        ax_rel.set_ylabel("empirical frequency of a ≻ b")
        ax_rel.set_title(f"{task}: calibration after all queries (random)")
        ax_rel.legend(fontsize=8)
    fig.tight_layout()
    return fig
