"""Shared fixtures. Environments come from ``envs.make`` (memoised), so jitted rollouts compile
once per test session.

Each test process (each xdist worker) has a persistent compilation cache of its own, in a fresh
temporary folder removed at exit: ``_drop_compiled_programs`` empties JAX's in-memory caches
after every test module, and the programs a later module compiles again (the same PPO update,
the same reward-model step under another closure) are then read back instead of recompiled. The
folder is never shared: a cache shared by concurrent runs (or by different installs) can hold
entries that crash the reader. ``VPL_JAX_TEST_CACHE=0`` turns it off;
``VPL_JAX_TEST_CACHE_DIR=DIR`` keeps it across runs (a subfolder per worker).
"""

import atexit
import functools
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import jax
import pytest

warnings.filterwarnings("ignore", message=".*Brax System.*")


def _compilation_cache() -> Path | None:
    if os.environ.get("VPL_JAX_TEST_CACHE", "1") == "0":
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if os.environ.get("VPL_JAX_TEST_CACHE_DIR"):
        folder = Path(os.environ["VPL_JAX_TEST_CACHE_DIR"]) / worker
        folder.mkdir(parents=True, exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"vpl_jax_test_cache_{worker}_"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return folder


_CACHE = _compilation_cache()


@pytest.fixture(scope="session")
def subprocess_cache():
    """``subprocess_cache(name) -> dict``: environment entries that give a subprocess (an
    experiment run from the command line) the persistent compilation cache ``name``, a subfolder
    of this worker's, so a later run of the same programs (a resumed or repeated run, another
    test's run of the same command) reads them back instead of compiling again. Processes that
    run at the same time must use different names (JAX writes cache files in place, and a reader
    can see half of one). Empty when the cache is off."""

    def entries(name: str) -> dict[str, str]:
        if _CACHE is None:
            return {}
        return {
            "JAX_COMPILATION_CACHE_DIR": str(_CACHE / "subprocess" / name),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2",
        }

    return entries


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


def _untrained_policy(env, z_dim: int, key: int, hidden=(16,)):
    """An untrained PPO acting in ``env`` with a ``z_dim``-entry latent, and its policy params
    drawn at scale 1 (PPO's initial output layer is nearly flat; these act differently per z)."""
    import jax.numpy as jnp

    from vpl_jax import policies as P

    config = P.PPOConfig(hidden_sizes=hidden, num_envs=4, num_steps=4, num_minibatches=1)
    latent = P.LatentReward(env, P.constant_sampler(jnp.zeros(z_dim)), lambda s, z: s.reward)
    ppo = P.make_train(latent, config)
    params = jax.jit(lambda k: ppo.policy_params(ppo.init(k)))(jax.random.PRNGKey(key))
    leaves, tree = jax.tree.flatten(params.params)
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    drawn = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    return ppo, params._replace(params=jax.tree.unflatten(tree, drawn))


@pytest.fixture(scope="session")
def untrained_policy():
    """``untrained_policy(env, z_dim, key) -> (ppo, policy_params)``: see above."""
    return _untrained_policy


@pytest.fixture(scope="session")
def nav_policies(navigation, tmp_path_factory):
    """Saved and loaded untrained navigation policies (the labelling app's "show my policy"):
    ``{"vpl": acting on a 2-entry z, "btl": on none}``."""
    from vpl_jax.policies.files import load_policy, save_policy

    folder = tmp_path_factory.mktemp("policies")
    out = {}
    for method, z_dim in (("vpl", 2), ("btl", 0)):
        ppo, params = _untrained_policy(navigation, z_dim, key=z_dim)
        save_policy(folder / method, ppo, params, "navigation", method, {"num_goals": 2})
        out[method] = load_policy(folder / method)
    return out
