"""The cohort H = {X, Y, R}: one explicit type, its validation and its files.

X is a long table of examinations (`patient_id`, `exam_date`, one column per indicator, missing
allowed); Y and R live in a per-patient table (`patient_id`, `label`, optional `reference_reply`,
optional `admission_date`). A structural fault (a missing column, a cell that is no number, an
unreadable date) raises one `CohortError` that names the file, the row, the column, and how to fix
it. Data-quality findings (label spellings, missing-value words, implausible values, patients
without examinations; see `quality`) are cleaned and counted in `Cohort.load_log`, or raised, by
the option `on_quality`. Files are read by `reading` (encodings, delimiters, decimal commas) and
dates by `dates` (one reading per column; day-first or month-first proven, never guessed).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib.data.dates import DateProblem, ParsedTimes, parse_times
from pmlm_lib.data.indicators import INDICATOR_BY_NAME
from pmlm_lib.data.quality import (
    QUALITY_MODES,
    UNIT_MIXUP_SHARE,
    canonical_labels,
    censored_values,
    missing_token,
    outside_limits,
    plausible_limits,
    unchecked,
)
from pmlm_lib.data.reading import ReadError, read_csv

EXAM_KEYS = ("patient_id", "exam_date")
PATIENT_REQUIRED = ("patient_id", "label")
OPTIONAL_PATIENT_COLUMNS = ("reference_reply", "admission_date")
EARLIEST_DATE = pd.Timestamp("1900-01-01")


class CohortError(ValueError):
    """A problem in the user's data, with where it is and how to fix it."""


@dataclass(frozen=True)
class TableSource:
    """Where a table came from, so that errors can point at the line a user sees."""

    path: str
    kind: str = "table"  # "csv" (line numbers count the header), "parquet" or "table"
    settings: str = "cohort.json"  # where the user declares units and limits: "cohort.json" or "load_meds"

    def units_hint(self, name: str) -> str:
        if self.settings == "load_meds":
            return f'load_meds(units={{"{name}": "unit"}})'
        return f'cohort.json ("units": {{"{name}": "unit"}})'

    def limits_hint(self, name: str) -> str:
        if self.settings == "load_meds":
            return f'load_meds(options=DataOptions(plausibility={{"{name}": [low, high]}}))'
        return f'cohort.json ("options": {{"plausibility": {{"{name}": [low, high]}}}})'

    def where(self, index: int | None = None, column: str | None = None) -> str:
        parts = [self.path]
        if index is not None:
            if self.kind == "csv":
                parts.append(f"row {index + 1} (line {index + 2} of the file)")
            else:
                parts.append(f"row {index + 1}")
        if column is not None:
            parts.append(f"column '{column}'")
        return ", ".join(parts)


def _fail(source: TableSource, index, column, problem: str, fix: str):
    raise CohortError(f"{source.where(index, column)}: {problem}. How to fix: {fix}")


