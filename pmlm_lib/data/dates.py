"""Dates and times of examinations as hospital exports write them, read one way for a whole column.

A column is never parsed cell by cell with a guessed order: "09/11/2020" read as 9 November in one
row and "11/24/2020" as 24 November in the next would scramble a history silently. Instead:
- year-first dates (2020-11-09, 2020/11/09, 2020.11.09, 2020年11月9日) are unambiguous;
- day/month/year and month/day/year dates are read in the order the column proves: a first number
  above 12 somewhere means day first, a second number above 12 means month first; a column where
  both readings are possible for every row is ambiguous and an error, unless `dayfirst` or
  `date_format` says which;
- a time of day may follow ("08:30", "08:30:15"); a time-zone offset after it ("+08:00", "Z") is
  removed, keeping the time as recorded on the ward clock (`notes` counts them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

_CJK_DATE = str.maketrans({"年": "-", "月": "-", "日": " ", "时": ":", "分": " ", "秒": " "})
_OFFSET = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_YEAR_FIRST = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T\s]+(.*))?$")
_NUMERIC_DMY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2,4})(?:[T\s]+(.*))?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$")


@dataclass
class ParsedTimes:
    values: pd.Series  # Timestamps (NaT where blank)
    has_time: bool  # some value carries a time of day
    notes: list[tuple[str, int, str]] = field(default_factory=list)


class DateProblem(ValueError):
    """(row, problem, fix): the caller names the file and column."""

    def __init__(self, row: int | None, problem: str, fix: str):
        super().__init__(problem)
        self.row, self.problem, self.fix = row, problem, fix


def _iso(year: str, month: str, day: str, rest: str | None) -> str:
    text = f"{year}-{int(month):02d}-{int(day):02d}"
    if rest:
        m = _TIME.match(rest.strip())
        if not m:
            raise ValueError(rest)
        text += f" {int(m.group(1)):02d}:{m.group(2)}:{m.group(3) or '00'}"
    return text


def parse_times(values: pd.Series, date_format: str | None = None, dayfirst: bool | None = None) -> ParsedTimes:
    """Parse a column of dates (with or without times) in one consistent reading; raise DateProblem."""
    if pd.api.types.is_datetime64_any_dtype(values):
        zone = getattr(values.dt, "tz", None)
        parsed = values.dt.tz_localize(None) if zone is not None else values
        notes = []
        if zone is not None and values.notna().any():  # as for text with offsets: the local times, as recorded
            notes.append(
                (
                    f"time zone {zone} removed (times kept as recorded there)",
                    int(values.notna().sum()),
                    f"for example '{values.dropna().iloc[0]}'",
                )
            )
        return ParsedTimes(
            pd.Series(pd.to_datetime(parsed).to_numpy(), index=values.index),
            bool((parsed.dropna() != parsed.dropna().dt.normalize()).any()),
            notes,
        )
    text = values.astype("string").str.strip().fillna("")
    notes = []
    if date_format:
        parsed = pd.to_datetime(text.where(text != ""), format=date_format, errors="coerce")
        # a year-first date cannot be misread: it stays readable beside the format (one date_format for every file)
        iso = parsed.isna() & text.str.match(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?)?$")
        if iso.any():
            parsed = parsed.where(~iso, pd.to_datetime(text.where(iso), format="ISO8601", errors="coerce"))
        bad = parsed.isna() & (text != "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DateProblem(
                i,
                f"'{text.iloc[i]}' does not match the date format '{date_format}'",
                "correct the value, or set date_format to the format the column uses (for example %d/%m/%Y %H:%M)",
            )
        return ParsedTimes(parsed, bool((parsed.dropna() != parsed.dropna().dt.normalize()).any()), notes)

    cleaned = text.map(lambda t: " ".join(t.translate(_CJK_DATE).split()).rstrip("-") if t else t)
    with_offset = cleaned.map(lambda t: bool(_OFFSET.search(t))).astype(bool)
    if with_offset.any():
        cleaned = cleaned.str.replace(_OFFSET, r"\1", regex=True)
        notes.append(
            (
                "time-zone offsets removed (times kept as recorded)",
                int(with_offset.sum()),
                f"for example '{text[with_offset].iloc[0]}'",
            )
        )
    iso = pd.Series(pd.NA, index=text.index, dtype="string")
    year_first = cleaned.str.match(_YEAR_FIRST)
    numeric = cleaned.str.match(_NUMERIC_DMY) & ~year_first
    for i in cleaned.index[year_first]:
        y, m, d, rest = _YEAR_FIRST.match(cleaned[i]).groups()
        try:
            iso[i] = _iso(y, m, d, rest)
        except ValueError:
            iso[i] = "invalid"
    if numeric.any():
        parts = cleaned[numeric].str.extract(_NUMERIC_DMY)
        first, second = parts[0].astype(int), parts[1].astype(int)
        short_year = parts[2].str.len() != 4
        if short_year.any():  # first: the order options alone cannot read a two-digit year
            i = int(numeric.to_numpy().nonzero()[0][int(short_year.to_numpy().nonzero()[0][0])])
            raise DateProblem(
                i,
                f"'{text.iloc[i]}' has a two-digit year",
                "write years with four digits (2021, not 21), or give date_format with %y: '%d/%m/%y' for "
                "day/month/year, '%m/%d/%y' for month/day/year (00-68 read as 2000-2068)",
            )
        day_first_seen, month_first_seen = bool((first > 12).any()), bool((second > 12).any())
        if dayfirst is None:
            if day_first_seen and month_first_seen:
                i = int(numeric.to_numpy().nonzero()[0][0])
                raise DateProblem(
                    i,
                    "the column mixes day-first dates (a first number above 12) and month-first dates "
                    "(a second number above 12)",
                    "write every date in one order, or as YYYY-MM-DD",
                )
            if not (day_first_seen or month_first_seen):
                i = int(numeric.to_numpy().nonzero()[0][0])
                raise DateProblem(
                    i,
                    f"dates such as '{text.iloc[i]}' are ambiguous: every date of the column reads both as "
                    "day/month/year and as month/day/year",
                    "set the option dayfirst (true for day/month/year, false for month/day/year) or date_format, "
                    "or write dates as YYYY-MM-DD",
                )
            dayfirst = day_first_seen
        for i, (a, b, y, rest) in parts.iterrows():
            day, month = (a, b) if dayfirst else (b, a)
            try:
                iso[i] = _iso(y, month, day, rest if isinstance(rest, str) else None)
            except ValueError:
                iso[i] = "invalid"
        notes.append(
            (
                f"dates read as {'day/month/year' if dayfirst else 'month/day/year'}",
                int(numeric.sum()),
                f"for example '{text[numeric].iloc[0]}'",
            )
        )
    other = (cleaned != "") & ~year_first & ~numeric
    if other.any():  # month names and other spelled-out forms ("5 March 2021"): no order to guess
        spelled = pd.to_datetime(cleaned[other], errors="coerce", format="mixed", dayfirst=bool(dayfirst))
        iso[other] = spelled.dt.strftime("%Y-%m-%d %H:%M:%S").fillna("invalid")
    parsed = pd.to_datetime(iso.replace("invalid", pd.NA), errors="coerce", format="ISO8601")
    bad = parsed.isna() & (text != "")
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        serial = spreadsheet_serial(text.iloc[i])
        if serial is not None:
            raise DateProblem(
                i,
                f"'{text.iloc[i]}' is not a date but a spreadsheet's serial day number (it would be {serial[0]} in "
                f"Excel's 1900 date system, {serial[1]} in the 1904 one, which Mac spreadsheets used): the column "
                "went through a spreadsheet that stored its dates as numbers",
                "format the date column as a date (YYYY-MM-DD) in the spreadsheet before exporting, or export the "
                "file from the hospital system directly",
            )
        raise DateProblem(
            i,
            f"'{text.iloc[i]}' is not a date",
            "write dates as YYYY-MM-DD (for example 2021-03-15), optionally with a time (2021-03-15 08:30)",
        )
    has_time = bool(cleaned[year_first | numeric].str.contains(":").any()) or bool(
        (parsed.dropna() != parsed.dropna().dt.normalize()).any()
    )
    return ParsedTimes(pd.Series(parsed.to_numpy(), index=values.index), has_time, notes)


_SERIAL = re.compile(r"^\d{4,5}(?:\.\d+)?$")


def spreadsheet_serial(text: str) -> tuple[str, str] | None:
    """A spreadsheet's serial day number (days since 1899-12-30, or since 1904-01-01 in the 1904 system; a
    fraction is the time of day) read both ways, for dates from 1927 to 2119; None for anything else. Which
    system made it cannot be read from the number, so it is named, never chosen."""
    if not _SERIAL.match(text.strip()):
        return None
    days = float(text)
    if not 10_000 <= days <= 80_000:
        return None
    as_1900 = pd.Timestamp("1899-12-30") + pd.Timedelta(days=days)
    as_1904 = pd.Timestamp("1904-01-01") + pd.Timedelta(days=days)
    return f"{as_1900:%Y-%m-%d}", f"{as_1904:%Y-%m-%d}"
