"""What a clinician sees: JupyterLab on a smoke run, notebook 07 run in a real browser (headless Chromium).

Skipped, with the reason, only where no Chromium and ChromeDriver can be had (`.ci/run` installs Debian's
`chromium` and `chromium-driver` when they are missing, so CI always runs it).
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
LAB_START_SECONDS = 180  # a first start on a busy 2-core machine, after the smoke run, can take a minute


@pytest.fixture(scope="module")
def lab(smoke_reports, tmp_path_factory):
    """JupyterLab serving a copy of notebook 07 beside a reports/ folder whose latest run is the smoke run."""
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "no Chromium and ChromeDriver here (Debian: apt-get install chromium chromium-driver; .ci/run does)"
        )
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "07_case_study.ipynb", root / "notebooks")
    (root / "reports").symlink_to(smoke_reports, target_is_directory=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    # Jupyter's own folders under the test's: a CI home that is read-only or holds a user's settings
    # cannot stop or change the server; its log is kept to say why, should it not start
    home = tmp_path_factory.mktemp("jupyter")
    env = {
        **os.environ,
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root / 'notebooks'}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # CI and containers run as root, where Jupyter refuses to start without it
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() - started > LAB_START_SECONDS:
                server.kill()
                tail = (home / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(
                    f"JupyterLab did not answer within {time.monotonic() - started:.0f} s "
                    f"(exit code {server.poll()}); its log ends:\n{tail}"
                )
            time.sleep(0.5)
    yield url, token
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _visible_text(driver) -> str:
    return driver.find_element("css selector", ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").text


def _explorer_text(driver) -> str:
    """What the explorer's output area (below the dropdown) shows."""
    return driver.find_element("css selector", ".widget-vbox .widget-output").text


def _kernel_states(url: str, token: str) -> list[str]:
    """The execution state of every kernel the server runs (its REST API: what the page cannot hide)."""
    import json

    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as reply:
        return [k.get("execution_state", "?") for k in json.load(reply)]


