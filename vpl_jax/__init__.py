"""vpl_jax: pluralistic preference learning (VPL and baselines) on Brax physics tasks, in JAX."""

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SOURCE_ENVS = Path(__file__).resolve().parent.parent / "envs"


class _SourceEnvsFinder(importlib.abc.MetaPathFinder):
    """Resolves ``vpl_jax.envs`` to the top-level ``envs/`` folder of a source checkout.

    An install maps that folder into the package (``package-dir`` in pyproject.toml); this finder
    makes a plain checkout on ``PYTHONPATH`` (no install, e.g. an offline accelerator machine)
    behave the same. It goes first on ``sys.meta_path``: a checkout on ``PYTHONPATH`` (a git
    worktree) must not take ``envs/`` from another checkout installed in editable mode.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "vpl_jax.envs":
            return None
        return importlib.util.spec_from_file_location(
            name, _SOURCE_ENVS / "__init__.py", submodule_search_locations=[str(_SOURCE_ENVS)]
        )


if not (Path(__file__).parent / "envs").is_dir() and (_SOURCE_ENVS / "__init__.py").is_file():
    sys.meta_path.insert(0, _SourceEnvsFinder())


def _import_mujoco_quietly() -> None:
    """Imports MuJoCo's optional Warp bridge with its stdout captured: without the optional
    ``warp`` package it prints "Failed to import warp" (twice) on every import of Brax, which is
    noise for a CPU or CUDA run that never uses Warp. Any other output is passed through."""
    import contextlib
    import io

    captured = io.StringIO()
    # An old MuJoCo without the bridge has nothing to silence.
    with contextlib.redirect_stdout(captured), contextlib.suppress(ImportError):
        import mujoco.mjx.warp  # noqa: F401
    rest = [
        ln
        for ln in captured.getvalue().splitlines()
        if "import warp" not in ln and "import mujoco_warp" not in ln
    ]
    if rest:
        print("\n".join(rest))


_import_mujoco_quietly()
