"""One patient's case as one self-contained HTML file (notebook 07's "export case"), to send to a colleague.

The file holds everything the explorer shows of her: the summary, the indicators over time (a PNG inside the
file), the prediction, the peers with their diagnoses, the coarse prompt with the policy's edits, the refined
prompt, the answers with their scores beside the doctor's reply and the tries she made in the playground. It has
no script and no link to anything outside itself, so it opens in any browser without Jupyter. It holds the
patient's examination values: it is written into the run folder, on this machine, and goes no further unless she
sends it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import re
from pathlib import Path

import pandas as pd

from pmlm_lib.common.atomic import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: 3px 7px; vertical-align: top; text-align: left; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.5em; }
.note { color: #555; font-size: 90%; }
img { max-width: 100%; }
"""


def _markdown_inline(text: str) -> str:
    """The explorer's one-line summaries use **bold** only."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(df: pd.DataFrame) -> str:
    return df.to_html(border=0, escape=True, na_rep="")


def answers_html(answers: pd.DataFrame, reply: str) -> str:
    """Each answer whole (rows by (responder, system)) with its scores, under the doctor's reply: a table of
    pandas' own would cut every answer at 50 characters."""
    cells = [f"<tr><th style='text-align:left'>doctor's reply</th><td colspan=2>{html.escape(reply)}</td></tr>"]
    shown = [c for c in ("BERTScore-F1", "ROUGE-L", "BLEU-4") if c in answers.columns]
    for (responder, system), row in answers.iterrows():
        scores = ", ".join(f"{c} {row[c]:.1f}" for c in shown)
        cells.append(
            f"<tr><th style='text-align:left'>{html.escape(system)}<br><small>{html.escape(responder)}</small></th>"
            f"<td>{html.escape(row['answer'])}</td><td><small>{scores}</small></td></tr>"
        )
    return "<table>" + "".join(cells) + "</table>"


def prompt_html(marked: str) -> str:
    text = html.escape(marked)
    text = re.sub(r"\[-(.+?)-\](\d+)", r"<del style='color:#C44E52'>\1</del><sup>\2</sup>", text)
    text = re.sub(r"\{\+(.+?)\+\}(\d+)", r"<ins style='color:#55A868'>\1</ins><sup>\2</sup>", text)
    return f"<div style='white-space:pre-wrap;font-family:monospace;font-size:90%'>{text}</div>"


def case_html(data, pid: str, tries: pd.DataFrame | None = None, indicators=None, trimester: int = 3) -> str:
    """The page of one patient (`data`: a casestudy.CaseData)."""
    run = data.inputs.run.root.name if data.inputs is not None else "?"
    parts = [
        f"<h1>Case {html.escape(pid)}</h1>",
        f"<p class='note'>Exported {dt.datetime.now():%Y-%m-%d %H:%M} from run {html.escape(run)} of the PMLM "
        "workbench. It holds this patient's examination values: share it only as the data's rules allow.</p>",
        f"<p>{_markdown_inline(data.summary(pid))}</p>",
        "<h2>Indicators over time</h2>",
        f"<img alt='indicators of {html.escape(pid)}' src='{_png(data.figure(pid, indicators, trimester))}'>",
        "<h2>Prediction (top probabilities)</h2>",
        _table(data.probabilities(pid)),
        f"<h2>Peers (top {data.k} training patients)</h2>",
        _table(data.peer_table(pid)),
        "<h2>Coarse prompt with the policy's edits</h2>",
        "<p class='note'>Deleted words struck through, inserted ones underlined, with the step that made them.</p>",
        prompt_html(data.marked_prompt(pid)),
        f"<p>{_markdown_inline(data.edit_note(pid))}</p>",
        "<h2>Refined prompt (PMLM)</h2>",
        f"<div style='white-space:pre-wrap;font-family:monospace;font-size:90%'>"
        f"{html.escape(str(data.refined.loc[pid, 'refined_prompt']))}</div>",
        "<h2>Answers</h2>",
    ]
    answers = data.answers(pid)
    if len(answers):
        parts.append(answers_html(answers, data.reply(pid)))
    else:
        parts.append(
            "<p>Not in the evaluation's sample: no answers were generated in the run. "
            f"Doctor's reply: {html.escape(data.reply(pid))}</p>"
        )
    mine = tries[tries["patient"] == pid] if tries is not None and len(tries) else pd.DataFrame()
    if len(mine):
        parts += ["<h2>Tries in the playground</h2>", _table(mine.round(1))]
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Case {html.escape(pid)}</title>"
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def export_case(data, pid: str, tries: pd.DataFrame | None = None, indicators=None, trimester: int = 3) -> Path:
    """Write the case into the run folder (cases/<patient>.html) and return its path."""
    path = data.inputs.run.root / "cases" / f"{pid}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, case_html(data, pid, tries, indicators, trimester))
    return path
