"""The report page: reports/<run>/index.html, one self-contained file.

It shows every table, figure and text the notebooks saved (in notebook order, then in the order
each notebook saved them), each notebook's wall time and peak memory, and the run's record:
profile, parameters, seeds, package versions, model identities and checksums.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

from pmlm_lib.common.atomic import atomic_write_text
from pmlm_lib.workbench.artifacts import TRAININGS_RESULTS, TRAININGS_STEP, read_findings, read_manifest
from pmlm_lib.workbench.headroom import newest_for as newest_headroom
from pmlm_lib.workbench.plan import actual
from pmlm_lib.workbench.record import RunRecord

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
  color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.table{border-collapse:collapse;font-size:.88em;margin:.5em 0 1.5em}
.table th,.table td{border:1px solid #ddd;padding:3px 7px;text-align:right}
.table th{background:#f4f4f4} .table td:first-child,.table th:first-child{text-align:left}
figure{margin:1em 0 2em} figure img{max-width:100%} figcaption,.caption{font-size:.92em;color:#444;margin:.3em 0}
pre{background:#f7f7f7;padding:.8em;white-space:pre-wrap;font-size:.85em;border-left:3px solid #ccc}
.meta td{vertical-align:top} .failed{color:#b00;font-weight:bold} .ok{color:#070}
details{margin:.5em 0} summary{cursor:pointer;font-weight:600}
.findings{background:#f3f7fb;border:1px solid #c9d6e8;border-left:5px solid #4C72B0;padding:.6em 1.2em;
  margin:1em 0 1.5em}
.toc ul{margin:.2em 0;columns:2} .toc .toc-inner{columns:1;font-size:.88em}
.findings h2{border:none;margin:.3em 0} .findings h3{font-size:1em;margin:.8em 0 .2em} .findings ul{margin:.2em 0}
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _kv_table(rows: dict) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows.items())
    return f'<table class="table meta">{body}</table>'


def _artifact_html(run_dir: Path, entry: dict) -> str:
    caption = f'<div class="caption">{_esc(entry["caption"])}</div>'
    if entry["kind"] == "table":
        table_html = (run_dir / f"tables/{entry['name']}.html").read_text(encoding="utf-8")
        return f'<section id="{_esc(entry["name"])}">{caption}{table_html}</section>'
    if entry["kind"] == "figure":
        data = base64.b64encode((run_dir / entry["files"][0]).read_bytes()).decode()
        return (
            f'<figure id="{_esc(entry["name"])}">'
            f'<img alt="{_esc(entry["caption"])}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(entry['caption'])}</figcaption></figure>"
        )
    if entry["kind"] == "text":
        body = (run_dir / entry["files"][0]).read_text(encoding="utf-8")
        return f'<section id="{_esc(entry["name"])}">{caption}<pre>{_esc(body)}</pre></section>'
    return ""


def _notebook_row(nb: dict, planned: dict, asked: dict) -> str:
    status_class = "ok" if nb["status"].startswith("ok") else "failed"
    peak = "" if nb.get("peak_memory_mb") is None else f"{nb['peak_memory_mb']:.0f}"
    link = f"<a href='{_esc(nb['html'])}'>executed notebook</a>" if nb.get("html") else ""
    plan = planned.get(nb["notebook"], {})
    minutes = f"{plan['minutes']:.1f}" if "minutes" in plan else ""
    answers = f"{asked['requested']} ({asked['generated']} new, {asked['from_cache']} cached)" if asked else ""
    planned_answers = str(plan.get("answers", "")) if plan.get("answers") else ""
    return (
        f"<tr><td><a href='#{_esc(nb['notebook'])}'>{_esc(nb['notebook'])}</a></td>"
        f"<td class='{status_class}'>{_esc(nb['status'])}</td><td>{nb['wall_seconds'] / 60:.1f}</td><td>{minutes}</td>"
        f"<td>{_esc(answers)}</td><td>{planned_answers}</td><td>{peak}</td><td>{link}</td></tr>"
    )


def _steps(run_dir: Path, record: RunRecord) -> list[str]:
    """What saved outputs in this run, in order: its notebooks, then `pmlm trainings` where it ran on this run."""
    steps = [nb["notebook"] for nb in record.notebooks]
    return steps + ([TRAININGS_STEP] if (run_dir / "artifacts" / f"{TRAININGS_STEP}.json").exists() else [])


def _contents_html(run_dir: Path, record: RunRecord) -> str:
    """A table of contents: each notebook, and under it each of its tables and figures."""
    items = [
        "<li><a href='#findings'>Findings</a></li>",
        "<li><a href='#notebooks'>Notebooks: time, memory, answers</a></li>",
    ]
    for step in _steps(run_dir, record):
        entries = read_manifest(run_dir, step)
        inner = "".join(
            f"<li><a href='#{_esc(e['name'])}'>{_esc(e['name'].replace('_', ' '))}</a></li>" for e in entries
        )
        items.append(
            f"<li><a href='#{_esc(step)}'>{_esc(step)}</a>"
            + (f"<ul class='toc-inner'>{inner}</ul>" if inner else "")
            + "</li>"
        )
    items.append("<li><a href='#record'>Run record</a></li>")
    return f"<nav class='toc' id='contents'><h2>Contents</h2><ul>{''.join(items)}</ul></nav>"


def _findings_html(run_dir: Path, record: RunRecord) -> str:
    """The Findings box: every notebook's findings, in notebook order, before anything else."""
    groups = [f for step in _steps(run_dir, record) for f in read_findings(run_dir, step)]
    if not groups:
        return (
            "<div class='findings' id='findings'><h2>Findings</h2><p>No findings yet: the notebooks that compare "
            "systems (05_evaluation) have not run in this run.</p></div>"
        )
    body = "".join(
        f"<h3>{_esc(g['heading'])}</h3><ul>" + "".join(f"<li>{_esc(s)}</li>" for s in g["sentences"]) + "</ul>"
        for g in groups
    )
    body += f"<h3>What one training is worth</h3><p>{_esc(training_spread(run_dir, record))}</p>"
    body += f"<h3>What a per-patient prompt could add</h3><p>{_esc(headroom_note(run_dir, record))}</p>"
    return f"<div class='findings' id='findings'><h2>Findings</h2>{body}</div>"


