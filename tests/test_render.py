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


def test_highway_draws_its_tasks_lanes_and_a_variant_is_drawn_as_its_parent():
    import functools

    from vpl_jax import envs

    names = envs.make("highway").feature_names
    assert len(render.scene("highway", names)["lanes"]) == 3
    four = envs.make("highway", num_lanes=4, num_cars=3)
    assert render.scene("highway", names, four)["lanes"] == [-5.625, -1.875, 1.875, 5.625]
    name = "highway_2lanes_for_render_tests"
    if name not in envs.names():
        envs.register(name, functools.partial(envs.Highway, num_lanes=2, num_cars=3))
    layout = render.scene(name, names)
    assert layout["kind"] == "road" and len(layout["lanes"]) == 2 and layout["task"] == name
    nav = "navigation_3goals_for_render_tests"
    if nav not in envs.names():
        envs.register(nav, functools.partial(envs.Navigation, num_goals=3))
    goals = render.scene(nav, envs.make(nav).feature_names)["goals"]
    assert [g["name"] for g in goals] == ["a", "b", "c"]
    # A variant whose registration was not imported is not known to be one: a plain path.
    assert render.scene("highway_never_registered", names)["kind"] == "path"
