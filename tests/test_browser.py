"""The widgets in a real browser: JupyterLab on loopback, driven by Playwright through Debian's Chromium.

Notebook 02 in the smoke profile: Run All Cells, then move the attack explorer's eps slider with the
keyboard and check that its figure is redrawn (a new PNG) and that the slider's readout changed.
Notebook 09: type an answer in the self-quiz, press "Show model answer", check that the typed answer
and the model answer appear. The notebooks are copied to a temporary folder (autosave is off too),
so the committed notebooks never receive outputs; the server's runtime, config and data folders are
temporary; its kernel is this interpreter (the course's .venv), with ``COURSE_PROFILE=smoke``.
The rendered course (``built_site`` in conftest.py: notebooks 00 and 02 run by benchmarks/notebooks.py,
built by benchmarks/build_site.py) is served by ``http.server`` on loopback, with every other host
blocked, and notebook 02's page must show all its figures (each ``<img>`` decoded, naturalWidth > 0).

Needs ``playwright`` (the ``dev`` extra) and Chromium at /usr/bin/chromium (Debian's ``chromium``;
``.ci/run`` installs it, the README says how); skipped with the reason otherwise. Playwright's own
browser download is never used. On failure a screenshot and the page's text go to ``tmp_path``.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
NOTEBOOKS = ("02_adversarial_examples_foundations.ipynb", "09_interview_prep.ipynb")
SERVER_START_S = 90  # JupyterLab answering /api/status
RUN_ALL_S = 420  # Run All Cells in the smoke profile (02 trains a small CNN on a cold cache)
WIDGET_S = 60  # one widget redraw after a key press or a click

pytestmark = pytest.mark.slow  # starts JupyterLab and a browser, runs two notebooks (about a minute, warm cache)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; see the README's tests section)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(server, url: str, timeout_s: float, poll_s: float, failure):
    """Poll ``url`` until it answers 200; fail the test with ``failure()`` if ``server`` exits or
    ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(failure())
        time.sleep(poll_s)


def _data_dir() -> str:
    """COURSE_DATA_DIR as an absolute path (relative ones are from the repository root, as in config)."""
    env = os.environ.get("COURSE_DATA_DIR")
    if env:
        p = Path(env).expanduser()
        return str(p if p.is_absolute() else (ROOT / p).resolve())
    shared = (ROOT.parent / "shared" / "data").resolve()
    return str(shared if shared.is_dir() else ROOT / "data")


def _write_settings(config_dir: Path):
    """Lab user settings: no autosave, every cell in the DOM (no windowing), no news or update checks."""
    settings = {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = config_dir / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving copies of notebooks 02 and 09: yields (url, token)."""
    tmp = tmp_path_factory.mktemp("lab")
    root, home = tmp / "root", tmp / "jupyter"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    _write_settings(home / "config")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, COURSE_PROFILE="smoke", COURSE_DATA_DIR=_data_dir(),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "data"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", JUPYTER_PREFER_ENV_PATH="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    # the kernel is sys.executable's ipykernel (the .venv's python3 kernel spec), so the course's environment
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(server, f"{url}/api/status?token={token}", SERVER_START_S, 0.5,
                            lambda: f"JupyterLab (exit code {server.poll()}) did not answer in {SERVER_START_S} s:\n"
                                    f"{(tmp / 'server.log').read_text()[-3000:]}")
        yield url, token
    finally:
        server.send_signal(signal.SIGINT)  # twice: JupyterLab asks for confirmation after the first
        time.sleep(0.5)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the server's own process group (its kernels)
            server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path, request):
    """A fresh page; on failure a screenshot and the page's text go to tmp_path."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    messages = []
    pg.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
    pg.set_default_timeout(WIDGET_S * 1000)
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:  # this test's call failed (reported before teardown)
        try:
            pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            (tmp_path / "failure.txt").write_text(pg.inner_text("body"))
            (tmp_path / "console.txt").write_text("\n".join(messages))
            print(f"browser screenshot, page text and console log in {tmp_path}")
        except Exception as e:  # the page may be gone; the assertion message is what matters
            print(f"no screenshot: {e}")
    context.close()


def _open_and_run_all(page, lab, name):
    """Open notebook ``name``, wait for an idle kernel, Run All Cells, wait until every code cell ran."""
    url, token = lab
    n_code = sum(c["cell_type"] == "code" for c in json.loads((ROOT / "notebooks" / name).read_text())["cells"])
    page.goto(f"{url}/lab/tree/{name}?token={token}", timeout=SERVER_START_S * 1000)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    idle = panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    idle.wait_for(timeout=SERVER_START_S * 1000)
    prompts = panel.locator(".jp-CodeCell .jp-InputArea-prompt")
    sync_api.expect(prompts).to_have_count(n_code, timeout=SERVER_START_S * 1000)  # every cell rendered
    started = False
    for _ in range(3):  # a click that lands while Lab is still settling may be lost: retry until a cell starts
        panel.locator(".jp-Notebook").click(position={"x": 5, "y": 5})  # the notebook is the current widget
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item:visible", has_text=re.compile(r"^Run All Cells")).first.click()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt')]"
                ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))", timeout=15_000)
            started = True
            break
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    assert started, f"{name}: Run All Cells did not start any cell"
    deadline = time.monotonic() + RUN_ALL_S
    while True:
        errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        if errors.count():
            pytest.fail(f"{name}: a cell raised:\n{errors.first.inner_text()[-2000:]}")
        texts = prompts.all_inner_texts()
        done = [t for t in texts if re.fullmatch(r"\s*\[\d+\]:\s*", t)]
        if len(done) == n_code and idle.count():
            return panel
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: {len(done)} of {n_code} code cells ran in {RUN_ALL_S} s (prompts {texts})")
        time.sleep(1)