def _trained_policy(run_dir: Path) -> str:
    """'the one policy this run trained', or which of its trainings validation patients accepted."""
    path = Path(run_dir) / "results" / "rl_refinement.json"
    restarts = (json.loads(path.read_text(encoding="utf-8")).get("restarts") or {}) if path.exists() else {}
    judged = restarts.get("selection") or []
    if not judged:
        return "the one policy this run trained"
    n, chosen, patients = len(judged), restarts["chosen"], int(judged[0]["patients"])
    if not judged[chosen].get("accepted"):
        return (
            f"the best of the {n} policies this run trained (none beat random deletion by the judge's margin on "
            f"{patients} validation patients)"
        )
    if n == 1:
        return f"the one policy this run trained (accepted on {patients} validation patients)"
    return (
        f"the policy this run kept, its training {chosen + 1} of {n} (the earlier ones turned down on {patients} "
        "validation patients)"
    )


def training_spread(run_dir: Path, record: RunRecord) -> str:
    """The spread between trainings measured for this run's profile: from the newest `pmlm trainings` of a
    run of the same profile beside it (this one included), or a sentence saying it is not measured yet."""
    measured = []
    for path in Path(run_dir).resolve().parent.glob(f"*/results/{TRAININGS_RESULTS}"):
        if path.parent.parent.is_symlink():  # reports/latest: the run it points at is found by its own name
            continue
        other = RunRecord.read_if_any(path.parent.parent)
        if other is not None and other.profile == record.profile:
            measured.append(path)
    lead = (
        f"Each interval above covers this run's test patients for {_trained_policy(run_dir)}; another training "
        "of the same profile can land elsewhere. "
    )
    if not measured:
        return lead + (
            f"The spread between trainings of the profile '{record.profile}' is not measured yet: "
            "`make trainings` trains the refinement again on this run and measures it."
        )
    newest = max(measured, key=lambda p: p.stat().st_mtime)
    rows = [
        r for r in json.loads(newest.read_text(encoding="utf-8")) if str(r.get("training", "")).startswith("across")
    ]
    when = dt.date.fromtimestamp(newest.stat().st_mtime).isoformat()
    parts = [
        f"PMLM − {r['PMLM against']} ({r['setting']}): sd {r['sd_between_trainings']:.1f} between trainings, "
        f"their means {r['lowest_training']:+.1f} to {r['highest_training']:+.1f}, "
        f"{int(r.get('trainings_mean_below_zero', 0))} of {int(r['trainings'])} below zero"
        for r in rows
        if r["PMLM against"] in ("without PR (s_0)", "random deletion")
    ]
    run = newest.parent.parent.name
    return lead + (
        f"Measured for the profile '{record.profile}' by `pmlm trainings` on run {run} ({when}, "
        f"{int(rows[0]['trainings'])} trainings, {int(rows[0]['n'])} test patients): " + "; ".join(parts) + "."
        if rows
        else f"The newest trainings of this profile ({run}) hold no comparison across trainings."
    )