def _first(mask) -> int:
    """Index of the first True in a boolean Series or array."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


RESOLUTIONS = ("day", "keep")
THOUSANDS = (None, ",", ".", " ")
CONFLICT_RULES = ("last", "first", "raise")
# a number written with a thousands separator, by separator: the digits grouped by three, then the decimals
_GROUPED = {
    ",": re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"),
    ".": re.compile(r"^-?\d{1,3}(?:\.\d{3})+(?:,\d+)?$"),
    " ": re.compile("^-?\\d{1,3}(?:[ \u00a0\u202f]\\d{3})+(?:[.,]\\d+)?$"),  # no-break spaces as themselves
}
_SCIENTIFIC_ID = re.compile(r"^\d(?:\.\d+)?E\+\d+$", re.IGNORECASE)


@dataclass
class DataOptions:
    """How a cohort's files are read and checked; set in the data folder's cohort.json ("options"),
    by notebook 01's `data_options`, or by `pmlm check-data` flags."""

    encoding: str = "auto"  # "auto" (UTF-8, else Chinese GB18030), or a codec: "latin-1", "cp1252", "gbk", ...
    delimiter: str = "auto"  # "auto", ",", ";", "\t" or "|"
    decimal: str = "auto"  # "auto", "." or "," (a decimal comma, in files not delimited by commas)
    date_format: str | None = None  # e.g. "%d/%m/%Y %H:%M"; None: read as the column proves (see dates.py)
    dayfirst: bool | None = None  # for day/month/year or month/day/year dates that every row leaves ambiguous
    exam_resolution: str = (
        "day"  # "day": one examination per patient and day (each indicator's last value); "keep": timestamps
    )
    on_quality: str = "clean"  # "clean": repair or remove and count data-quality findings; "raise": stop at the first
    plausibility: dict = field(default_factory=dict)  # indicator -> [low, high], beside the catalogue's limits
    allow_future_dates: bool = False  # de-identified data with dates shifted into the future
    thousands: str | None = None  # a thousands separator the export writes ("," "." or " "): "1,234.5" read as 1234.5
    on_conflict: str = "last"  # two values of one patient, time and indicator: "last" (in file order: a correction
    # sent after the row it corrects), "first", or "raise"; each conflict is logged with both values

    def __post_init__(self):
        if self.exam_resolution not in RESOLUTIONS:
            raise CohortError(f"exam_resolution must be one of {', '.join(RESOLUTIONS)}, not {self.exam_resolution!r}")
        if self.thousands not in THOUSANDS:
            raise CohortError(f"thousands must be one of ',', '.', ' ' or left out, not {self.thousands!r}")
        if self.on_conflict not in CONFLICT_RULES:
            raise CohortError(f"on_conflict must be one of {', '.join(CONFLICT_RULES)}, not {self.on_conflict!r}")
        if self.on_quality not in QUALITY_MODES:
            raise CohortError(f"on_quality must be one of {', '.join(QUALITY_MODES)}, not {self.on_quality!r}")

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "data options") -> DataOptions:
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise CohortError(
                f"{where}: unknown option(s) {', '.join(unknown)}. How to fix: use "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        return cls(**values)


def _check_dates(parsed: pd.Series, source: TableSource, column: str, allow_future: bool) -> None:
    latest = pd.Timestamp(dt.date.today()) + pd.Timedelta(days=1)
    impossible = parsed.notna() & ((parsed < EARLIEST_DATE) | (~allow_future & (parsed > latest)))
    if impossible.any():
        i = _first(impossible)
        _fail(
            source,
            i,
            column,
            f"date {parsed.iloc[i].date()} is impossible (before 1900 or in the future)",
            "correct the date; for de-identified data with shifted dates set the option allow_future_dates: true",
        )


def read_times(values: pd.Series, source: TableSource, column: str, options: DataOptions, log: list) -> ParsedTimes:
    """A column of times parsed as the column proves (see dates.py), impossible dates refused, clean-ups logged."""
    try:
        parsed = parse_times(values, options.date_format, options.dayfirst)
    except DateProblem as problem:
        _fail(source, problem.row, column, problem.problem, problem.fix)
    _check_dates(parsed.values, source, column, options.allow_future_dates)
    log += [_note(f"{Path(source.path).name}, {column}: {what}", n, detail) for what, n, detail in parsed.notes]
    return parsed


def _note(reason: str, count: int, detail: str = "", unit: str = "values", step: str = "reading the data") -> dict:
    """One row of the load log (the same columns as the filter log)."""
    return {"step": step, "removed": int(count), "unit": unit, "reason": reason, "detail": detail}


def _numeric_columns(
    exams: pd.DataFrame, indicators: list[str], source: TableSource, options: DataOptions, log: list
) -> pd.DataFrame:
    out, censored, missing_words, grouped = {}, {}, {}, {}
    for col in indicators:
        raw = exams[col]
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.astype(float)
        else:
            text = raw.astype("string").str.strip()
            if options.thousands is not None:
                text, grouped[col] = _without_thousands(text, options.thousands, source, col)
            values = pd.to_numeric(text.replace("", pd.NA), errors="coerce").astype(float)
            values, censored[col] = censored_at_bound(text, values, source, col, options)
            words = text.notna() & text.ne("") & missing_token(text)
            if words.any():
                missing_words[col] = (int(words.sum()), text[words].iloc[0])
            bad = values.isna() & text.notna() & text.ne("") & ~missing_token(text)
            if bad.any():
                i = _first(bad)
                separator = next((sep for sep, form in _GROUPED.items() if form.match(text.iloc[i])), None)
                if separator is not None:
                    _fail(
                        source,
                        i,
                        col,
                        f"'{text.iloc[i]}' is written with a thousands separator ('{separator}'), as a spreadsheet "
                        "writes numbers formatted with one",
                        f"declare it with the option thousands: '{separator}' (check-data --thousands '{separator}'),"
                        " or export the numbers without the separator",
                    )
                _fail(
                    source,
                    i,
                    col,
                    f"'{text.iloc[i]}' is not a number",
                    "leave a missing measurement empty and write numbers with a decimal point, without units",
                )
        infinite = np.isinf(values.to_numpy())
        if infinite.any():
            i = _first(infinite)
            _fail(source, i, col, "the value is infinite", "leave a missing measurement empty")
        out[col] = values.to_numpy()
    grouped = {c: n for c, n in grouped.items() if n}
    if grouped:
        log.append(
            _note(
                f"numbers with the declared thousands separator '{options.thousands}' read without it "
                "(1,234.5 = 1234.5)",
                sum(grouped.values()),
                ", ".join(f"{c} ({n})" for c, n in grouped.items()),
            )
        )
    censored = {c: n for c, n in censored.items() if n}
    if censored:
        log.append(censored_note(censored))
    if missing_words:
        log.append(
            _note(
                "missing-value words (NA, null, -, N/A, ...) read as missing measurements",
                sum(n for n, _ in missing_words.values()),
                ", ".join(f"{c} ({n}, e.g. '{w}')" for c, (n, w) in missing_words.items()),
                unit="values (missing)",
            )
        )
    return pd.DataFrame(out, index=exams.index)


def censored_at_bound(
    text: pd.Series, values: pd.Series, source: TableSource, column: str, options: DataOptions
) -> tuple[pd.Series, int]:
    """Censored values such as '<5' taken at their bound, and how many; an error where on_quality is raise."""
    bound, is_bound = censored_values(text.fillna(""))
    if not is_bound.any():
        return values, 0
    if options.on_quality == "raise":
        i = _first(is_bound)
        _fail(
            source,
            i,
            column,
            f"'{text.iloc[i]}' is a censored value (a bound, not a measurement)",
            "write the number, or load with on_quality: clean to take each bound as the value",
        )
    return values.where(~is_bound, bound), int(is_bound.sum())


def censored_note(counts: dict[str, int]) -> dict:
    """The load log's row for censored values taken at their bound, per column."""
    return _note(
        "censored values such as '<5' taken at their bound",
        sum(counts.values()),
        ", ".join(f"{c} ({n})" for c, n in counts.items()),
        unit="values (changed)",
    )


def _without_thousands(text: pd.Series, separator: str, source: TableSource, column: str) -> tuple[pd.Series, int]:
    """The column's numbers without the declared thousands separator, and how many had one. With '.', the decimal
    mark is the comma: a number with one dot and no group of three after it ("1.5") contradicts the declaration
    and stops the load rather than be read as 1.5 or 15."""
    grouped = text.fillna("").str.match(_GROUPED[separator])
    out = text.copy()
    if separator == ".":
        dotted = text.fillna("").str.contains(".", regex=False) & ~grouped
        if dotted.any():
            i = _first(dotted)
            _fail(
                source,
                i,
                column,
                f"'{text.iloc[i]}' has a dot that is not a thousands separator, though the option thousands: '.' says "
                "dots are",
                "check the option thousands (leave it out when dots are decimal points)",
            )
        out[grouped] = text[grouped].str.replace(".", "", regex=False)
        out = out.str.replace(",", ".", regex=False)
    else:
        out[grouped] = text[grouped].str.replace("[, \u00a0\u202f]", "", regex=True)  # the characters, not escapes
    return out, int(grouped.sum())


def _plausible(
    values: pd.DataFrame, source: TableSource, limits: dict, options: DataOptions, log: list, units: dict | None = None
) -> pd.DataFrame:
    """Values outside their indicator's plausibility limits: missing (counted), or an error."""
    found = outside_limits(values, limits)
    for name, mask in found.items():
        low, high = limits[name]
        measured = int(values[name].notna().sum())
        i = _first(mask)
        if mask.sum() > UNIT_MIXUP_SHARE * measured:
            known = INDICATOR_BY_NAME[name].unit if name in INDICATOR_BY_NAME else "its unit"
            unit = (units or {}).get(name) or known
            _fail(
                source,
                i,
                name,
                f"{int(mask.sum())} of its {measured} values lie outside {low:g}..{high:g}, the plausible range "
                f"in {unit} (the first: {values[name].iloc[i]:g})",
                f"this looks like another unit: declare the column's unit in {source.units_hint(name)} or give its "
                f"limits in {source.limits_hint(name)}",
            )
        if options.on_quality == "raise":
            _fail(
                source,
                i,
                name,
                f"{values[name].iloc[i]:g} is outside {low:g}..{high:g}, what this measurement can be",
                "correct or delete the value, or load with on_quality: clean to treat such values as missing",
            )
        values.loc[mask, name] = np.nan
    if found:
        log.append(
            _note(
                "implausible values treated as missing (outside the indicator's plausibility limits)",
                sum(int(m.sum()) for m in found.values()),
                ", ".join(
                    f"{n} ({int(m.sum())}, outside {limits[n][0]:g}..{limits[n][1]:g})" for n, m in found.items()
                ),
            )
        )
    return values


def _one_per_day(exams: pd.DataFrame, indicators: list[str], source: TableSource, rule: str, log: list) -> pd.DataFrame:
    """One examination per patient and day: each indicator's last value of the day (in time order, then file
    order: `rule` "first" takes the first row of one time instead); the merges and the conflicts are counted."""
    exams = exams.assign(
        _time=exams["exam_date"], exam_date=exams["exam_date"].dt.normalize(), _row=np.arange(len(exams))
    )
    _report_conflicts(exams, indicators, source, rule, log)
    order = "_row" if rule != "first" else "_reverse"  # "first": the first row of one time ends up last, and wins
    exams = exams.assign(_reverse=-exams["_row"]).sort_values(
        ["patient_id", "exam_date", "_time", order], kind="stable"
    )
    sizes = exams.groupby(["patient_id", "exam_date"], sort=False).size()
    merged = sizes[sizes > 1]
    if len(merged):
        exams = exams.groupby(["patient_id", "exam_date"], sort=False, as_index=False)[indicators].last()
        log.append(
            _note(
                "examinations of one patient on one day merged into one (each indicator's last value of the day)",
                int(merged.sum() - len(merged)),
                f"{len(merged)} patient-days had several rows; exam_resolution: keep keeps them apart",
                unit="examination rows",
            )
        )
        return exams
    return exams.drop(columns=["_time", "_row", "_reverse"])


def _report_conflicts(exams: pd.DataFrame, indicators: list[str], source: TableSource, rule: str, log: list) -> None:
    """Two different values of one patient, time and indicator (a corrected row sent beside the row it corrects):
    logged with both values and the rule that chose one, or an error with `rule` "raise"."""
    same_time = exams.duplicated(["patient_id", "_time"], keep=False)
    if not same_time.any():
        return
    rows = exams[same_time]
    long = rows.melt(id_vars=["patient_id", "_time", "_row"], value_vars=indicators, var_name="indicator").dropna()
    distinct = long.groupby(["patient_id", "_time", "indicator"])["value"].transform("nunique")
    clashing = long[distinct > 1].sort_values("_row", kind="stable")
    if clashing.empty:
        return
    groups = clashing.groupby(["patient_id", "_time", "indicator"], sort=False)["value"]
    examples = [
        f"{pid} {time:%Y-%m-%d}{'' if time == time.normalize() else f' {time:%H:%M}'} {name}: "
        + " and ".join(f"{v:g}" for v in values)
        for (pid, time, name), values in list(groups)[:3]
    ]
    if rule == "raise":
        first = clashing.iloc[0]
        later = int(
            clashing[
                (clashing["patient_id"] == first["patient_id"])
                & (clashing["_time"] == first["_time"])
                & (clashing["indicator"] == first["indicator"])
            ]["_row"].iloc[1]
        )
        _fail(
            source,
            int(exams.index[later]),
            str(first["indicator"]),
            f"two different values of {examples[0]} (also at {source.where(int(exams.index[int(first['_row'])]))})",
            "keep the row that is right and delete the other, or read with on_conflict: last (the later row wins) "
            "or first",
        )
    kept = "the later row in the file" if rule == "last" else "the first row in the file"
    log.append(
        _note(
            f"conflicting values of one patient, time and indicator: {kept} kept (on_conflict: {rule})",
            groups.ngroups,
            "; ".join(examples) + (" ..." if groups.ngroups > 3 else ""),
            unit="values (conflicts)",
        )
    )


def _required_columns(
    exams: pd.DataFrame, patients: pd.DataFrame, es: TableSource, ps: TableSource, indicators: list[str] | None
) -> list[str]:
    """The columns both tables must have, and the indicators (every exams column but the keys, when not given)."""
    for col in EXAM_KEYS:
        if col not in exams.columns:
            _fail(
                es,
                None,
                col,
                f"required column '{col}' is missing (columns found: {', '.join(map(str, exams.columns[:8]))})",
                f"add a '{col}' column; the examinations table needs patient_id, exam_date and one column per "
                "indicator",
            )
    for col in PATIENT_REQUIRED:
        if col not in patients.columns:
            _fail(
                ps,
                None,
                col,
                f"required column '{col}' is missing (columns found: {', '.join(map(str, patients.columns[:8]))})",
                "the patients table needs patient_id and label (reference_reply and admission_date are optional)",
            )
    if indicators is None:
        indicators = [c for c in exams.columns if c not in EXAM_KEYS]
    missing_ind = [c for c in indicators if c not in exams.columns]
    if missing_ind:
        _fail(
            es,
            None,
            missing_ind[0],
            "indicator column is missing",
            "add the column or remove it from the indicator list",
        )
    if not indicators:
        _fail(
            es,
            None,
            None,
            "no indicator columns",
            "add at least one column of measurements besides patient_id and exam_date",
        )
    if exams.empty:
        _fail(es, None, None, "the table has a header but no rows", "export the examinations with the header line")
    if patients.empty:
        _fail(ps, None, None, "the table has a header but no rows", "export the patients with the header line")
    return list(indicators)


def _checked_exams(
    exams: pd.DataFrame, es: TableSource, indicators: list[str], units: dict, options: DataOptions, log: list
) -> tuple[pd.Series, ParsedTimes, pd.DataFrame]:
    """The examinations' patient ids, times and values (numbers, plausible), each checked."""
    pid = exams["patient_id"].astype("string").str.strip()
    blank = _is_blank(exams["patient_id"])
    if blank.any():
        _fail(es, _first(blank), "patient_id", "patient_id is empty", "give every examination its patient's id")
    _refuse_scientific_ids(pid, es)
    times = read_times(exams["exam_date"], es, "exam_date", options, log)
    if times.values.isna().any():
        _fail(es, _first(times.values.isna()), "exam_date", "exam_date is empty", "give every examination its date")
    values = _numeric_columns(exams, list(indicators), es, options, log)
    if len(values) and values.isna().all().all():
        _fail(
            es,
            None,
            ", ".join(indicators[:3]) + (" ..." if len(indicators) > 3 else ""),
            f"no examination has a value in any of its {len(indicators)} indicator column(s)",
            "fill in the measurements (a missing one stays empty), or check that the file's delimiter and header "
            "are those of the data",
        )
    limits = plausible_limits(list(indicators), units, options.plausibility)
    values = _plausible(values, es, limits, options, log, units)
    blind = unchecked(list(indicators), units, options.plausibility)
    if blind:
        log.append(
            _note(
                "indicators left without a plausibility check: their declared unit has no known conversion from the "
                f"catalogue's; give their limits in {es.limits_hint('name')}",
                len(blind),
                ", ".join(f"{n} (declared {d}, catalogue {c or 'no unit'})" for n, (d, c) in blind.items()),
                unit="indicators (unchecked)",
            )
        )
    return pid, times, values


def _refuse_scientific_ids(ids: pd.Series, source: TableSource) -> None:
    """Ids a spreadsheet wrote in scientific notation ("2.02112E+11") lost their last digits: two patients may now
    share one id, and no reading can tell them apart again."""
    scientific = ids.fillna("").str.match(_SCIENTIFIC_ID)
    if not scientific.any():
        return
    i = _first(scientific)
    shown = ids.iloc[i]
    mantissa, exponent = shown.upper().split("E+")
    kept = len(mantissa.replace(".", ""))
    _fail(
        source,
        i,
        "patient_id",
        f"patient id '{shown}' is in scientific notation, as a spreadsheet writes a long number: it kept {kept} of "
        f"the id's {int(exponent) + 1} digits, so patients whose ids differ in the lost digits now share one "
        f"({_rows(int((ids == shown).sum()))} here carry '{shown}'; {_rows(int(scientific.sum()))} in all are written "
        "so)",
        "export the file again with the patient_id column formatted as text (in the spreadsheet: format the column as "
        "Text before the data is opened or pasted), or export it from the hospital system without a spreadsheet",
    )


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _checked_patients(
    patients: pd.DataFrame, ps: TableSource, options: DataOptions, log: list
) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series]:
    """The patients' ids, labels (spellings merged) and replies: the table, the ids, who is kept, the labels."""
    ppid = patients["patient_id"].astype("string").str.strip()
    blank = _is_blank(patients["patient_id"])
    if blank.any():
        _fail(ps, _first(blank), "patient_id", "patient_id is empty", "give every patient an id")
    _refuse_scientific_ids(ppid, ps)
    dupp = ppid.duplicated()
    if dupp.any():
        i = _first(dupp)
        _fail(ps, i, "patient_id", f"patient {ppid.iloc[i]} appears twice", "keep one row per patient")
    keep_patient = pd.Series(True, index=patients.index)
    for col, what in (("label", "label"), ("reference_reply", "doctor's reply")):
        if col not in patients.columns:
            continue
        absent = missing_token(patients[col])
        if col == "reference_reply" and absent.all():
            patients = patients.drop(columns=col)
            log.append(
                _note("the reference_reply column holds no reply; the cohort has none", len(absent), unit="patients")
            )
            continue
        if absent.any():
            i = _first(absent)
            if options.on_quality == "raise":
                _fail(
                    ps,
                    i,
                    col,
                    f"the {what} of patient {ppid.iloc[i]} is missing ('{patients[col].iloc[i]}')",
                    f"fill in the {what}, or remove the patient (or load with on_quality: clean to remove such "
                    "patients)",
                )
            tokens = Counter(str(v).strip() for v in patients.loc[absent, col])
            if col == "reference_reply":  # filtering, prediction and retrieval need no reply: the patient stays
                patients = patients.assign(reference_reply=patients[col].astype("string").where(~absent, pd.NA))
                log.append(
                    _note(
                        "patients without a doctor's reply kept for filtering, prediction and retrieval; the steps "
                        "that score answers against replies (notebooks 04-06) leave them out",
                        int(absent.sum()),
                        ", ".join(f"'{t}' ({n})" for t, n in tokens.most_common(5)),
                        unit="patients (kept)",
                    )
                )
                continue
            log.append(
                _note(
                    f"patients without a {what} removed (empty or a missing-value word)",
                    int(absent.sum()),
                    ", ".join(f"'{t}' ({n})" for t, n in tokens.most_common(5)),
                    unit="patients",
                )
            )
            keep_patient &= ~absent
    labels, variants = canonical_labels(patients["label"].where(keep_patient, "").astype(str))
    variants = {k: v for k, v in variants.items() if k}
    if variants:
        if options.on_quality == "raise":
            canonical, spelled = next(iter(variants.items()))
            _fail(
                ps,
                None,
                "label",
                f"one label is spelled in several ways: {', '.join(repr(s) for s in spelled)}",
                "write each label one way, or load with on_quality: clean to merge spellings that differ only in "
                "case and spaces",
            )
        log.append(
            _note(
                "label spellings that differ only in case or spaces merged",
                sum(len(v) - 1 for v in variants.values()),
                "; ".join(f"{', '.join(repr(s) for s in v)} -> '{k}'" for k, v in variants.items()),
                unit="spellings",
            )
        )
    return patients, ppid, keep_patient, labels


