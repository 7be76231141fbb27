"""The package's layers: no module-level import runs upward, none forms a cycle, and every
subpackage imports alone in a fresh interpreter.

A layer may import its own package and any lower layer; imports inside functions and under
``TYPE_CHECKING`` are not edges (they do not run when the module is imported). A new subpackage
must be given a layer here, or the test fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Lowest first. Packages in one layer must not import each other.
LAYERS = (
    ("intervals",),  # numpy statistics over seeds, below the figures and results that show them
    ("atomic", "checks", "keys", "plotting", "runtime"),
    ("envs",),
    ("render",),  # self-contained HTML animations (task layouts from envs' geometry)
    ("users",),
    ("data",),
    ("rewards",),
    ("active", "policies"),
    ("nash",),
    ("pipeline",),
    ("harness", "iterate"),
    ("label",),  # the labelling app: reads runs (harness), queries with active, fits rewards
    ("vpl_jax",),  # the package's own __init__
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name (``envs/`` is vpl_jax.envs)."""
    files = {}
    for folder, prefix in ((ROOT / "vpl_jax", ("vpl_jax",)), (ROOT / "envs", ("vpl_jax", "envs"))):
        for path in folder.rglob("*.py"):
            parts = [*prefix, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def unit(module: str) -> str:
    """The layered unit of a dotted module name: ``vpl_jax.rewards.vpl`` -> ``rewards``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def runtime_imports(tree: ast.Module) -> list[tuple[str, int]]:
    """``(imported module, line)`` of the project's module-level imports (those that run)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` and friends do not run on import
            continue
        body = node.body if isinstance(node, ast.Try) else [node]
        for n in body:
            if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                if n.module == "vpl_jax":  # `from vpl_jax import rewards as R`
                    found += [(f"vpl_jax.{a.name}", n.lineno) for a in n.names]
                elif n.module.startswith("vpl_jax."):
                    found.append((n.module, n.lineno))
            elif isinstance(n, ast.Import):
                found += [(a.name, n.lineno) for a in n.names if a.name.startswith("vpl_jax.")]
    return found


def edges() -> list[tuple[str, str, str]]:
    """``(importing unit, imported unit, where)`` of every cross-unit module-level import."""
    out = []
    for name, path in module_files().items():
        src = unit(name)
        for target, line in runtime_imports(ast.parse(path.read_text())):
            dst = unit(target)
            if dst != src:
                out.append((src, dst, f"{path.relative_to(ROOT)}:{line}"))
    return out


def test_every_unit_has_a_layer():
    units = {unit(name) for name in module_files()}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_no_module_level_import_runs_upward_or_sideways():
    bad = [
        f"{where}: {src} (layer {RANK[src]}) imports {dst} (layer {RANK[dst]})"
        for src, dst, where in edges()
        if RANK[dst] >= RANK[src]
    ]
    assert not bad, "\n".join(bad)


def test_the_unit_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges():
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_checker_sees_an_upward_edge():
    tree = ast.parse("from vpl_jax.harness import results\nfrom vpl_jax import rewards as R\n")
    assert [unit(m) for m, _ in runtime_imports(tree)] == ["harness", "rewards"]
    lazy = ast.parse("def f():\n    from vpl_jax import harness\n")
    assert runtime_imports(lazy) == []


@pytest.mark.slow
def test_every_subpackage_imports_alone_in_a_fresh_interpreter():
    names = sorted({n for n in module_files() if n.count(".") == 1})
    # One interpreter per subpackage, all at once (each is mostly waiting on imports).
    procs = {
        n: subprocess.Popen(
            [sys.executable, "-c", f"import {n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in names
    }
    failed = {}
    for n, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed[n] = out.strip().splitlines()[-1:]
    assert not failed, failed
