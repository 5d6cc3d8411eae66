"""Reading a hospital's table files as they come: encodings, delimiters, decimal commas, headers.

A CSV is read as text (so that validation can point at the cell a user sees), after three things
are decided, each detected by default and each an option when detection cannot decide:
- the encoding: UTF-16 or UTF-32 when the file starts with their byte-order mark (a spreadsheet's
  "Unicode text" export), else UTF-8 (with or without a byte-order mark), else GB18030 (the Chinese
  national standard, a superset of GBK and GB2312) when the bytes read as Chinese; anything else,
  Latin-1 for instance, is named by the user (`encoding`);
- the delimiter: comma, semicolon, tab or bar, from the header and the first lines (`delimiter`);
- the decimal mark: a comma in files whose delimiter is not a comma, when the numbers say so
  (`decimal`).
Headers are cleaned where the fix is certain (surrounding spaces, Excel's trailing empty
"Unnamed" columns), and refused where it is not (a repeated header, a data column without a name).
Every clean-up is reported in `ReadReport.notes` for the filter log.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ENCODINGS_TRIED = ("utf-8-sig", "gb18030")
# UTF-32 first: its little-endian mark begins with UTF-16's
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
DELIMITERS = (",", ";", "\t", "|")


class ReadError(ValueError):
    """A file that cannot be read as a table; the message names the file and the option that fixes it."""


@dataclass
class ReadReport:
    """What reading decided and cleaned, for the filter log."""

    encoding: str = ""
    delimiter: str = ","
    decimal: str = "."
    notes: list[tuple[str, int, str]] = field(default_factory=list)  # (what, count, detail)


def _looks_chinese(raw: bytes, text: str) -> bool:
    """GB18030 decodes many byte strings without error (Latin-1 text among them). Chinese text is
    mostly two-byte characters whose both bytes are above 0x80 (the GB2312 block); Latin-1 letters
    read as GB18030 pair a high byte with an ASCII one."""
    wide = [ch for ch in text if ord(ch) > 0x7F]
    if not wide:
        return True
    high_pairs = sum(1 for ch in wide if len(b := ch.encode("gb18030")) == 2 and b[1] >= 0x80)
    return high_pairs >= 0.8 * len(wide)


def decode(raw: bytes, path: Path, encoding: str = "auto") -> tuple[str, str]:
    """The text of a file and the encoding it was read with."""
    if encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise ReadError(
                f"{path}: cannot be read as {encoding} ({exc}). How to fix: set the encoding option to the "
                "file's encoding (utf-8, gb18030, latin-1, cp1252, ...), or save the file as UTF-8"
            ) from None
    for bom, codec in _BOMS:  # a byte-order mark says the encoding exactly (Excel's "Unicode text" is UTF-16)
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(codec), codec
            except UnicodeDecodeError:
                break  # a mark that lies: read on as below
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    try:
        text = raw.decode("gb18030")
        if _looks_chinese(raw, text):
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    line = raw[:first_bad].count(b"\n") + 1
    raise ReadError(
        f"{path}: is not UTF-8 (the first byte that is not, 0x{raw[first_bad]:02x}, is on line {line}) and does not "
        "read as Chinese GB18030 either. How to fix: set the encoding option to the file's encoding, for example "
        "encoding: latin-1 (Western European exports) or cp1252 (Windows), or save the file as UTF-8"
    )


def sniff_delimiter(text: str, path: Path) -> str:
    """The delimiter of a delimited text, from its first lines (the header counts most)."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        raise ReadError(f"{path}: the file has no header line. How to fix: the first line names the columns")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS}
        best = max(counts, key=counts.get)
        if counts[best] == 0:
            return ","  # one column only: the validation names what is missing
        return best