def _cells_started(driver) -> bool:
    """Whether any code cell has begun to run: its prompt shows [*] or an execution count instead of [ ]."""
    prompts = driver.find_elements("css selector", ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt")
    return any("*" in p.text or any(ch.isdigit() for ch in p.text) for p in prompts)


def _run_all_cells(browser) -> None:
    """Run > Run All Cells, as a person does it: the notebook's tab clicked first (a fresh JupyterLab may leave the
    focus elsewhere, and then the entry does nothing), the menu opened again if it did not open, and the whole
    thing again if no cell started (a click that lands while the page is still settling is lost)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    menu = "//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='Run']"
    # the entry as a person sees it (its command id differs between JupyterLab versions), enabled
    entry = (
        "//li[contains(@class,'lm-Menu-item') and not(contains(@class,'lm-mod-disabled'))]"
        "[.//*[normalize-space()='Run All Cells']]"
    )
    for _ in range(10):
        browser.find_element(By.CSS_SELECTOR, ".lm-TabBar-tab[data-type='document-title']").click()
        browser.find_element(By.XPATH, menu).click()
        try:
            WebDriverWait(browser, 10).until(lambda d: d.find_element(By.XPATH, entry).is_displayed())
            browser.find_element(By.XPATH, entry).click()
            WebDriverWait(browser, 30).until(_cells_started)
            return
        except TimeoutException:
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    pytest.fail(f"Run > Run All Cells never started a cell; the page shows:\n{_visible_text(browser)[:2000]}")


def _what_went_wrong(browser, url: str, token: str, smoke_reports: Path, waited_for: str) -> str:
    """A failure message that explains itself: what the notebook shows, the kernel's state, the server's log."""
    shot = Path(smoke_reports) / "explorer-failed.png"
    browser.save_screenshot(str(shot))
    try:
        kernels = _kernel_states(url, token)
    except OSError as exc:
        kernels = [f"unknown ({exc})"]
    log = next(Path(smoke_reports).parent.glob("jupyter*/server.log"), None)
    tail = log.read_text(errors="replace")[-2000:] if log else "(no server log found)"
    return (
        f"waited for {waited_for}; kernels: {kernels}; screenshot {shot}\n"
        f"the notebook shows:\n{_visible_text(browser)[-3000:]}\nthe server's log ends:\n{tail}"
    )


def test_a_clinician_runs_the_case_study_and_explores_another_patient(lab, browser, smoke_reports):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, token = lab
    wait = WebDriverWait(browser, 180)
    browser.get(f"{url}/lab/tree/07_case_study.ipynb?token={token}")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    # the kernel started and idle, as the server knows it and as the page shows it
    wait.until(lambda d: (states := _kernel_states(url, token)) and all(s == "idle" for s in states))
    wait.until(
        lambda d: (
            "idle"
            in (d.find_element(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or "")
        )
    )
    _run_all_cells(browser)
    try:
        dropdown = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".widget-dropdown select")))
    except TimeoutException:
        pytest.fail(_what_went_wrong(browser, url, token, smoke_reports, "the explorer's dropdown"))
    run_dir = (smoke_reports / "latest").resolve()
    # run by hand, the notebook reads the finished run and writes into a copy of it: its first output says both
    wait.until(lambda d: f"this notebook reads run {run_dir.name} " in _visible_text(d))
    assert f"Run folder {run_dir}~07-by-hand-" in _visible_text(browser)
    # an option reads "P001 · thalassemia · answers": the patient's id, the doctor's label, whether evaluated
    first = Select(dropdown).first_selected_option.text.split(" · ")[0]
    wait.until(lambda d: f"Patient {first}" in _explorer_text(d))
    choice = Select(dropdown)
    others = [o for o in choice.options if not o.text.startswith(f"{first} ") and "answers" not in o.text]
    assert len(choice.options) > 5 and others, "every test patient is offered, not only the evaluated ones"
    target = others[0].text.split(" · ")[0]
    choice.select_by_visible_text(others[0].text)
    # the view follows the choice, and a patient without answers says so instead of failing (the output
    # is drawn piece by piece: wait for its last part)
    wait.until(
        lambda d: f"Patient {target}" in (shown := _explorer_text(d)) and "not in the evaluation's sample" in shown,
        message=f"the explorer did not show patient {target} as not evaluated: {_explorer_text(browser)[:500]!r}",
    )
    assert f"Patient {first}" not in _explorer_text(browser)
    text = _visible_text(browser)
    errors = browser.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    assert not [e.text for e in errors if "Traceback" in e.text or "Error" in e.text]
    assert "Traceback" not in text
    browser.save_screenshot(str(Path(smoke_reports) / "explorer.png"))

    # the playground of that patient (outside notebook 05's sample): delete a word with a click, Ask, and see the
    # three answers with their scores and the try in her list
    toggles = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-toggle-button"))
    text_box = browser.find_element(By.CSS_SELECTOR, ".widget-textarea textarea")
    words_before = len(text_box.get_attribute("value").split())
    toggles[3].click()
    wait.until(lambda d: len(text_box.get_attribute("value").split()) == words_before - 1)
    assert "π(e | s_0)" in _explorer_text(browser)
    clicked = time.perf_counter()
    browser.find_element(By.XPATH, "//button[normalize-space()='Ask']").click()
    try:
        wait.until(lambda d: "answered in" in (shown := _explorer_text(d)) and "your prompt" in shown)
    except TimeoutException:
        pytest.fail(_what_went_wrong(browser, url, token, smoke_reports, "the playground's answer"))
    seconds = time.perf_counter() - clicked
    shown = _explorer_text(browser)
    assert "BERTScore-F1" in shown and "ROUGE-L" in shown and "Your tries since the explorer opened" in shown
    assert "The responder failed" not in shown
    (Path(smoke_reports) / "playground_ask.json").write_text(
        json.dumps({"seconds_click_to_answer": round(seconds, 1), "patient": target, "answers": 3})
    )
    browser.save_screenshot(str(Path(smoke_reports) / "playground.png"))
