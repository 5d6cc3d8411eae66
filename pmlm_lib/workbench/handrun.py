"""A notebook run by hand never writes into a finished run.

`pmlm report` runs each notebook under papermill with the run's parameters (the runner sets PMLM_PIPELINE=1).
A notebook opened in JupyterLab and run by hand is another matter: its parameters cell holds the stored
defaults, not the run's, and its outputs would replace the finished run's, whose later notebooks would then
disagree with it. So, by hand:

- the run it reads is the newest one that has what this step reads (`reports/latest` may point at a partial
  run, such as a data check with `--only 01 02 03`), and the first output says which;
- its parameters start from the ones that run was made with (run.json), except those the user changed in the
  parameters cell (a value that differs from the notebook's committed default is hers, and is kept);
- its outputs go to a new run folder derived from the finished one: a copy, whose record names the run it came
  from, keeps the earlier steps and marks this step and the later ones as not run for this variant (their
  report sections are left out). A run made by hand is written into directly when a notebook is run on it again.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pmlm_lib import PACKAGE_DIR
from pmlm_lib.workbench.record import EARLIER, RunRecord

PIPELINE_ENV = "PMLM_PIPELINE"  # set by the runner for the notebooks it executes
BY_HAND = "by hand"  # the status of a run folder made for a hand run
NOT_RUN = "not run for this variant"
# how a notebook shows its results, not what the run computed: by hand it keeps its own value (widgets in
# JupyterLab; the report runs with interactive = False)
NOT_INHERITED = ("run_dir", "interactive")
_derived: dict[tuple[str, str], Path] = {}  # (source run, step) -> the folder this kernel already made


def is_hand_run() -> bool:
    return os.environ.get(PIPELINE_ENV) != "1"


def _number(step: str) -> str:
    return step[:2]


def _has_inputs(record: RunRecord, step: str) -> bool:
    """The run finished every notebook before this step (what this step reads)."""
    return not record.missing([f"{i:02d}" for i in range(1, int(_number(step)))])


def source_run(run_dir: Path, step: str) -> tuple[Path, str]:
    """The run a hand-run notebook reads, and why that one: the given folder, or for reports/latest the newest
    run (by start) that has every notebook before this step."""
    given = Path(run_dir)
    if given.name != "latest":
        return given.resolve(), "the run_dir parameter names it"
    reports = given.parent
    candidates = []
    for folder in reports.iterdir() if reports.exists() else []:
        record = RunRecord.read_if_any(folder) if folder.is_dir() and not folder.is_symlink() else None
        if record is not None and record.status != BY_HAND and _has_inputs(record, step):
            candidates.append((record.started or "", folder))
    if not candidates:
        return given.resolve(), "reports/latest"
    newest = max(candidates)[1].resolve()
    if newest == given.resolve():
        return newest, "reports/latest, the newest run with what this notebook reads"
    return newest, (
        f"the newest run with notebooks 01-{int(_number(step)) - 1:02d} finished (reports/latest points at "
        f"{given.resolve().name}, which lacks some of them)"
    )


def derive(source: Path, step: str) -> Path:
    """A copy of a finished run for a hand run of `step` (made once per kernel), never the run itself."""
    key = (str(source), step)
    if key in _derived and _derived[key].exists():
        return _derived[key]
    target = source.parent / f"{source.name}~{_number(step)}-by-hand-{dt.datetime.now():%Y%m%d-%H%M%S}"
    shutil.copytree(source, target, symlinks=True)
    record = RunRecord.read(target)
    later = [nb for nb in record.notebooks if nb["notebook"][:2] >= _number(step)]
    for nb in later:  # their outputs in the copy belong to the finished run, not to this variant
        (target / "artifacts" / f"{nb['notebook']}.json").unlink(missing_ok=True)
    record.notebooks = [
        {**nb, "status": nb["status"].replace(EARLIER, "") + EARLIER}
        if nb["notebook"][:2] < _number(step)
        else {**nb, "status": NOT_RUN, "wall_seconds": 0.0}
        for nb in record.notebooks
    ]
    record.extra["derived_from"] = source.name
    record.extra["by_hand"] = {"step": step, "started": dt.datetime.now().isoformat(timespec="seconds")}
    record.run, record.status, record.finished = target.name, BY_HAND, None
    record.write(target)
    _derived[key] = target
    return target


def notebook_defaults(notebook: str | Path) -> dict:
    """The values a notebook's parameters cell gives (papermill's reading, evaluated as Python literals)."""
    import papermill

    out = {}
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            out[name] = spec["default"]
    return out


def parameter_names(step: str) -> list[str]:
    """The names in the step's parameters cell, in its order (the notebook as saved; else as committed)."""
    notebook = PACKAGE_DIR.parent / "notebooks" / f"{step.split('@')[0]}.ipynb"
    return list(notebook_defaults(notebook) if notebook.exists() else committed_defaults(step))


def committed_defaults(step: str) -> dict:
    """The parameters cell's values of the step's notebook as committed (git HEAD), else as saved on disk (a
    variant, "04_rl_refinement@NAME", is notebook 04's)."""
    name = f"{step.split('@')[0]}.ipynb"
    try:
        text = subprocess.run(
            ["git", "show", f"HEAD:notebooks/{name}"],
            cwd=PACKAGE_DIR.parent,
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    if text:
        with tempfile.TemporaryDirectory() as folder:
            committed = Path(folder) / name
            committed.write_text(text, encoding="utf-8")
            return notebook_defaults(committed)
    notebook = PACKAGE_DIR.parent / "notebooks" / name
    return notebook_defaults(notebook) if notebook.exists() else {}


def inherit_parameters(namespace: dict, step: str, recorded: dict) -> tuple[dict, dict]:
    """Set the notebook's parameters to the run's (`recorded`), except the ones the user changed: (taken from the
    run, kept as the user set them). `namespace` is the notebook's globals()."""
    defaults = committed_defaults(step)
    taken, kept = {}, {}
    for name, default in defaults.items():
        if name in NOT_INHERITED or name not in namespace:
            continue
        if namespace[name] != default:  # the user's own value
            kept[name] = namespace[name]
        elif name in recorded and recorded[name] != namespace[name]:
            namespace[name] = recorded[name]
            taken[name] = recorded[name]
    return taken, kept