def headroom_note(run_dir: Path, record: RunRecord) -> str:
    """The newest headroom study of this run's profile (`pmlm headroom`), dated, or how to measure it."""
    summary = newest_headroom(record.profile, Path(run_dir).resolve().parent)
    if summary is None:
        return (
            f"Not measured yet for the profile '{record.profile}': `pmlm headroom --run {Path(run_dir).name}` answers "
            "candidate edits of s_0 on validation patients and says what a per-patient choice could add over one "
            "edit for everyone, with this responder."
        )
    return (
        f"Measured by `pmlm headroom` on run {summary['run']} ({summary['date']}, {summary['machine']}, "
        f"{summary['answers']['asked']} answers): {summary['sentence']}"
    )


def build_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    record = RunRecord.read(run_dir)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>PMLM report: {_esc(record.run)}</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>PMLM workbench report</h1><p>Run <b>{_esc(record.run)}</b>, profile <b>{_esc(record.profile)}</b>: "
        f"{_esc(record.profile_description)}<br>Data: <b>{_esc(record.data)}</b>. "
        f"Started {_esc(record.started)}, finished {_esc(record.finished or '-')}, status "
        f"<span class='{'ok' if record.status == 'ok' else 'failed'}'>{_esc(record.status)}</span>.</p>",
    ]

    parts.append(_findings_html(run_dir, record))
    parts.append(_contents_html(run_dir, record))

    asked, planned = actual(run_dir), record.plan
    rows = "".join(_notebook_row(nb, planned, asked.get(nb["notebook"], {})) for nb in record.notebooks)
    total = sum(nb["wall_seconds"] for nb in record.notebooks)
    planned_total = sum(p.get("minutes", 0) for p in planned.values())
    parts.append(
        "<h2 id='notebooks'>Notebooks</h2><p>Wall time beside the plan made before the run (<code>pmlm plan</code>), "
        "and the LLM answers each notebook asked for.</p><table class='table'><tr><th>notebook</th><th>status</th>"
        "<th>minutes</th><th>planned minutes</th><th>answers asked</th><th>planned answers</th><th>peak memory "
        "(MB)</th>"
        f"<th>rendering</th></tr>{rows}<tr><th>total</th><th></th><th>{total / 60:.1f}</th>"
        f"<th>{planned_total:.1f}</th><th></th><th></th><th></th><th></th></tr></table>"
    )
    for nb in record.notebooks:
        if nb.get("error"):
            parts.append(f"<p class='failed'>{_esc(nb['error'])}</p>")

    for step in _steps(run_dir, record):
        parts.append(f"<h2 id='{_esc(step)}'>{_esc(step)}</h2>")
        entries = read_manifest(run_dir, step)
        if step == TRAININGS_STEP:
            parts.append(
                "<p>The refinement trained again on this run's inputs (<code>pmlm trainings</code>), each training "
                "evaluated on this run's test patients: how much the findings above depend on the training.</p>"
            )
        if not entries:
            parts.append("<p>This notebook saved no tables or figures.</p>")
        parts += [_artifact_html(run_dir, e) for e in entries]

    parts.append("<h2 id='record'>Run record</h2>")
    env = record.environment
    parts.append(
        _kv_table(
            {
                "python": env.get("python"),
                "platform": env.get("platform"),
                "cpus": env.get("cpus"),
                "memory (GiB)": env.get("memory_gb"),
                "device": env.get("device"),
                "git commit": record.git.get("commit"),
                "uncommitted changes in pmlm_lib/ or notebooks/": record.git.get("uncommitted_changes"),
            }
        )
    )
    parts.append(
        "<h3>Models</h3><table class='table'><tr><th>model</th><th>file</th><th>bytes</th><th>sha256</th></tr>"
        + "".join(
            f"<tr><td>{_esc(m['model'])}</td><td>{_esc(m.get('path', m.get('error', '')))}</td>"
            f"<td>{_esc(m.get('bytes', ''))}</td><td><code>{_esc(m.get('sha256', ''))}</code></td></tr>"
            for m in record.models
        )
        + "</table>"
    )
    parts.append("<h3>Package versions</h3>" + _kv_table(env.get("packages", {})))
    parts.append("<h3>Seeds</h3>" + _kv_table(record.seeds))
    parts.append(
        "<details><summary>Parameters of each notebook</summary><pre>"
        + _esc(json.dumps(record.parameters, indent=2))
        + "</pre></details>"
    )
    parts.append("</body></html>")
    out = run_dir / "index.html"
    atomic_write_text(out, "\n".join(parts))
    return out
