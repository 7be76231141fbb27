"""Packaging: every library folder is installed, and `envs/` only under the vpl_jax namespace."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vpl_jax").rglob("__init__.py")
    }
    assert found | {"vpl_jax.envs"} == listed
    assert config["package-dir"]["vpl_jax.envs"] == "envs"


def test_envs_resolve_from_a_plain_source_checkout(tmp_path):
    """With only PYTHONPATH=<checkout> (no install), `vpl_jax.envs` is the top-level envs/."""
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if 'editable' not in type(f).__module__.lower()]; "
        "import vpl_jax.envs as e; print(e.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip().splitlines()[-1]) == ROOT / "envs" / "__init__.py"