def _linked(
    pid: pd.Series,
    ppid: pd.Series,
    keep_patient: pd.Series,
    es: TableSource,
    ps: TableSource,
    options: DataOptions,
    log: list,
) -> tuple[pd.Series, pd.Series]:
    """Every examination's patient known; patients without examinations removed: who is kept, which exams."""
    known = set(ppid)
    unknown = ~pid.isin(known)
    if unknown.any():
        i = _first(unknown)
        hint = ""
        if pid.iloc[i].lstrip("0") in {p.lstrip("0") for p in known}:
            hint = " (the ids differ only in leading zeros: keep the ids as text in both files)"
        _fail(
            es,
            i,
            "patient_id",
            f"examination of patient {pid.iloc[i]}, who is not in {ps.path}{hint}",
            "add the patient (with a label) to the patients table, or remove the examination",
        )
    removed = set(ppid[~keep_patient])
    lonely = ~ppid.isin(set(pid)) & keep_patient
    if lonely.any():
        i = _first(lonely)
        if options.on_quality == "raise":
            _fail(
                ps,
                i,
                "patient_id",
                f"patient {ppid.iloc[i]} has no examinations in {es.path}",
                "add the patient's examinations, remove the patient, or load with on_quality: clean to remove "
                "such patients",
            )
        log.append(
            _note(
                "patients without examinations removed",
                int(lonely.sum()),
                ", ".join(ppid[lonely].head(10)),
                unit="patients",
            )
        )
        keep_patient &= ~lonely
    exam_kept = ~pid.isin(removed)
    if (~exam_kept).any():
        log.append(_note("examinations of removed patients", int((~exam_kept).sum()), unit="examinations"))
    if not keep_patient.any():
        _fail(
            ps,
            None,
            None,
            "no patient is left after the checks above",
            "see the load log; fix the labels or examinations",
        )
    return keep_patient, exam_kept


