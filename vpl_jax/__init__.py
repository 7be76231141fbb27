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
    behave the same.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "vpl_jax.envs":
            return None
        return importlib.util.spec_from_file_location(
            name, _SOURCE_ENVS / "__init__.py", submodule_search_locations=[str(_SOURCE_ENVS)]
        )


if not (Path(__file__).parent / "envs").is_dir() and (_SOURCE_ENVS / "__init__.py").is_file():
    sys.meta_path.append(_SourceEnvsFinder())
