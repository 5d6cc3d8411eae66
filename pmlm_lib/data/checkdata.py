"""`pmlm check-data PATH`: the first command a hospital user runs on an export.

It loads and validates the folder with the given options, and prints in seconds, without a model:
what was read and how (encoding, delimiter, date order), what loading cleaned (the load log), what
the filtering step would keep and remove with the given thresholds, and the split. When the data
cannot be loaded it prints the one error (file, row, column, fix) and the options that address it.
"""

from __future__ import annotations

from pathlib import Path

from pmlm_lib.data.cohort import CohortError, DataOptions
from pmlm_lib.data.filtering import filter_and_split
from pmlm_lib.data.sources import load_source

OPTION_FLAGS = {  # what an error mentions -> the check-data flag that answers it
    "encoding": "--encoding latin-1 (or the file's encoding: cp1252, gbk, utf-16 ...)",
    "delimiter": "--delimiter ';' (or ',', tab, '|')",
    "dayfirst": "--dayfirst (day/month/year) or --monthfirst (month/day/year)",
    "date_format": "--date-format '%d/%m/%Y %H:%M'",
    "on_quality": "--on-quality clean (repair or remove and count) or raise (stop at the first finding)",
    "exam_resolution": "--resolution day (one examination per day) or keep (timestamps)",
    "allow_future_dates": "--allow-future-dates (dates shifted into the future by de-identification)",
    "thousands": "--thousands ',' (or '.', ' ': the separator the numbers are written with)",
    "on_conflict": "--on-conflict last (the later row wins), first, or raise",
    "units": 'cohort.json: "units": {"name": "unit"}, or "options": {"plausibility": {"name": [low, high]}}',
}


def check_data(
    path: str | Path, options: dict | None = None, min_coverage: float = 0.3, min_patients: int = 30
) -> tuple[bool, str]:
    """(loaded, report text) for a cohort folder."""

    lines = [f"Checking {path}"]
    try:
        DataOptions.from_dict(options)
        cohort = load_source(str(path), options=options)
    except CohortError as exc:
        message = str(exc)
        lines += ["", "The data cannot be loaded:", f"  {message}"]
        # a MEDS stream's units are the loader's arguments, not a cohort.json: its message says so itself
        hints = [
            f for key, f in OPTION_FLAGS.items() if key in message and not (key == "units" and "load_meds(" in message)
        ]
        if hints:
            lines += ["", "Options that address it:"] + [f"  {h}" for h in hints]
        return False, "\n".join(lines)
    summary = cohort.summary()
    lines += [
        "",
        f"Loaded: {summary['patients']} patients, {summary['records']} examinations, {summary['indicators']} "
        "indicators, "
        f"{summary['labels']} labels; examinations from {summary['first_exam']} to {summary['last_exam']}; "
        f"doctors' replies: {'yes' if cohort.has_replies else 'no (filtering, prediction and retrieval only)'}.",
    ]
    result = filter_and_split(cohort, min_coverage=min_coverage, min_patients=min_patients)
    lines += [
        "",
        f"What loading cleaned, and what the filters (min_coverage {min_coverage}, min_patients {min_patients}) "
        "would remove:",
    ]
    for row in result.log.rows:
        count = f"{row['removed']} {row['unit']}".strip() if row["removed"] or row["unit"] else ""
        detail = f" ({row['detail'][:100]}{'…' if len(row['detail']) > 100 else ''})" if row["detail"] else ""
        lines.append(f"  - [{row['step']}] {row['reason']}" + (f": {count}" if count else "") + detail)
    kept = result.cohort.summary()
    counts = result.split.value_counts()
    lines += [
        "",
        f"Kept: {kept['patients']} patients, {kept['records']} examinations, {kept['indicators']} indicators, "
        f"{kept['labels']} labels; split by {result.split_method}: "
        + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in ("train", "validation", "test"))
        + ".",
    ]
    labels = result.cohort.patients["label"].value_counts()
    lines += ["Labels kept: " + ", ".join(f"{label} ({n})" for label, n in labels.items())]
    if result.split_method == "date" and min(int(counts.get(s, 0)) for s in ("validation", "test")) < 20:
        lines += [
            "Note: few validation or test patients by date; set split: stratified in notebook 01 if the dates do not "
            "follow the paper's 2021 / 2022 split"
        ]
    return True, "\n".join(lines)


def options_from_args(args) -> dict:
    """The DataOptions given on the command line (only those set)."""
    out = {}
    for name in ("encoding", "delimiter", "decimal", "date_format", "on_quality", "thousands", "on_conflict"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = "\t" if value in ("tab", "\\t") else value
    if args.dayfirst is not None:
        out["dayfirst"] = args.dayfirst
    if args.resolution is not None:
        out["exam_resolution"] = args.resolution
    if args.allow_future_dates:
        out["allow_future_dates"] = True
    return out
