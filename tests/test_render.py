"""Self-contained renders (vpl_jax.render): every HTML file an experiment writes draws offline.

That it draws something in a real browser is checked in tests/test_label_browser.py.
"""

import re

import numpy as np
import pytest

from vpl_jax import render


def assert_self_contained(page: str) -> None:
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page), "external asset"
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_a_rollouts_page_is_self_contained_and_carries_every_path():
    layout = render.scene("navigation", ("progress_a", "progress_b", "safety"))
    assert layout["kind"] == "arena" and [g["name"] for g in layout["goals"]] == ["a", "b"]
    path = render.path_view(np.zeros((5, 2)))
    page = render.rollouts_html(layout, [[path, None]], ["user 0"], ["btl", "vpl"], title="t</x>")
    assert_self_contained(page)
    assert "function drawSegment" in page and "t&lt;/x&gt;" in page
    with pytest.raises(ValueError, match="1 rows of 2"):
        render.rollouts_html(layout, [[path]], ["user 0"], ["btl", "vpl"])
    assert render.scene("ant", ())["kind"] == "path"


def test_underspecification_writes_a_self_contained_rollouts_render(
    load_experiment, navigation, tmp_path
):
    experiment = load_experiment("underspecification")
    positions = np.random.default_rng(0).uniform(-1, 1, (4, 2, 10, 2))  # [U, E, T, 2]
    evaluations = {m: {"positions": positions} for m in ("btl", "vpl")}
    path = tmp_path / "navigation_rollouts.html"
    type_id = np.array([0, 0, 1, 1])
    experiment.render_html("navigation", navigation, ("goal_a", "goal_b"), type_id, evaluations,
                           path, 3)  # fmt: skip
    page = path.read_text()
    assert_self_contained(page)
    # Users are taken in turn from each type.
    assert [int(u) for u in re.findall(r"test user (\d)", page)] == [0, 2, 1]
