"""The README's Python snippets run as shown (blocks with `...` placeholders are skipped)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_snippets_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    runnable = [b for b in blocks if "..." not in b]
    assert len(runnable) >= 2
    namespace: dict = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)
    assert "(32, 8, 2) (32, 8)" in capsys.readouterr().out
    assert namespace["population"].type_names == ("goal_a", "sightseer")
