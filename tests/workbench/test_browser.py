"""What a clinician sees: JupyterLab on a copy of the smoke run, in a real browser (headless Chromium): notebook 07's
explorer and playground, a case exported, and notebook 04 run by hand, which must leave the finished run untouched.

Skipped, with the reason, only where no Chromium and ChromeDriver can be had (`.ci/run` installs Debian's
`chromium` and `chromium-driver` when they are missing, so CI always runs it).
"""

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO

from pmlm_lib.workbench.record import RunRecord, update_latest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
LAB_START_SECONDS = 180  # a first start on a busy 2-core machine, after the smoke run, can take a minute


@pytest.fixture(scope="module")
def lab_reports(smoke_run, tmp_path_factory):
    """A reports/ folder holding a copy of the smoke run as its latest run (the tests here add runs beside it)."""
    reports = tmp_path_factory.mktemp("lab_reports")
    run = Path(shutil.copytree(smoke_run[1], reports / smoke_run[1].name, symlinks=True))
    update_latest(reports, run)
    return reports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(name: str, command: list[str], ready_url: str, home: Path):
    """A Jupyter server (JupyterLab or Voilà) started with its own folders under the test's (a CI home that is
    read-only or holds a user's settings cannot stop or change it), answering `ready_url`; stopped afterwards. Its
    log is kept to say why, should it not start."""
    env = {
        **os.environ,
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    log = (home / f"{name}.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    started = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(ready_url, timeout=5)
            break
        except urllib.error.HTTPError:
            break  # it answers (with an error page: Voilà runs the notebook only for the page itself)
        except OSError:
            if server.poll() is not None or time.monotonic() - started > LAB_START_SECONDS:
                server.kill()
                tail = (home / f"{name}.log").read_text(errors="replace")[-3000:]
                pytest.fail(
                    f"{name} did not answer within {time.monotonic() - started:.0f} s "
                    f"(exit code {server.poll()}); its log ends:\n{tail}"
                )
            time.sleep(0.5)
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def lab_root(lab_reports, tmp_path_factory):
    """notebooks/ with copies of notebooks 04 and 07 beside reports/, whose latest run is the smoke run."""
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "no Chromium and ChromeDriver here (Debian: apt-get install chromium chromium-driver; .ci/run does)"
        )
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "07_case_study.ipynb", root / "notebooks")
    # notebook 04 as a user leaves it after changing one value of its parameters cell
    stored = (REPO / "notebooks" / "04_rl_refinement.ipynb").read_text(encoding="utf-8")
    changed = stored.replace("random_control = True ", "random_control = False", 1)
    assert changed != stored, "notebook 04's parameters cell no longer sets random_control = True"
    (root / "notebooks" / "04_rl_refinement.ipynb").write_text(changed, encoding="utf-8")
    (root / "reports").symlink_to(lab_reports, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    """JupyterLab on the lab's notebooks/: (its address, its token)."""
    port, token = _free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={lab_root / 'notebooks'}",
        "--ServerApp.open_browser=False",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # CI and containers run as root, where Jupyter refuses to start without it
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    with _server("server", command, f"{url}/api/status?token={token}", tmp_path_factory.mktemp("jupyter")):
        yield url, token


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


def _click_afresh(driver, by: str, selector: str, index: int = 0) -> None:
    """Click the index-th element the selector finds, finding it afresh until the click lands: the page may draw
    the explorer's widgets again while it settles (CI once clicked a word button that had just been replaced), and
    a person would simply click again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def click(d) -> bool:
        found = d.find_elements(by, selector)
        if len(found) <= index:
            return False
        found[index].click()
        return True

    WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(click)


def _prompt_box_text(driver) -> str:
    """The playground's prompt as its text box holds it now (found afresh: the page may have drawn it again; the
    notebook's waits ask again when it was replaced while being read)."""
    return driver.find_element("css selector", ".widget-textarea textarea").get_attribute("value")


def _kernel_states(url: str, token: str) -> list[str]:
    """The execution state of every kernel the server runs (its REST API: what the page cannot hide)."""
    import json

    with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as reply:
        return [k.get("execution_state", "?") for k in json.load(reply)]


def _settled(driver, url: str, token: str) -> bool:
    """Every kernel idle, as the server says, twice a second apart (between two queued cells a kernel is idle for
    a moment), and the page's indicator idle too."""
    from selenium.webdriver.common.by import By

    for _ in range(2):
        if not all(s == "idle" for s in _kernel_states(url, token)):
            return False
        time.sleep(1)
    indicator = driver.find_element(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator").get_attribute("data-status")
    return "idle" in (indicator or "")


def _cells_started(driver) -> bool:
    """Whether any code cell has begun to run: its prompt shows [*] or an execution count instead of [ ]."""
    prompts = driver.find_elements("css selector", ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt")
    return any("*" in p.text or any(ch.isdigit() for ch in p.text) for p in prompts)


def _run_all_cells(browser, notebook: str = "07_case_study.ipynb") -> None:
    """Run > Run All Cells, as a person does it: the notebook's tab clicked first (a fresh JupyterLab may leave the
    focus elsewhere, and then the entry does nothing), the menu opened again if it did not open, and the whole
    thing again if no cell started (a click that lands while the page is still settling is lost)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    tab = (
        "//li[contains(@class,'lm-TabBar-tab') and @data-type='document-title']"
        f"[.//*[contains(@class,'lm-TabBar-tabLabel') and normalize-space()='{notebook}']]"
    )
    menu = "//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='Run']"
    # the entry as a person sees it (its command id differs between JupyterLab versions), enabled
    entry = (
        "//li[contains(@class,'lm-Menu-item') and not(contains(@class,'lm-mod-disabled'))]"
        "[.//*[normalize-space()='Run All Cells']]"
    )
    try:
        WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.XPATH, tab))
    except TimeoutException:
        labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab")]
        browser.save_screenshot(str(Path(browser.capabilities.get("chrome", {}).get("userDataDir", ".")) / "tabs.png"))
        pytest.fail(
            f"no tab of {notebook} in JupyterLab; its tabs: {labels}; the page shows:\n{_visible_text(browser)[:1500]}"
        )
    for _ in range(10):
        browser.find_element(By.XPATH, tab).click()
        browser.find_element(By.XPATH, menu).click()
        try:
            WebDriverWait(browser, 10).until(lambda d: d.find_element(By.XPATH, entry).is_displayed())
            browser.find_element(By.XPATH, entry).click()
            WebDriverWait(browser, 30).until(_cells_started)
            return
        except TimeoutException:
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    pytest.fail(f"Run > Run All Cells never started a cell; the page shows:\n{_visible_text(browser)[:2000]}")


def _what_went_wrong(browser, url: str, token: str, lab_reports: Path, waited_for: str) -> str:
    """A failure message that explains itself: what the notebook shows, the kernel's state, the server's log."""
    shot = Path(lab_reports) / "explorer-failed.png"
    browser.save_screenshot(str(shot))
    try:
        kernels = _kernel_states(url, token)
    except OSError as exc:
        kernels = [f"unknown ({exc})"]
    log = next(Path(lab_reports).parent.glob("jupyter*/server.log"), None)
    tail = log.read_text(errors="replace")[-2000:] if log else "(no server log found)"
    return (
        f"waited for {waited_for}; kernels: {kernels}; screenshot {shot}\n"
        f"the notebook shows:\n{_visible_text(browser)[-3000:]}\nthe server's log ends:\n{tail}"
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _open_notebook(browser, url: str, token: str, name: str):
    """The notebook open in JupyterLab, its kernel started and idle (as the server and the page say)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    # an element read while the page draws it again is asked for again on the next poll
    wait = WebDriverWait(browser, 180, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(f"{url}/lab/tree/{name}?token={token}")
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    wait.until(lambda d: (states := _kernel_states(url, token)) and all(s == "idle" for s in states))
    wait.until(
        lambda d: (
            "idle"
            in (d.find_element(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator").get_attribute("data-status") or "")
        )
    )
    return wait


def test_a_clinician_runs_the_case_study_and_explores_another_patient(lab, browser, lab_reports):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select

    url, token = lab
    wait = _open_notebook(browser, url, token, "07_case_study.ipynb")
    _run_all_cells(browser)
    try:
        dropdown = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".pmlm-patient select")))
    except TimeoutException:
        pytest.fail(_what_went_wrong(browser, url, token, lab_reports, "the explorer's dropdown"))
    run_dir = (lab_reports / "latest").resolve()
    # Run All goes on with the cells below the explorer; a choice made meanwhile waits in the kernel's queue behind
    # them, so wait until the kernel has finished them, as a person would see the notebook settle
    wait.until(lambda d: _settled(d, url, token))
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
    browser.save_screenshot(str(Path(lab_reports) / "explorer.png"))

    # the playground of that patient (outside notebook 05's sample): delete a word with a click, Ask, and see the
    # three answers with their scores and the try in her list
    try:
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".widget-toggle-button")) > 3)
    except TimeoutException:
        pytest.fail(_what_went_wrong(browser, url, token, lab_reports, "the playground's word buttons"))
    words_before = len(wait.until(_prompt_box_text).split())  # the prompt as the box first shows it
    # the page may draw the playground's buttons again while it settles (CI once clicked a button that had just
    # been replaced): find them afresh until a click lands, as a person would click again
    _click_afresh(browser, By.CSS_SELECTOR, ".widget-toggle-button", index=3)
    wait.until(lambda d: len(_prompt_box_text(d).split()) == words_before - 1)
    assert "π(e | s_0)" in _explorer_text(browser)
    clicked = time.perf_counter()
    _click_afresh(browser, By.XPATH, "//button[normalize-space()='Ask']")
    try:
        wait.until(lambda d: "answered in" in (shown := _explorer_text(d)) and "your prompt" in shown)
    except TimeoutException:
        pytest.fail(_what_went_wrong(browser, url, token, lab_reports, "the playground's answer"))
    seconds = time.perf_counter() - clicked
    shown = _explorer_text(browser)
    assert "BERTScore-F1" in shown and "ROUGE-L" in shown and "Your tries since the explorer opened" in shown
    assert "The responder failed" not in shown
    (Path(lab_reports) / "playground_ask.json").write_text(
        json.dumps({"seconds_click_to_answer": round(seconds, 1), "patient": target, "answers": 3})
    )
    browser.save_screenshot(str(Path(lab_reports) / "playground.png"))

    # export the case: one HTML file in the hand run's copy, with her figure inside and nothing to fetch
    _click_afresh(browser, By.XPATH, "//button[normalize-space()='Export case']")
    wait.until(lambda d: "written:" in _explorer_text(d))
    exported = next(lab_reports.glob(f"{run_dir.name}~07-by-hand-*/cases/{target}.html"))
    page = exported.read_text(encoding="utf-8")
    assert f"Case {target}" in page and "data:image/png;base64," in page and "<script" not in page
    assert "Tries in the playground" in page  # her try of a moment ago went with it

    # open a peer: her summary, examinations and the doctor's reply appear below the peers
    peer_choice = Select(browser.find_element(By.CSS_SELECTOR, ".pmlm-peer select"))
    peer = peer_choice.options[1].text.split(" · ")[0]
    peer_choice.select_by_index(1)
    wait.until(lambda d: f"Peer {peer} of {target}" in (shown := _explorer_text(d)) and "Her examinations" in shown)

    # filter the list: only the patients with answers; the count says how many, the view follows
    everyone = len(Select(dropdown).options)
    browser.find_element(By.CSS_SELECTOR, ".pmlm-answered input[type='checkbox']").click()
    wait.until(lambda d: all("answers" in o.text for o in Select(dropdown).options))
    answered = len(Select(dropdown).options)
    assert 0 < answered < everyone
    wait.until(lambda d: f"{answered} of {everyone} test patients" in _visible_text(d))