def _clean_headers(frame: pd.DataFrame, header: list[str], path: Path, report: ReadReport) -> pd.DataFrame:
    stripped = [h.strip().lstrip("\ufeff") for h in header]
    changed = [h for h, s in zip(header, stripped) if h != s and s]
    if changed:
        report.notes.append(
            ("column names with spaces around them, trimmed", len(changed), ", ".join(repr(h) for h in changed[:8]))
        )
    unnamed = [i for i, s in enumerate(stripped) if s == "" or re.fullmatch(r"Unnamed: \d+", s)]
    empty = [i for i in unnamed if frame.iloc[:, i].fillna("").astype(str).str.strip().eq("").all()]
    if len(empty) < len(unnamed):
        i = next(i for i in unnamed if i not in empty)
        raise ReadError(
            f"{path}, column {i + 1}: holds values but has no name in the header. How to fix: give the column a "
            "name in the first line, or delete it"
        )
    if empty:
        report.notes.append(
            (
                "empty columns without a name removed (as Excel leaves them)",
                len(empty),
                ", ".join(f"column {i + 1}" for i in empty),
            )
        )
    keep = [i for i in range(len(stripped)) if i not in empty]
    names = [stripped[i] for i in keep]
    seen: dict[str, int] = {}
    for i, name in zip(keep, names):
        if name in seen:
            raise ReadError(
                f"{path}: the column name '{name}' appears twice (columns {seen[name] + 1} and {i + 1}). How to fix: "
                "rename or delete one of them (two columns of one name cannot both be the same indicator)"
            )
        seen[name] = i
    out = frame.iloc[:, keep].copy()
    out.columns = names
    return out


_NUMBER_WITH_COMMA = re.compile(r"^\s*-?\d+(,\d+)?\s*$")


def _decimal_commas(frame: pd.DataFrame, report: ReadReport, option: str) -> pd.DataFrame:
    """Decimal commas ("12,5") turned into points, in the columns whose every value is a number
    written so (never in a comma-delimited file, where a comma cannot be a decimal mark)."""
    if option == "." or report.delimiter == ",":
        return frame
    changed, count = [], 0
    for column in frame.columns:
        values = frame[column].astype(str).str.strip()
        filled = values[values != ""]
        if len(filled) and filled.str.match(_NUMBER_WITH_COMMA).all() and filled.str.contains(",").any():
            count += int(filled.str.contains(",").sum())
            frame[column] = values.str.replace(",", ".", regex=False)
            changed.append(column)
    if changed:
        report.decimal = ","
        report.notes.append(
            (
                "numbers with a decimal comma read as decimals (12,5 = 12.5)",
                count,
                "in " + ", ".join(map(str, changed[:8])) + (" ..." if len(changed) > 8 else ""),
            )
        )
    return frame


def read_csv(
    path: str | Path, encoding: str = "auto", delimiter: str = "auto", decimal: str = "auto"
) -> tuple[pd.DataFrame, ReadReport]:
    """A CSV (or other delimited text) as a table of text cells, and what reading decided; each of
    encoding, delimiter and decimal is detected when "auto"."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise ReadError(
            f"{path}: the file is empty. How to fix: export the table again; the first line names the columns"
        )
    text, used = decode(raw, path, encoding)
    report = ReadReport(encoding=used)
    if used.startswith(("utf-16", "utf-32")) and encoding == "auto":
        report.notes.append(
            (
                f"a {used[:6].upper()} byte-order mark: the file was read as {used.upper()} (as a spreadsheet's "
                "'Unicode text' export saves it)",
                1,
                path.name,
            )
        )
    report.delimiter = sniff_delimiter(text, path) if delimiter == "auto" else delimiter
    if report.delimiter not in DELIMITERS:
        raise ReadError(f"{path}: delimiter {report.delimiter!r} is not supported. How to fix: use one of , ; tab |")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=report.delimiter,
            dtype=str,
            keep_default_na=False,
            header=None,
            skip_blank_lines=True,
            engine="python",
        )
    except (pd.errors.ParserError, csv.Error) as exc:
        raise ReadError(
            f"{path}: cannot be read as a table with delimiter {report.delimiter!r} ({exc}). How to fix: set the "
            "delimiter option, or check for a line with more fields than the header (a quote left open)"
        ) from None
    header = [str(h) for h in frame.iloc[0]] if len(frame) else []
    frame = frame.iloc[1:].reset_index(drop=True)
    frame = _clean_headers(frame, header, path, report)
    frame = _decimal_commas(frame, report, decimal)
    return frame, report
