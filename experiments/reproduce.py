"""Run every figure's experiment at one preset and build an index page of all figures.

    python experiments/reproduce.py --preset cpu            # laptop size
    python experiments/reproduce.py --preset paper          # full size, for a GPU/TPU
    python experiments/reproduce.py --only underspecification reward_accuracy
    python experiments/reproduce.py --preset cpu --index-only   # index of the runs already there

Each experiment runs in its own process as ``experiments/NAME.py --preset P --run-name R --seed S``
(so its results land in ``results/NAME/R/``; ``--tensorboard`` is passed on to every experiment
that logs training curves, ``--devices`` to every one); this script then writes
``results/reproduce/R/index.html`` with every figure and summary, and its own tidy metrics (the
wall time of each experiment).
"""

from __future__ import annotations

import dataclasses
import html
import subprocess
import sys
import time
from pathlib import Path

from vpl_jax import harness
from vpl_jax.atomic import atomic_write
from vpl_jax.checks import Choice, Choices, checked

HERE = Path(__file__).resolve().parent
#: The figure experiments, in the order they are run (cheapest first).
EXPERIMENTS = (
    "reward_accuracy",
    "underspecification",
    "policy_conflicts",
    "active_queries",
    "misspecification",
    "misidentification",
    "nash",
)
#: The experiments that log no training curves (they have no --tensorboard option).
NO_TENSORBOARD = ("misidentification",)
#: The presets every experiment has.
EXPERIMENT_PRESETS = ("cpu", "paper")


def available() -> list[str]:
    return [name for name in EXPERIMENTS if (HERE / f"{name}.py").exists()]


@dataclasses.dataclass(frozen=True)
class Config(harness.ExperimentConfig):
    tensorboard: bool = False
    """Pass --tensorboard to every experiment that logs training curves (each logs to its own
    run folder; not misidentification)."""
    only: tuple[str, ...] = ()
    """Experiments to run (default: every one that exists)."""
    experiment_preset: str = checked("", Choice(("", *EXPERIMENT_PRESETS)))
    """Preset passed to each experiment, cpu or paper (default: the same as --preset)."""
    index_only: bool = False
    """Run nothing: rebuild the figure index from the experiments' existing results of this
    run name (e.g. after running some of them separately)."""

    def validate(self):
        super().validate()
        Choices(available(), min_count=0).check("only", self.only)
        if self.tensorboard and self.index_only:
            raise harness.ConfigError("tensorboard: --index-only runs no experiment to log")
        if self.tensorboard and not set(self.only or available()) - set(NO_TENSORBOARD):
            raise harness.ConfigError(
                f"tensorboard: only={list(self.only)} log no training curves; experiments "
                f"that do: {[n for n in available() if n not in NO_TENSORBOARD]}"
            )
        return self

    def check_processes(self):
        if self.joins_processes:
            raise harness.ConfigError(
                "coordinator_address/distributed: reproduce starts each experiment in a process "
                "of its own; on several processes, run each experiment with these options"
            )


PRESETS = {name: Config(preset=name) for name in EXPERIMENT_PRESETS}


def _index_page(preset: str, run_name: str, results_dir: Path, names: list[str]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>vpl_jax figures</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:8px;"
        "overflow-x:auto}</style>",
        f"<h1>vpl_jax — figures (preset <code>{html.escape(preset)}</code>)</h1>",
    ]
    for name in names:
        run = results_dir / name / run_name
        parts.append(f"<h2 id='{name}'>{html.escape(name)}</h2>")
        for png in sorted(run.glob("*.png")):
            rel = Path("..", "..", name, run_name, png.name).as_posix()
            parts.append(f"<h3>{html.escape(png.stem)}</h3><img src='{rel}'>")
        for page in sorted(run.glob("*_rollouts.html")):  # self-contained animations
            rel = Path("..", "..", name, run_name, page.name).as_posix()
            parts.append(f"<p>Animation: <a href='{rel}'>{html.escape(page.stem)}</a></p>")
        summary = run / "summary.md"
        if summary.exists():
            parts.append(f"<pre>{html.escape(summary.read_text())}</pre>")
    return "\n".join(parts) + "\n"


def main(config: Config, results: harness.RunResults) -> str:
    names = list(config.only) or available()
    preset = config.experiment_preset or config.preset
    lines = []
    for name in [] if config.index_only else names:
        cmd = [
            sys.executable,
            str(HERE / f"{name}.py"),
            "--preset", preset,
            "--run-name", config.run_name,
            "--seed", str(config.seed),
            "--results-dir", config.results_dir,
        ]  # fmt: skip
        if config.tensorboard and name not in NO_TENSORBOARD:
            cmd.append("--tensorboard")
        if config.overwrite:
            cmd.append("--overwrite")
        if config.devices is not None:
            cmd += ["--devices", str(config.devices)]
        print(f"[reproduce] {' '.join(cmd[1:])}", flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
        elapsed = time.time() - start
        results.add(method=name, task="all", metric="wall_time_s", value=elapsed)
        lines.append(f"- `{name}`: {elapsed:.0f} s")
    if config.index_only:
        names = [
            n
            for n in names
            if (Path(config.results_dir) / n / config.run_name / "metrics.json").exists()
        ]
        for name in names:  # the wall time each experiment recorded itself
            wall = harness.load_timing(Path(config.results_dir) / name / config.run_name)
            results.add(method=name, task="all", metric="wall_time_s", value=wall["wall_time_s"])
            lines.append(f"- `{name}`: {wall['wall_time_s']:.0f} s (recorded by the run)")
    page = _index_page(preset, config.run_name, Path(config.results_dir), names)
    with atomic_write(results.path / "index.html") as f:
        f.write(page)
    total = sum(r["value"] for r in results.rows)
    print(f"[reproduce] figure index: {results.path / 'index.html'} ({total:.0f} s in all)")
    return "\n".join(["## Wall time", "", *lines, f"- total: {total:.0f} s", "",
                      "Figures: [index.html](index.html)"])  # fmt: skip


if __name__ == "__main__":
    harness.run_experiment("reproduce", Config, PRESETS, main)
