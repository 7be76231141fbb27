"""The README's Python snippets run as shown (blocks with `...` placeholders are skipped)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_snippets_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    runnable = [b for b in blocks if "..." not in b]
    assert len(runnable) >= 2
    namespace: dict = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)
    assert "(32, 8, 2) (32, 8)" in capsys.readouterr().out
    assert namespace["population"].type_names == ("goal_a", "sightseer")


def _experiment_commands():
    """Every ``python experiments/NAME.py ...`` line of the README's bash blocks (continuations
    joined, comments dropped), except the ones with placeholders (``NAME``, ``[...]``)."""
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python experiments/") and "NAME" not in line and "[" not in line:
                commands.append(shlex.split(line)[1:])
    return commands


#: Options naming devices and processes this machine need not have (value-taking: True).
_PLACEMENT = {
    "--devices": True,
    "--coordinator-address": True,
    "--num-processes": True,
    "--process-id": True,
    "--distributed": False,
}


def _without_placement(argv: list[str]) -> list[str]:
    """``argv`` less the :data:`_PLACEMENT` options (a test on one CPU device cannot join other
    processes; tests/test_sharding.py runs those on simulated devices and processes)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _PLACEMENT:
            skip = _PLACEMENT[arg]
        else:
            out.append(arg)
    return out


def test_readme_experiment_commands_parse(load_experiment, monkeypatch):
    """The README's experiment command lines are valid configs (parsed and validated, not run)."""
    from vpl_jax import harness

    monkeypatch.chdir(README.parent)  # paths in the commands are relative to the repository
    commands = _experiment_commands()
    assert any("--population" in c for c in commands)
    assert any("--coordinator-address" in c for c in commands)
    for script, *argv in commands:
        if "--help" in argv:
            continue
        module = load_experiment(Path(script).stem)
        harness.parse(module.Config, module.PRESETS, _without_placement(argv))