def _typed_tables(
    exams: tuple[pd.Series, ParsedTimes, pd.DataFrame, pd.Series],
    patients: tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series],
    indicators: list[str],
    es: TableSource,
    ps: TableSource,
    options: DataOptions,
    log: list,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cohort's examinations and patients tables, typed and sorted."""
    pid, times, values, exam_kept = exams
    patients, ppid, labels, keep_patient = patients
    out_e = pd.concat(
        [
            pd.DataFrame(
                {
                    "patient_id": pid.astype(str).to_numpy(),
                    "exam_date": times.values.astype("datetime64[ns]").to_numpy(),
                }
            ),
            values.reset_index(drop=True),
        ],
        axis=1,
    )[exam_kept.to_numpy()]
    if options.exam_resolution == "day":
        out_e = _one_per_day(out_e, list(indicators), es, options.on_conflict, log)
    else:
        dup = out_e.duplicated(["patient_id", "exam_date"], keep=False)
        if dup.any():
            rows = np.flatnonzero(dup.to_numpy())
            first, twin = int(out_e.index[rows[0]]), int(out_e.index[rows[1]])
            _fail(
                es,
                twin,
                "exam_date",
                f"patient {out_e.loc[first, 'patient_id']} has two examinations at "
                f"{out_e.loc[first, 'exam_date']} (also at {es.where(first)})",
                "merge the two rows, or read with exam_resolution: day (one examination per day)",
            )
    first_exam = out_e.groupby("patient_id")["exam_date"].min().dt.normalize()
    out_p = pd.DataFrame({"patient_id": ppid.astype(str).to_numpy(), "label": labels.to_numpy()})
    if "reference_reply" in patients.columns:
        out_p["reference_reply"] = patients["reference_reply"].astype("string").str.strip().to_numpy()
    if "admission_date" in patients.columns and not _is_blank(patients["admission_date"]).all():
        adm = read_times(patients["admission_date"], ps, "admission_date", options, log).values.dt.normalize()
        last_exam = out_p["patient_id"].map(out_e.groupby("patient_id")["exam_date"].max().dt.normalize())
        late = (adm > last_exam.to_numpy()) & keep_patient.to_numpy()
        if late.any():  # kept as given: the split reads it, and only the hospital knows which date is wrong
            i = _first(late)
            log.append(
                _note(
                    "patients admitted after their last examination (kept as given; the date split uses the "
                    "admission date: check the date or the column's format)",
                    int(late.sum()),
                    f"for example {ps.where(i, 'admission_date')}: {adm.iloc[i]:%Y-%m-%d}, last examination "
                    f"{last_exam.iloc[i]:%Y-%m-%d}",
                    unit="patients (flagged)",
                )
            )
        out_p["admission_date"] = adm.fillna(out_p["patient_id"].map(first_exam)).to_numpy()
    else:
        # without an admission date the first examination stands in for it
        out_p["admission_date"] = out_p["patient_id"].map(first_exam).to_numpy()
    out_p["admission_date"] = pd.to_datetime(out_p["admission_date"]).astype("datetime64[ns]")
    out_p = out_p[keep_patient.to_numpy()]
    out_e = out_e.sort_values(["patient_id", "exam_date"], kind="stable").reset_index(drop=True)
    out_p = out_p.sort_values("patient_id", kind="stable").reset_index(drop=True)
    return out_e, out_p


