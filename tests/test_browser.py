"""What a clinician sees: JupyterLab on a smoke run, notebook 07 run in a real browser (headless Chromium).

Skipped, with the reason, only where no Chromium and ChromeDriver can be had (`.ci/run` installs Debian's
`chromium` and `chromium-driver` when they are missing, so CI always runs it).
"""

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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield url, token
    server.terminate()
    server.wait(timeout=30)


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


def test_a_clinician_runs_the_case_study_and_explores_another_patient(lab, browser, smoke_reports):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, token = lab
    wait = WebDriverWait(browser, 180)
    browser.get(f"{url}/lab/tree/07_case_study.ipynb?token={token}")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    wait.until(
        lambda d: (
            "idle"
            in (d.find_element(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or "")
        )
    )
    browser.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='Run']").click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "li[data-command='notebook:run-all-cells']"))).click()
    dropdown = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".widget-dropdown select")))
    run_dir = (smoke_reports / "latest").resolve()
    wait.until(lambda d: f"Run folder {run_dir}" in _visible_text(d))  # the first output says which run it reads
    first = Select(dropdown).first_selected_option.get_attribute("value")
    wait.until(lambda d: f"Patient {first}" in _explorer_text(d))
    choice = Select(dropdown)
    others = [o for o in choice.options if o.get_attribute("value") != first and "answers" not in o.text]
    assert len(choice.options) > 5 and others, "every test patient is offered, not only the evaluated ones"
    target = others[0].get_attribute("value")
    choice.select_by_value(target)
    wait.until(lambda d: f"Patient {target}" in _explorer_text(d))
    shown = _explorer_text(browser)
    assert f"Patient {first}" not in shown  # the view followed the choice
    assert "not in the evaluation's sample" in shown  # a patient without answers says so, instead of failing
    text = _visible_text(browser)
    errors = browser.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    assert not [e.text for e in errors if "Traceback" in e.text or "Error" in e.text]
    assert "Traceback" not in text
    browser.save_screenshot(str(Path(smoke_reports) / "explorer.png"))
