"""The papermill runner: one notebook in its own process, its wall time, peak memory and log.

Each notebook runs in a child process (papermill starts the kernel under it), so that its wall time and peak
memory (the kernel's maximum resident set) are measured exactly; the console shows one line of progress.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pmlm_lib.common.atomic import write_json
from pmlm_lib.common.weights import repo_root
from pmlm_lib.llm.answer_log import ANSWER_LOG_ENV
from pmlm_lib.workbench.handrun import PIPELINE_ENV


@dataclass
class NotebookResult:
    notebook: str
    status: str
    wall_seconds: float
    peak_memory_mb: float | None
    output: str
    html: str | None
    error: str | None = None


def _progress_line(log_path: Path, width: int = 70) -> str:
    """The last line of a notebook's log that says where it is (a progress bar, an epoch, a step)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    pieces = [p.strip() for p in tail.replace("\r", "\n").splitlines()]
    pieces = [
        p
        for p in pieces
        if p and not p.startswith(("Executing Cell", "Ending Cell", "Input Notebook", "Output Notebook"))
    ]
    line = pieces[-1] if pieces else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _child_env() -> dict:
    """The notebook process imports the library of this checkout, whatever else is installed."""
    env = dict(os.environ)
    root = repo_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PMLM_REPO_ROOT"] = str(root)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PIPELINE_ENV] = "1"  # the notebook runs with the run's parameters, into the run (see handrun)
    return env


def execute_in_subprocess(source: Path, output: Path, params: dict, log_dir: Path, console=sys.stderr) -> dict:
    """Run one notebook in a child process; its output (papermill's cell log, the kernel's messages and
    progress bars) goes to logs/NN_name.log, and the console shows one line: elapsed time and the
    latest progress while it runs (on a terminal), then the outcome."""
    log_dir.mkdir(parents=True, exist_ok=True)
    request = log_dir / f"{output.stem}.request.json"
    result = log_dir / f"{output.stem}.result.json"
    log_path = log_dir / f"{output.stem}.log"
    answers_log = log_dir / f"{output.stem}.answers.jsonl"
    result.unlink(missing_ok=True)
    answers_log.unlink(missing_ok=True)
    write_json(request, {"source": str(source), "output": str(output), "parameters": params})
    live = hasattr(console, "isatty") and console.isatty()
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pmlm_lib.workbench.runner", "--execute", str(request), str(result)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_child_env(), ANSWER_LOG_ENV: str(answers_log)},
        )
        while proc.poll() is None:
            time.sleep(1.0)
            if live:
                elapsed = time.perf_counter() - start
                console.write(
                    f"\r\033[K[pmlm] {output.stem}: {elapsed // 60:.0f}:{elapsed % 60:02.0f}  "
                    f"{_progress_line(log_path)}"
                )
                console.flush()
    if live:
        console.write("\r\033[K")
    wall = time.perf_counter() - start
    outcome = (
        json.loads(result.read_text())
        if result.exists()
        else {
            "status": "failed",
            "error": f"the notebook process ended with code {proc.returncode} before reporting (killed for memory?)",
            "peak_memory_mb": None,
        }
    )
    outcome["wall_seconds"] = round(wall, 2)
    outcome["log"] = str(log_path)
    return outcome


def _execute_one(request_path: str, result_path: str) -> int:
    """Child process: run one notebook with papermill, report status and the kernel's peak memory."""
    import logging
    import resource

    import papermill
    from papermill.exceptions import PapermillExecutionError

    # papermill's cell log and the notebook's own output go to this process's stderr: the notebook's log file
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    for noisy in ("traitlets", "asyncio", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    request = json.loads(Path(request_path).read_text())
    source = Path(request["source"])
    outcome = {"status": "ok", "error": None}
    try:
        papermill.execute_notebook(
            str(source),
            request["output"],
            parameters=request["parameters"],
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
            log_output=True,
            request_save_on_cell_execute=True,
        )
    except PapermillExecutionError as exc:
        first_line = next((line for line in (exc.source or "").splitlines() if line.strip()), "")
        where = f'{source.name} failed in cell [{exc.exec_count}] of the executed notebook ("{first_line[:80]}")'
        outcome = {"status": "failed", "error": f"{where}: {exc.ename}: {exc.evalue}"}
    except Exception as exc:  # kernel died, notebook unreadable, ...
        outcome = {"status": "failed", "error": f"{source.name} could not run: {type(exc).__name__}: {exc}"}
    # the kernel is this process's child and has been reaped: its high-water mark is here (KiB on Linux)
    outcome["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    write_json(Path(result_path), outcome)
    return 0


def render_html(executed: Path, target: Path) -> None:
    """An HTML rendering of an executed notebook, for the links on the report page."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    target.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--execute":
        sys.exit(_execute_one(sys.argv[2], sys.argv[3]))
    sys.exit(
        "usage: python -m pmlm_lib.workbench.runner --execute REQUEST.json RESULT.json (internal; use `pmlm report`)"
    )
