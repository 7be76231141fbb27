"""Run every figure's experiment at one preset, build an index page of all figures, and check
the paper's claims against the results.

    python experiments/reproduce.py --preset cpu            # laptop size
    python experiments/reproduce.py --preset paper          # full size, for a GPU/TPU
    python experiments/reproduce.py --only underspecification reward_accuracy
    python experiments/reproduce.py --preset cpu --index-only   # index of the runs already there

Each experiment runs in its own process as ``experiments/NAME.py --preset P --run-name R --seed S``
(so its results land in ``results/NAME/R/``; ``--tensorboard`` is passed on to every experiment
that logs training curves, ``--devices`` to every one); this script then writes
``results/reproduce/R/index.html`` with every figure and summary, and its own tidy metrics (the
wall time of each experiment). Last it judges every claim of :data:`CLAIMS` on those runs
(:mod:`vpl_jax.harness.claims`: the claim's number on its worst case, with a 95 % interval over
seeds, against its margin) and writes ``claims.md`` and ``claims.json`` beside the index (a claim
whose run is missing says ``not run``). Besides the experiments at their presets it runs
:data:`SECOND_RUNS`: an experiment again with a population a claim needs (its results land in
``results/EXPERIMENT/R-SUFFIX/``; ``--only`` names them too).
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from vpl_jax import harness
from vpl_jax.atomic import atomic_write
from vpl_jax.checks import Choice, Choices, checked
from vpl_jax.harness import claims

HERE = Path(__file__).resolve().parent
#: The figure experiments, in the order they are run (cheapest first).
EXPERIMENTS = (
    "reward_accuracy",
    "many_types",
    "label_noise",
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


@dataclasses.dataclass(frozen=True)
class SecondRun:
    """An experiment run again with other options, as a claim needs: ``experiment``'s script with
    ``argv`` after the preset, in the run folder ``<run name><suffix>``."""

    name: str
    experiment: str
    suffix: str
    argv: tuple[str, ...]


#: The second runs, by name (``--only`` accepts these names too).
SECOND_RUNS = {
    run.name: run
    for run in (
        # Two navigation types whose learned rewards differ in scale (examples/scaled_goals.py:
        # rational labels and one answer in five flipped): unscaled VPL against VPL-SPO.
        SecondRun(
            "scaled_rewards",
            "underspecification",
            "-scaled",
            (
                "--tasks", "navigation",
                "--register", str(HERE.parent / "examples" / "scaled_goals.py"),
                "--population", "navigation:goal_a=0.5,goal_b_noisy=0.5",
                "--reward-scaling", "none",
                "--methods", "vpl", "vpl_spo",
                "--num-seeds", "3",
            ),
        ),
        # Active queries on driving, with three types that each weigh several features
        # (examples/mixed_drivers.py): the query curve and the uncertainty report on highway.
        SecondRun(
            "driving_active",
            "active_queries",
            "-driving",
            (
                "--tasks", "highway",
                "--register", str(HERE.parent / "examples" / "mixed_drivers.py"),
                "--population", "highway:commuter,considerate,stickler",
                "--policy-tasks",
            ),
        ),
    )
}  # fmt: skip


def available() -> list[str]:
    """The experiments and second runs whose scripts exist, in the order they are run."""
    names = [name for name in EXPERIMENTS if (HERE / f"{name}.py").exists()]
    return names + [n for n, run in SECOND_RUNS.items() if run.experiment in names]


def run_folder(name: str) -> tuple[str, str]:
    """``(experiment, run-name suffix)`` of an experiment or second run."""
    run = SECOND_RUNS.get(name)
    return (run.experiment, run.suffix) if run else (name, "")


def run_path(results_dir: str, run_name: str, name: str) -> Path:
    """The run folder of an experiment or second run of this reproduction."""
    experiment, suffix = run_folder(name)
    return Path(results_dir) / experiment / f"{run_name}{suffix}"


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
        experiments = {run_folder(n)[0] for n in self.only or available()}
        if self.tensorboard and not experiments - set(NO_TENSORBOARD):
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


def experiment_module(name: str):
    """``experiments/<name>.py`` as a module (experiments/ is not a package), imported once."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