def test_attack_explorer_redraws_when_eps_moves(page, lab):
    panel = _open_and_run_all(page, lab, NOTEBOOKS[0])
    eps_slider = page.locator(".widget-hslider", has=page.locator("label", has_text="eps (linf)"))
    explorer = panel.locator(".widget-vbox", has=eps_slider).last
    slider = explorer.locator(".widget-hslider", has=page.locator("label", has_text="eps (linf)"))
    slider.wait_for()
    image = explorer.locator(".widget-output img").last  # one after each redraw (clear_output(wait=True))
    image.wait_for()
    readout = slider.locator(".widget-readout")
    before_eps, before_src = readout.inner_text(), image.get_attribute("src")
    assert before_eps == "0.100" and before_src.startswith("data:image/png"), (before_eps, before_src[:40])
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("End")  # noUiSlider's keyboard: to eps_max (0.5), one 'change' event, one redraw
    sync_api.expect(readout).to_have_text("0.500", timeout=WIDGET_S * 1000)
    # the Output is cleared and redrawn: a new <img> whose PNG differs (re-queried until it does)
    sync_api.expect(image).not_to_have_attribute("src", before_src, timeout=WIDGET_S * 1000)
    assert image.get_attribute("src").startswith("data:image/png")


def test_self_quiz_reveals_the_model_answer(page, lab):
    panel = _open_and_run_all(page, lab, NOTEBOOKS[1])
    quiz = panel.locator(".widget-vbox", has=page.locator(".widget-textarea textarea")).last
    quiz.wait_for()
    feedback_text = "written in the browser test"
    quiz.locator("textarea").fill(feedback_text)
    assert "Model answer" not in quiz.inner_text()
    quiz.locator("button", has_text="Show model answer").click()
    quiz.get_by_text("Model answer", exact=True).wait_for(timeout=WIDGET_S * 1000)
    text = quiz.inner_text()
    assert "Your answer" in text and feedback_text in text and "Answer strategy" in text


@pytest.fixture(scope="module")
def site_server(built_site):
    """The rendered course (conftest's ``built_site``) served by ``python -m http.server`` on loopback: yields its URL."""
    _, html, _ = built_site
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(html)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(server, f"{url}/index.html", 30, 0.2,
                            lambda: f"http.server did not serve {html} (exit code {server.poll()})")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_rendered_site_shows_its_figures(page, site_server):
    """A lesson page of the built site, in the browser: its figures load and decode (naturalWidth > 0)."""
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1)"), lambda route: route.abort())  # offline: CDN scripts fail fast
    page.goto(f"{site_server}/02_adversarial_examples_foundations.html", wait_until="load")
    images = page.locator(".bd-article img")
    sync_api.expect(images.first).to_be_visible()
    sizes = page.eval_on_selector_all(
        ".bd-article img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert sizes, "no <img> on the lesson page"
    drawn = [s for s in sizes if s[1] and s[2] > 0]
    assert len(drawn) == len(sizes), f"figures that did not render: {[s for s in sizes if s not in drawn]}"
    page.goto(f"{site_server}/index.html", wait_until="load")
    sync_api.expect(page.locator("table").first).to_contain_text("02_adversarial_examples_foundations")