@dataclass
class Cohort:
    """Patients with dated examinations, one label each and (optionally) a doctor's reply."""

    exams: pd.DataFrame
    patients: pd.DataFrame
    indicators: list[str]
    name: str = "cohort"
    calendar_dates: bool = True  # False: dates are offsets or shifted; split by stratified sampling
    units: dict[str, str] = field(default_factory=dict)
    description: str = ""
    load_log: list[dict] = field(
        default_factory=list
    )  # what loading cleaned or removed (shown first in the filter log)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_tables(
        cls,
        exams: pd.DataFrame,
        patients: pd.DataFrame,
        *,
        exams_source: TableSource | None = None,
        patients_source: TableSource | None = None,
        indicators: list[str] | None = None,
        options: DataOptions | None = None,
        load_log: list[dict] | None = None,
        **meta,
    ) -> Cohort:
        """Validate raw tables and return a typed cohort, or raise one clear CohortError."""
        es = exams_source or TableSource("exams table")
        ps = patients_source or TableSource("patients table")
        options = options or DataOptions()
        log = list(load_log or [])
        exams = exams.reset_index(drop=True)
        patients = patients.reset_index(drop=True)

        indicators = _required_columns(exams, patients, es, ps, indicators)
        pid, times, values = _checked_exams(exams, es, indicators, meta.get("units") or {}, options, log)
        patients, ppid, keep_patient, labels = _checked_patients(patients, ps, options, log)
        keep_patient, exam_kept = _linked(pid, ppid, keep_patient, es, ps, options, log)
        out_e, out_p = _typed_tables(
            (pid, times, values, exam_kept), (patients, ppid, labels, keep_patient), indicators, es, ps, options, log
        )
        return cls(exams=out_e, patients=out_p, indicators=list(indicators), load_log=log, **meta)

    # ---- views ----------------------------------------------------------------------------
    @property
    def has_replies(self) -> bool:
        return "reference_reply" in self.patients.columns

    def require_replies(self, step: str) -> None:
        if not self.has_replies:
            raise CohortError(
                f"{step} needs the doctors' reference replies, and the cohort '{self.name}' has none: "
                "add a 'reference_reply' column to its patients table (the public sets have none; "
                "use them for filtering, prediction and retrieval only)."
            )

    def with_reply(self, patient_ids) -> list[str]:
        """The patients among these who have a doctor's reply (the ones an answer can be scored for), in order; a
        cohort without any reply is an error that says so."""
        self.require_replies("Scoring answers (notebooks 04-06 compare them with the doctors' replies)")
        replies = self.by_patient("reference_reply")
        return [p for p in patient_ids if pd.notna(replies.get(p))]

    @property
    def labels(self) -> list[str]:
        return sorted(self.patients["label"].unique())

    @property
    def patient_ids(self) -> list[str]:
        return self.patients["patient_id"].tolist()

    def history(self, patient_id: str) -> pd.DataFrame:
        """One patient's examinations, oldest first."""
        rows = self.exams[self.exams["patient_id"] == patient_id]
        if rows.empty:
            raise KeyError(f"patient {patient_id!r} is not in cohort '{self.name}'")
        return rows.reset_index(drop=True)

    def by_patient(self, column: str) -> pd.Series:
        """One column of the patients table (label, reference_reply, admission_date), indexed by patient id."""
        return self.patients.set_index("patient_id")[column]

    def label_of(self, patient_id: str) -> str:
        return self.by_patient("label")[patient_id]

    def subset(self, patient_ids) -> Cohort:
        keep = set(patient_ids)
        return self._replace(
            self.exams[self.exams["patient_id"].isin(keep)].reset_index(drop=True),
            self.patients[self.patients["patient_id"].isin(keep)].reset_index(drop=True),
            self.indicators,
        )

    def _replace(self, exams, patients, indicators) -> Cohort:
        return Cohort(
            exams=exams,
            patients=patients,
            indicators=list(indicators),
            name=self.name,
            calendar_dates=self.calendar_dates,
            units={k: v for k, v in self.units.items() if k in indicators},
            description=self.description,
            load_log=self.load_log,
        )

    def summary(self) -> dict:
        per_patient = self.exams.groupby("patient_id").size()
        return {
            "patients": int(len(self.patients)),
            "records": int(len(self.exams)),
            "indicators": int(len(self.indicators)),
            "labels": int(self.patients["label"].nunique()),
            "max_records_per_patient": int(per_patient.max()),
            "mean_records_per_patient": round(float(per_patient.mean()), 2),
            "first_exam": str(self.exams["exam_date"].min().date()),
            "last_exam": str(self.exams["exam_date"].max().date()),
            "missing_share": round(float(self.exams[self.indicators].isna().to_numpy().mean()), 4),
        }

    # ---- files ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write exams.parquet, patients.parquet and cohort.json (deterministic bytes)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.exams.to_parquet(folder / "exams.parquet", index=False)
        self.patients.to_parquet(folder / "patients.parquet", index=False)
        meta = {
            "name": self.name,
            "calendar_dates": self.calendar_dates,
            "indicators": self.indicators,
            "units": self.units,
            "description": self.description,
        }
        (folder / "cohort.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Cohort:
        """Read a folder written by `save`, or any folder with exams and patients tables (CSV or Parquet)."""
        return load_folder(folder)


TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
TABLE_SUFFIXES = (".parquet", ".pq", *TEXT_SUFFIXES)
META_KEYS = ("name", "calendar_dates", "indicators", "units", "description", "options")


def _read_table(path: Path, options: DataOptions, log: list) -> tuple[pd.DataFrame, TableSource]:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        try:
            frame, report = read_csv(path, options.encoding, options.delimiter, options.decimal)
        except ReadError as exc:
            raise CohortError(str(exc)) from None
        log += [_note(f"{path.name}: {what}", n, detail, unit="") for what, n, detail in report.notes]
        if report.encoding != "utf-8" or report.delimiter != ",":
            log.append(_note(f"{path.name}: read as {report.encoding}, delimiter {report.delimiter!r}", 0, unit=""))
        return frame, TableSource(str(path), "csv")
    if suffix in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow's errors name no file
            raise CohortError(
                f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc}). How to fix: export it again, "
                "or as CSV"
            ) from None
        renamed = {c: str(c).strip() for c in frame.columns if str(c) != str(c).strip()}
        if renamed:
            frame = frame.rename(columns=renamed)
            log.append(_note(f"{path.name}: column names with spaces around them, trimmed", len(renamed), unit=""))
        return frame, TableSource(str(path), "parquet")
    raise CohortError(
        f"{path}: unsupported file type '{path.suffix}'. How to fix: save the table as .csv (or .parquet); "
        "from Excel: File > Save As > CSV UTF-8"
    )


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Two sources of one table hold the same data (columns, rows, values; numbers compared as numbers)."""
    if sorted(map(str, a.columns)) != sorted(map(str, b.columns)) or len(a) != len(b):
        return False

    def blank_is_missing(values: pd.Series) -> pd.Series:
        return (
            values.mask(values.astype(str).str.strip().eq("")) if not pd.api.types.is_numeric_dtype(values) else values
        )

    for column in a.columns:
        x, y = (
            blank_is_missing(a[column].reset_index(drop=True)),
            blank_is_missing(b[str(column)].reset_index(drop=True)),
        )
        nx, ny = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
        if (
            nx.notna().sum() == x.notna().sum()
            and ny.notna().sum() == y.notna().sum()
            and (nx.notna().any() or ny.notna().any())
        ):
            if not np.allclose(nx.to_numpy(dtype=float), ny.to_numpy(dtype=float), equal_nan=True, rtol=1e-9):
                return False
            continue
        if pd.api.types.is_datetime64_any_dtype(x) or pd.api.types.is_datetime64_any_dtype(y):
            tx, ty = pd.to_datetime(x, errors="coerce"), pd.to_datetime(y, errors="coerce")
            if not tx.equals(ty):
                return False
            continue
        if not x.fillna("").astype(str).str.strip().equals(y.fillna("").astype(str).str.strip()):
            return False
    return True


def _source(folder: Path, stem: str, options: DataOptions, log: list) -> tuple[pd.DataFrame, TableSource]:
    """The one table named `stem` in the folder; two files of it that differ are an error."""
    found = [folder / f"{stem}{suffix}" for suffix in TABLE_SUFFIXES if (folder / f"{stem}{suffix}").exists()]
    if not found:
        raise CohortError(
            f"{folder}: no {stem}.csv or {stem}.parquet. How to fix: put the {stem} table in that folder "
            "(see data/README.md for the format)"
        )
    tables = [_read_table(path, options, log) for path in found]
    for path, (frame, _) in zip(found[1:], tables[1:]):
        if not _same_table(tables[0][0], frame):
            raise CohortError(
                f"{folder}: both {found[0].name} and {path.name} hold the {stem} table, and they differ. "
                f"How to fix: keep the one you mean and delete or rename the other (an old export beside "
                "an edited one is the usual cause)"
            )
    if len(found) > 1:
        log.append(
            _note(
                f"{stem}: {', '.join(p.name for p in found)} hold the same table; {found[0].name} was read", 0, unit=""
            )
        )
    return tables[0]


def read_meta(folder: Path) -> dict:
    """The folder's cohort.json (name, indicators, units, calendar_dates, description, options), or {}."""
    path = folder / "cohort.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        )
        raise CohortError(
            f"{path}, {where}. How to fix: write valid JSON (UTF-8; quotes around names, no trailing "
            "commas), or delete the file to use the defaults"
        ) from None
    if not isinstance(meta, dict):
        raise CohortError(f'{path}: holds {type(meta).__name__}, not an object. How to fix: write {{"name": ..., ...}}')
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise CohortError(
            f"{path}: unknown key(s) {', '.join(unknown)}. How to fix: use {', '.join(META_KEYS)} (see data/README.md)"
        )
    return meta


