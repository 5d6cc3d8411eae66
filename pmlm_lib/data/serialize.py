"""A patient's history as text, for the LM predictor (Figure 3) and the raw-data prompt (Figure 5).

Format, one line per examination, newest first, measured values only (with the time of day when
the cohort keeps several examinations a day):

    2022-05-03: HGB 112, PLT 158, WBC 11.2, ALT 41, ...
    2022-04-21: HGB 118, PLT 201, ...
    (3 earlier examinations not shown)

Abbreviations and units are given once by `legend()` ("HGB = hemoglobin (g/L); ..."). When a token
budget is set, whole examinations are added newest first until the next would not fit; what was
left out is said in the last line, never cut silently. Numbers keep the indicator's own precision.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from pmlm_lib.data.indicators import ABBREVIATIONS, INDICATOR_BY_NAME
from pmlm_lib.data.prompts import raw_prompt


def short_name(indicator: str) -> str:
    return ABBREVIATIONS.get(indicator, indicator)


def legend(indicators: list[str], units: dict[str, str] | None = None) -> str:
    """'HGB = hemoglobin (g/L); PLT = platelet count (10^9/L); ...' for the prompt's header."""
    units = units or {}
    parts = []
    for name in indicators:
        spec = INDICATOR_BY_NAME.get(name)
        label = spec.label if spec else name.replace("_", " ")
        unit = units.get(name) or (spec.unit if spec else "")
        parts.append(f"{short_name(name)} = {label}" + (f" ({unit})" if unit else ""))
    return "; ".join(parts)


def _format_value(name: str, value: float) -> str:
    spec = INDICATOR_BY_NAME.get(name)
    if spec is not None:
        return f"{value:.{spec.decimals}f}"
    return f"{value:.4g}"


def exam_time(date: pd.Timestamp) -> str:
    """An examination's date, with its time of day when it has one (exam_resolution "keep")."""
    return f"{date:%Y-%m-%d}" if date == date.normalize() else f"{date:%Y-%m-%d %H:%M}"


def exam_line(date: pd.Timestamp, row: pd.Series, indicators: list[str]) -> str:
    values = [f"{short_name(n)} {_format_value(n, row[n])}" for n in indicators if not pd.isna(row[n])]
    return f"{exam_time(date)}: " + (", ".join(values) if values else "no values")


def approx_tokens(text: str) -> int:
    """A cheap token estimate (about 3 characters a token for numbers and abbreviations)."""
    return len(text) // 3 + 1


def serialize_history(
    history: pd.DataFrame,
    indicators: list[str],
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> str:
    """The examinations of one patient (oldest first in `history`) as text, newest first, within budget."""
    count = count_tokens or approx_tokens
    rows = history.sort_values("exam_date", ascending=False)
    lines, used = [], 0
    for i, (_, row) in enumerate(rows.iterrows()):
        line = exam_line(row["exam_date"], row, indicators)
        cost = count(line + "\n")
        remaining = len(rows) - i - 1
        note_cost = count(f"({remaining} earlier examinations not shown)") if remaining else 0
        if max_tokens is not None and lines and used + cost + note_cost > max_tokens:
            break
        lines.append(line)
        used += cost
    omitted = len(rows) - len(lines)
    if omitted:
        lines.append(f"({omitted} earlier examination{'s' if omitted > 1 else ''} not shown)")
    return "\n".join(lines)


def serialize_all(cohort, patient_ids, max_tokens: int | None = None, count_tokens=None) -> dict[str, str]:
    """Serialized histories of many patients (one groupby instead of one filter per patient)."""
    wanted = set(patient_ids)
    out = {}
    for pid, rows in cohort.exams[cohort.exams["patient_id"].isin(wanted)].groupby("patient_id", sort=False):
        out[pid] = serialize_history(rows, cohort.indicators, max_tokens, count_tokens)
    return {pid: out[pid] for pid in patient_ids}


def raw_prompts(cohort, patient_ids, max_tokens: int, count_tokens) -> dict[str, str]:
    """The Figure 5 prompt of each patient (the patient's raw exam values), within `max_tokens` in all: the
    legend of the indicators first, then as many whole examinations as fit, newest first."""

    names = legend(cohort.indicators, getattr(cohort, "units", None))
    budget = max(32, max_tokens - count_tokens(raw_prompt(names, "")))
    histories = serialize_all(cohort, list(patient_ids), max_tokens=budget, count_tokens=count_tokens)
    return {pid: raw_prompt(names, histories[pid]) for pid in patient_ids}