D, V = claims.difference, claims.value
#: Queries information gain (VPL) needs to reach random's accuracy after the reference number of
#: queries, over that number (a criterion that never gets there: 1.5), per task.
QUERIES_NEEDED = V(
    "queries_to_match_random",
    {"method": "info_gain", "model": "vpl"},
    over=("task",),
    scale=lambda r: r["reference_queries"],
    missing=1.5,
)
#: Spearman correlation of VPL's spread (its predictions' variance over the posterior) with the
#: held-out error, after every random query, per task.
SPREAD_PREDICTS_ERROR = V(
    "spread_error_correlation", {"method": "random", "model": "vpl"}, over=("task",),
    largest="n_queries",
)  # fmt: skip
#: The paper's claims, each a test on one run of this reproduction (vpl_jax.harness.claims).
CLAIMS = (
    claims.Claim(
        "btl_averages",
        "One reward for everyone (BTL) serves no user type well; VPL serves each",
        "underspecification",
        "policy success, VPL − BTL, per task and user type",
        D("success", {"method": "vpl"}, {"method": "btl"}, over=("task", "user_type")),
        0.5,
    ),
    claims.Claim(
        "vpl_near_oracle",
        "VPL's policy does about as well as PPO on each user's true reward, per task",
        "underspecification",
        "policy success, VPL − oracle, per task and user type",
        D("success", {"method": "vpl"}, {"method": "oracle"}, over=("task", "user_type")),
        -0.1,
    ),
    claims.Claim(
        "spo_when_scales_differ",
        "When users' learned rewards differ in scale, VPL-SPO serves a type unscaled VPL fails",
        "underspecification",
        "policy success, VPL-SPO − VPL (no reward scaling), per user type",
        D("success", {"method": "vpl_spo"}, {"method": "vpl"}, over=("task", "user_type")),
        0.3,
        cases="some",
        run_suffix=SECOND_RUNS["scaled_rewards"].suffix,
    ),
    claims.Claim(
        "spo_serves_every_type",
        "… and VPL-SPO serves every type there",
        "underspecification",
        "policy success of VPL-SPO, per user type",
        V("success", {"method": "vpl_spo"}, over=("task", "user_type")),
        0.8,
        run_suffix=SECOND_RUNS["scaled_rewards"].suffix,
    ),
    claims.Claim(
        "active_half_the_queries",
        "Choosing queries by information gain needs about half the queries random ones need",
        "active_queries",
        "queries info gain (VPL) needs to reach random's accuracy after the reference number, "
        "over that number (never: 1.5), per task",
        QUERIES_NEEDED,
        0.6,
        direction="<",
    ),
    experiment_module("label_noise").GRACEFUL,
    claims.Claim(
        "many_types",
        "VPL keeps its edge over one reward for all as user types multiply (2 to 16)",
        "many_types",
        "held-out accuracy, VPL − BTL, per number of random types",
        D(
            "heldout_accuracy",
            {"method": "vpl", "population": "types"},
            {"method": "btl", "population": "types"},
            over=("task", "num_types"),
        ),
        0.05,
    ),
    claims.Claim(
        "continuous_population",
        "… and on a continuous population once its users differ",
        "many_types",
        "held-out accuracy, VPL − BTL, Gaussian population of the widest spread",
        D(
            "heldout_accuracy",
            {"method": "vpl", "population": "gaussian"},
            {"method": "btl", "population": "gaussian"},
            over=("task",),
            largest="spread",
        ),
        0.05,
    ),
    claims.Claim(
        "active_half_the_queries_driving",
        "… also on driving, with three types that each weigh several features",
        "active_queries",
        "as above, highway commuter/considerate/stickler",
        QUERIES_NEEDED,
        0.6,
        direction="<",
        run_suffix=SECOND_RUNS["driving_active"].suffix,
    ),
    claims.Claim(
        "uncertainty_informative",
        "VPL's uncertainty predicts its error (uncertainty is informative)",
        "active_queries",
        "Spearman correlation of a test user's spread (the variance of VPL's predicted "
        "P(a ≻ b) over its posterior) with their held-out error after all random queries, "
        "per task",
        SPREAD_PREDICTS_ERROR,
        0.0,
    ),
    claims.Claim(
        "uncertainty_informative_driving",
        "… also on driving",
        "active_queries",
        "as above, highway commuter/considerate/stickler",
        SPREAD_PREDICTS_ERROR,
        0.0,
        run_suffix=SECOND_RUNS["driving_active"].suffix,
    ),
    claims.Claim(
        "nash_md_lottery",
        "On a cyclic population Nash-MD approaches the maximal lottery where BTL's RLHF cannot",
        "nash",
        "exploitability under the true preferences (0 at the maximal lottery), BTL − Nash-MD, "
        "cyclic case",
        D(
            "exploitability",
            {"method": "btl", "case": "cyclic"},
            {"method": "nash_md", "case": "cyclic"},
            over=("task",),
        ),
        0.1,
    ),
    claims.Claim(
        "misspecification_lowers_alignment",
        "The inferred reward's alignment falls with the human model's error",
        "misspecification",
        "LinearBayes θ alignment, no deviation − the largest deviation, per kind of deviation",
        D(
            "alignment",
            {"method": "linear_bayes", "deviation": 0.0, "human_model": "boltzmann"},
            {"method": "linear_bayes", "human_model": "boltzmann"},
            over=("deviation_kind",),
            largest_b="deviation",
        ),
        0.1,
    ),
    claims.Claim(
        "correct_model_restores_alignment",
        "The correct human model restores it",
        "misspecification",
        "LinearBayes θ alignment at the largest deviation, correct − assumed Boltzmann model, per "
        "kind the framework can correct",
        D(
            "alignment",
            {"method": "linear_bayes", "human_model": "correct"},
            {"method": "linear_bayes", "human_model": "boltzmann"},
            over=("deviation_kind",),
            largest="deviation",
        ),
        0.05,
    ),
    claims.Claim(
        "iterate_closes_misidentification",
        "A reward learned from narrow data fits its held-out pairs yet misleads its policy; the "
        "iterate loop shrinks that misidentification gap",
        "misidentification",
        "misidentification gap (held-out accuracy − normalised true return), round 0 − last "
        "round, per method and query criterion",
        D(
            "misidentification_gap",
            {"round": 0, "data": "narrow"},
            {"data": "narrow"},
            over=("method", "criterion"),
            largest_b="round",
        ),
        0.3,
    ),
)
CLAIMS_PREAMBLE = (
    "Each claim is judged on its run's results: the number is measured per case (user type, "
    "task, …) and per seed, and the judged case is the worst (a claim about every case) or the "
    "best (about some case), with its 95 % interval over seeds (percentile stratified bootstrap, "
    "as rliable). Differences between methods pair seeds. **holds**: the interval clears the "
    "margin; **not significant**: the mean does, the interval does not; **(1 seed)**: no "
    "interval, the mean decides. See `vpl_jax/harness/claims.py`.\n"
)