def load_tables(
    exams_path: str | Path, patients_path: str | Path, options: DataOptions | dict | None = None, **meta
) -> Cohort:
    """Load a cohort from an examinations file and a patients file (CSV or Parquet)."""
    exams_path, patients_path = Path(exams_path), Path(patients_path)
    for p in (exams_path, patients_path):
        if not p.exists():
            raise CohortError(f"{p}: file not found. How to fix: check the path")
    options = options if isinstance(options, DataOptions) else DataOptions.from_dict(options)
    log: list[dict] = []
    exams, es = _read_table(exams_path, options, log)
    patients, ps = _read_table(patients_path, options, log)
    return Cohort.from_tables(
        exams, patients, exams_source=es, patients_source=ps, options=options, load_log=log, **meta
    )


def load_folder(folder: str | Path, options: DataOptions | dict | None = None) -> Cohort:
    """A cohort folder: exams and patients tables (CSV or Parquet) and an optional cohort.json. The
    options of cohort.json ("options") apply first, then `options`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CohortError(
            f"{folder}: not a folder. How to fix: pass a folder holding exams.(csv|parquet) and patients.(csv|parquet)"
        )
    meta = read_meta(folder)
    given = asdict(options) if isinstance(options, DataOptions) else dict(options or {})
    merged = {
        **({"allow_future_dates": True} if not meta.get("calendar_dates", True) else {}),
        **(meta.get("options") or {}),
        **given,
    }
    options = DataOptions.from_dict(
        merged, where=f"{folder / 'cohort.json'} options" if meta.get("options") else "data options"
    )
    log: list[dict] = []
    exams, es = _source(folder, "exams", options, log)
    patients, ps = _source(folder, "patients", options, log)
    kwargs = {
        "name": meta.get("name", folder.name),
        "calendar_dates": meta.get("calendar_dates", True),
        "units": meta.get("units", {}),
        "description": meta.get("description", ""),
    }
    if "indicators" in meta:
        kwargs["indicators"] = meta["indicators"]
    return Cohort.from_tables(
        exams, patients, exams_source=es, patients_source=ps, options=options, load_log=log, **kwargs
    )
