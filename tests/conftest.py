"""Shared fixtures. Environments come from ``envs.make`` (memoised), so jitted rollouts compile
once per test session.

``VPL_JAX_TEST_CACHE_DIR=DIR`` turns on JAX's persistent compilation cache for repeated local
runs. It is off by default: a cache shared by concurrent runs (or by different installs) can hold
entries that crash the reader, and CI starts from a clean machine anyway.
"""

import functools
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import jax
import pytest

warnings.filterwarnings("ignore", message=".*Brax System.*")
if os.environ.get("VPL_JAX_TEST_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", os.environ["VPL_JAX_TEST_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(autouse=True, scope="module")
def _drop_compiled_programs():
    """Drops JAX's caches of compiled programs after each test module.

    One pytest process compiles thousands of programs; kept alive, their machine-code mappings
    approach the kernel's ``vm.max_map_count`` (65530 by default) and XLA's CPU compiler then
    crashes (a segfault in ``backend_compile``) partway through the suite. Tests of one module
    still share their compiled programs.
    """
    yield
    jax.clear_caches()


@functools.cache
def _load_experiment(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_experiment():
    """``load_experiment(name)``: ``experiments/<name>.py`` as a module (experiments/ is not a
    package), loaded once per session."""
    return _load_experiment


@pytest.fixture(scope="session")
def navigation():
    from vpl_jax import envs

    return envs.make("navigation")


@pytest.fixture(scope="session")
def nav_dataset(navigation):
    """A small two-goal navigation dataset with rational users (shared by many tests)."""
    from vpl_jax.data import DatasetConfig, build_dataset
    from vpl_jax.users import Population

    population = Population.mixture("navigation", navigation.feature_names, ["goal_a", "goal_b"])
    config = DatasetConfig(
        num_users=16, context_size=8, heldout_size=16, pool_size=512, num_episodes=64
    )
    return build_dataset(jax.random.PRNGKey(0), navigation, population, config)