def _index_page(preset: str, run_name: str, results_dir: Path, names: list[str]) -> str:
    parts = [
        "<!doctype html><meta charset='utf-8'><title>vpl_jax figures</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "img{max-width:100%;border:1px solid #ddd}pre{background:#f6f6f6;padding:8px;"
        "overflow-x:auto}</style>",
        f"<h1>vpl_jax — figures (preset <code>{html.escape(preset)}</code>)</h1>",
        "<p>The paper's claims, judged on these runs: <a href='claims.md'>claims.md</a></p>",
    ]
    for name in names:
        experiment = run_folder(name)[0]
        run = run_path(str(results_dir), run_name, name)
        parts.append(f"<h2 id='{name}'>{html.escape(name)}</h2>")
        for png in sorted(run.glob("*.png")):
            rel = Path("..", "..", experiment, run.name, png.name).as_posix()
            parts.append(f"<h3>{html.escape(png.stem)}</h3><img src='{rel}'>")
        for page in sorted(run.glob("*_rollouts.html")):  # self-contained animations
            rel = Path("..", "..", experiment, run.name, page.name).as_posix()
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
        experiment, suffix = run_folder(name)
        cmd = [
            sys.executable,
            str(HERE / f"{experiment}.py"),
            "--preset", preset,
            *(SECOND_RUNS[name].argv if name in SECOND_RUNS else ()),
            "--run-name", config.run_name + suffix,
            "--seed", str(config.seed),
            "--results-dir", config.results_dir,
        ]  # fmt: skip
        if config.tensorboard and experiment not in NO_TENSORBOARD:
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
        runs = {n: run_path(config.results_dir, config.run_name, n) for n in names}
        names = [n for n in names if (runs[n] / "metrics.json").exists()]
        for name in names:  # the wall time each experiment recorded itself
            wall = harness.load_timing(runs[name])
            results.add(method=name, task="all", metric="wall_time_s", value=wall["wall_time_s"])
            lines.append(f"- `{name}`: {wall['wall_time_s']:.0f} s (recorded by the run)")
    page = _index_page(preset, config.run_name, Path(config.results_dir), names)
    with atomic_write(results.path / "index.html") as f:
        f.write(page)
    total = sum(r["value"] for r in results.rows)
    print(f"[reproduce] figure index: {results.path / 'index.html'} ({total:.0f} s in all)")
    judged = claims.evaluate(CLAIMS, config.results_dir, config.run_name)
    table = claims.claims_markdown(judged, config.run_name)
    if results.writes:
        with atomic_write(results.path / "claims.json") as f:
            json.dump(judged, f, indent=1)
            f.write("\n")
        with atomic_write(results.path / "claims.md") as f:
            f.write(f"# The paper's claims (preset `{preset}`, run `{config.run_name}`)\n\n")
            f.write(CLAIMS_PREAMBLE + "\n" + table)
    print(f"[reproduce] claims: {results.path / 'claims.md'}")
    wall = [*lines, f"- total: {total:.0f} s", "", "Figures: [index.html](index.html)"]
    return "\n".join(["## Claims", "", table, "## Wall time", "", *wall])


if __name__ == "__main__":
    harness.run_experiment("reproduce", Config, PRESETS, main)
