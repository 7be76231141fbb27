"""The labelling page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, driven by Selenium; no browser downloads) with the network off.

Skips, saying why, where Selenium, Chromium or its driver is missing; install them with
``pip install selenium`` (in the ``dev`` extra) and ``apt-get install -y chromium chromium-driver``.
"""

import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("flask")

pytestmark = pytest.mark.slow  # a browser, a dataset, the summary's and rollouts' compilations

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip(
            "no chromium or chromedriver on PATH: apt-get install -y chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
        # The network is off: every host but the local server fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def served(nav_dataset, nav_policies, tmp_path):
    """The app on a free local port, served from a thread; yields ``(base url, answers folder)``.

    It serves a small untrained VPL (so the page shows its latent panel; its z means nothing)
    with untrained VPL and BTL policies ("show my policy"), and asks random pairs."""
    import jax
    from werkzeug.serving import make_server

    from vpl_jax.label import create_app
    from vpl_jax.rewards import VPL, user_pairs

    model = VPL(latent_dim=2, embed_dim=8, encoder_hidden=(8,), decoder_hidden=(8,))
    batch = user_pairs(nav_dataset, "context", model.inputs).batch(jax.numpy.arange(2))
    params = model.init(jax.random.PRNGKey(1), batch)
    app = create_app(nav_dataset, tmp_path / "labels", 0, model, params, "random", nav_policies)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", tmp_path / "labels"
    server.shutdown()
    thread.join()


def _wait(driver, condition, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(condition))


def _canvas_ink(driver, canvas_id: str) -> float:
    """The share of a canvas's pixels that are neither transparent nor white."""
    return driver.execute_script(
        """const c = document.getElementById(arguments[0]);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let ink = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) ink++;
        return ink / (d.length / 4);""",
        canvas_id,
    )


def test_a_scripted_person_answers_8_comparisons_by_keyboard_and_clicks(
    browser, served, nav_dataset, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains

    from vpl_jax.label.summary import type_thetas

    base, labels = served
    theta = type_thetas(nav_dataset)["goal_a"]
    returns = np.asarray(nav_dataset.segments.features).sum(1) @ theta  # f32[N] true returns
    browser.get(f"{base}/?person=ann")
    _wait(browser, "return state.query !== null && state.frame > 20")
    assert _canvas_ink(browser, "canvas-a") > 0.01 and _canvas_ink(browser, "canvas-b") > 0.01
    browser.save_screenshot(str(tmp_path / "label_start.png"))
    for n in range(1, 9):
        a, b = browser.execute_script("return state.query.pair")
        answer = "a" if returns[a] > returns[b] else "b" if returns[b] > returns[a] else "equal"
        if n % 2:  # by keyboard
            ActionChains(browser).send_keys(answer[0]).perform()
        else:  # by clicking
            browser.find_element("css selector", f"button[data-answer='{answer}']").click()
        done = f"document.getElementById('progress').textContent === '{n} answered'"
        _wait(browser, f"return {done} && !state.busy")  # busy: the summary is still loading
    _wait(browser, "return document.querySelectorAll('#summary h3').length === 3")
    browser.save_screenshot(str(tmp_path / "label_after_8.png"))
    summary = browser.find_element("id", "summary").text
    assert "What you seem to care about" in summary and "Your human model" in summary
    assert "type whose θ explains you best goal_a" in summary and "Your z among" in summary
    assert _canvas_ink(browser, "latent-map") > 0.005
    # "Show my policy": the VPL policy on the person's z next to BTL's, animated.
    assert "unavailable" not in browser.find_element("id", "policy-note").text
    browser.find_element("id", "show-policy").click()
    _wait(browser, "return state.policy !== null && state.policyFrame > 20")
    assert "your z (posterior mean)" in browser.find_element("id", "policy").text
    assert _canvas_ink(browser, "policy-vpl") > 0.01 and _canvas_ink(browser, "policy-btl") > 0.01
    browser.execute_script("document.getElementById('policy-bar').scrollIntoView()")
    browser.save_screenshot(str(tmp_path / "label_policy.png"))
    state = json.loads((labels / "ann.json").read_text())
    assert len(state["answers"]) == 8
    assert all(x["answer"] in ("a", "b", "equal") for x in state["answers"])
    # Nothing came from anywhere but the local server: the page works offline.
    loaded = browser.execute_script(
        "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]"
    )
    assert loaded and all(url.startswith(base + "/") for url in loaded), loaded


def test_a_rollouts_render_draws_offline(browser, tmp_path):
    from vpl_jax import render

    layout = render.scene("navigation", ("progress_a", "progress_b", "safety"))
    t = np.linspace(0, 1, 20)[:, None]
    paths = [[render.path_view(np.hstack([0 * t, s * t])) for s in (0.8, -0.8)]]
    page = tmp_path / "navigation_rollouts.html"
    page.write_text(render.rollouts_html(layout, paths, ["user 0"], ["btl", "vpl"]))
    browser.get(page.as_uri())
    _wait(browser, "return document.querySelectorAll('canvas').length === 2", timeout=30)
    ink = browser.execute_script(
        "return [...document.querySelectorAll('canvas')].map((c, i) => (c.id = 'c' + i))"
    )
    assert all(_canvas_ink(browser, c) > 0.01 for c in ink)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
