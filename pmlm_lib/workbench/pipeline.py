"""`pmlm report`: run the numbered notebooks in order with papermill, then build the report page.

Each notebook runs in its own process (papermill starts the kernel under it), so that its wall
time and peak memory (the kernel's maximum resident set) are measured exactly. A failing notebook
stops the run with a message naming the notebook and the cell; its executed copy is kept, the
partial report is written, and `--from` resumes there with the earlier outputs.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from pmlm_lib.common.weights import model_identities
from pmlm_lib.workbench.artifacts import TRAININGS_STEP
from pmlm_lib.workbench.errors import PipelineError
from pmlm_lib.workbench.plan import make_plan
from pmlm_lib.workbench.profiles import (
    default_notebooks_dir,
    default_reports_dir,
    discover_notebooks,
    expand_responders,
    load_profile,
    merge_sections,
    parameters_for,
    resolve_data,
)
from pmlm_lib.workbench.record import EARLIER, RunRecord, environment_record, git_record, update_latest
from pmlm_lib.workbench.report import build_report
from pmlm_lib.workbench.runner import NotebookResult, execute_in_subprocess, render_html

__all__ = ["PipelineError", "run_report"]


def _plan_summary(profile: str, data: str | None, overrides: dict, reports_dir: Path, console) -> dict:
    """The plan of the run before it starts (answers and minutes per notebook), kept beside what happens."""
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
    reports_dir = Path(reports_dir or default_reports_dir())
    run_dir = (reports_dir / run).resolve() if run else None
    previous = RunRecord.read_if_any(run_dir)
    if start_from and previous:
        profile = profile or previous.profile
        data = data if data is not None else previous.data_argument
        overrides = merge_sections(previous.overrides, overrides or {})
    profile = profile or "default"
    prof = load_profile(profile)
    data = resolve_data(data)
    notebooks_dir = Path(notebooks_dir or default_notebooks_dir())
    notebooks = discover_notebooks(notebooks_dir)
    if only:
        notebooks = [nb for nb in notebooks if any(nb.stem.startswith(o) for o in only)]
    if not notebooks:
        raise PipelineError(f"no notebooks named NN_*.ipynb in {notebooks_dir}")
    given = merge_sections(overrides or {})
    effective = merge_sections(given, {"01_data_filtering": {"data_source": data}} if data is not None else {})

    if run_dir is None:
        run = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{Path(prof['name']).stem}"
        run_dir = (reports_dir / run).resolve()
    params = expand_responders(
        {nb.stem: parameters_for(nb, prof, run_dir, effective) for nb in notebooks}, prof.get("responders")
    )
    # (run key, notebook): notebook 04 once per responder of the profile ("04_rl_refinement@NAME" for the others)
    jobs = [(key, nb) for nb in notebooks for key in params if key.split("@")[0] == nb.stem]
    start_index = 0
    if start_from:
        matches = [i for i, (key, _) in enumerate(jobs) if key.startswith(start_from)]
        if not matches:
            raise PipelineError(
                f"--from {start_from}: no notebook starts with that name ({', '.join(key for key, _ in jobs)})"
            )
        start_index = matches[0]
        if start_index > 0 and not run_dir.exists():
            raise PipelineError(
                f"--from {start_from} resumes a run, and {run_dir} does not exist: give --run of an earlier run"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    _drop_trainings_if_changed(run_dir, [key for key, _ in jobs[start_index:]], console)

    kept = {r["notebook"]: r for r in (previous.notebooks if previous else [])}
    data_source = (prof["parameters"].get("01_data_filtering") or {}).get("data_source", "default")
    resumed = bool(start_from and previous)
    record = RunRecord(
        run=run,
        profile=prof["name"],
        profile_description=prof.get("description", ""),
        started=previous.started if resumed else dt.datetime.now().isoformat(timespec="seconds"),
        data=data or data_source,
        data_argument=data,
        overrides=given,
        environment=environment_record(),
        models=model_identities(),
        git=git_record(),
    )
    if resumed:  # what the earlier run did stays on record, including notebooks that `--only` leaves out here
        record.parameters, record.seeds = dict(previous.parameters), dict(previous.seeds)
    for key, _ in jobs:
        record.parameters[key] = params[key]
        record.seeds[key] = params[key].get("seed")
    keys = {key for key, _ in jobs}
    first = jobs[start_index][0]
    outside = [  # the notebooks before this one that `--only` leaves out; later ones no longer match the new outputs
        {**r, "status": r["status"].replace(EARLIER, "") + EARLIER}
        for r in (previous.notebooks if resumed else [])
        if r["notebook"] not in keys and r["notebook"] < first
    ]
    record.plan = previous.plan if resumed else _plan_summary(profile, data, given, reports_dir, console)
    record.write(run_dir)
    console.write(
        f"[pmlm] run {run} (profile {prof['name']}, data {record.data}); notebook output in {run_dir / 'logs'}\n"
    )

    record.notebooks = list(outside)
    for i, (key, nb) in enumerate(jobs):
        if i < start_index:
            if key in kept:
                record.notebooks.append({**kept[key], "status": kept[key]["status"].replace(EARLIER, "") + EARLIER})
            continue
        executed = run_dir / "notebooks" / f"{key}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        outcome = execute_in_subprocess(nb, executed, record.parameters[key], run_dir / "logs", console)
        html = None
        if executed.exists():
            html_path = executed.with_suffix(".html")
            try:
                render_html(executed, html_path)
                html = str(html_path.relative_to(run_dir))
            except Exception as exc:  # a rendering problem must not hide the notebook's own result
                console.write(f"[pmlm] {key}: HTML rendering failed: {exc}\n")
        result = NotebookResult(
            key,
            outcome["status"],
            outcome["wall_seconds"],
            outcome.get("peak_memory_mb"),
            str(executed.relative_to(run_dir)),
            html,
            outcome.get("error"),
        )
        record.notebooks = sorted(record.notebooks + [result.__dict__], key=lambda r: r["notebook"])
        peak = "" if result.peak_memory_mb is None else f", peak {result.peak_memory_mb:.0f} MB"
        console.write(f"[pmlm] {key}: {result.status} in {result.wall_seconds:.1f} s{peak}\n")
        console.flush()
        record.write(run_dir)
        if result.status != "ok":
            record.status = "failed"
            record.finished = dt.datetime.now().isoformat(timespec="seconds")
            record.write(run_dir)
            build_report(run_dir)
            raise PipelineError(
                f"{result.error}\nThe executed notebook is kept at {executed}; its full output is in "
                f"{outcome['log']}.\nFix the cause, then resume with: pmlm report --run {run} --from {key}"
                " (the run's profile, data and --set values are kept)"
            )
    record.status = "ok"
    record.finished = dt.datetime.now().isoformat(timespec="seconds")
    record.write(run_dir)
    build_report(run_dir)
    update_latest(reports_dir, run_dir)
    return run_dir