def test_notebook_04_run_by_hand_leaves_the_finished_run_untouched_and_starts_from_its_parameters(
    lab, browser, lab_reports
):
    """What a user does in JupyterLab: notebook 04 with one value of its parameters cell changed
    (random_control = False), Run All Cells, while reports/latest points at a newer data check that has only
    notebooks 01-02. The finished run's files stay byte-identical; the copy starts from the run's parameters."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = lab
    finished = (lab_reports / "latest").resolve()
    partial = lab_reports / "data-check"
    partial.mkdir()
    record = RunRecord.read(finished)
    record.run, record.started = "data-check", "2999-01-01T00:00:00"
    record.notebooks = [nb for nb in record.notebooks if nb["notebook"][:2] <= "02"]
    record.write(partial)
    update_latest(lab_reports, partial)
    before = _hashes(finished)
    try:
        wait = _open_notebook(browser, url, token, "04_rl_refinement.ipynb")
        clicked = time.time()
        _run_all_cells(browser, "04_rl_refinement.ipynb")
        wait.until(lambda d: f"this notebook reads run {finished.name} " in _visible_text(d))
        first = _visible_text(browser)
        assert "the newest run with notebooks 01-03 finished (reports/latest points at data-check" in first
        assert "Parameters you changed, kept: random_control = False" in first
        assert "epochs = 2" in first  # the smoke run's, not the stored default's 6
        copy = next(lab_reports.glob(f"{finished.name}~04-by-hand-*"))

        def finished_or_failed(d):
            errors = d.find_elements(
                By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
            )
            failed = [e.text for e in errors if "Traceback" in e.text or "Error" in e.text]
            if failed:
                pytest.fail(f"notebook 04 run by hand failed: {failed[0][-1500:]}")
            # the copy starts with the finished run's file; this run's replaces it
            written = copy / "results" / "rl_refinement.json"
            done = written.exists() and written.stat().st_mtime > clicked
            return done and all(s == "idle" for s in _kernel_states(url, token))

        WebDriverWait(browser, 900, poll_frequency=2).until(finished_or_failed)
    finally:
        update_latest(lab_reports, finished)
        shutil.rmtree(partial)
    assert _hashes(finished) == before  # byte for byte
    made = RunRecord.read(copy)
    assert made.status == "by hand" and made.extra["derived_from"] == finished.name
    statuses = {nb["notebook"]: nb["status"] for nb in made.notebooks}
    assert statuses["03_peer_retrieval"].startswith("ok") and statuses["05_evaluation"] == "not run for this variant"
    refined = json.loads((copy / "results" / "rl_refinement.json").read_text())
    assert len(refined["history"]) == 2 and "minus_random" not in refined["history"][0]
    assert not (copy / "artifacts" / "05_evaluation.json").exists()  # a later step's section is not this variant's


def test_the_explorer_opens_as_a_page_without_code(lab_root, browser, tmp_path_factory):
    """`make explorer`: Voilà renders notebook 07 as a page, the widgets without the code that makes them."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "voila",
        str(lab_root / "notebooks" / "07_case_study.ipynb"),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
    ]
    with _server("voila", command, f"{url}/voila/ready-check", tmp_path_factory.mktemp("voila")):
        # Voilà answers the page once its kernel has run the notebook; twice in eight runs here the kernel started
        # and the page never came (the driver's own 120 s limit on `get` ended the test). So the page is asked for
        # without blocking, and asked for again once, as a person would reload it
        explorer = ready.presence_of_element_located((By.CSS_SELECTOR, ".pmlm-patient select"))
        dropdown = None
        for _ in range(2):
            browser.get("about:blank")  # leaves the page before (the driver answers any "leave page?" itself)
            browser.execute_script("window.location.href = arguments[0];", url)
            with contextlib.suppress(TimeoutException):
                dropdown = WebDriverWait(browser, 150).until(explorer)
                break
        if dropdown is None:
            shown = browser.find_element(By.TAG_NAME, "body").text[-3000:]
            pytest.fail(f"Voilà showed no explorer in two page loads of 150 s; the page shows:\n{shown}")
        WebDriverWait(browser, 120).until(lambda d: "Patient " in d.find_element(By.TAG_NAME, "body").text)
        page = browser.find_element(By.TAG_NAME, "body").text
        browser.save_screenshot(str(lab_root / "reports" / "voila.png"))
    assert len(Select(dropdown).options) > 5 and "Playground" in page
    assert "casestudy.explorer" not in page and "from pmlm_lib" not in page  # no code on screen
    assert "Traceback" not in page
