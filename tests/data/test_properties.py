"""Bad input found by a machine: property-based tests (Hypothesis) of the readers behind `--data` and of the
raw-data guard.

Budgets (tests/conftest.py): the "default" profile, a fixed number of examples per property from a fixed seed
(derandomized: every run checks the same inputs, and `make test` stays inside its minute), and "long"
(`HYPOTHESIS_PROFILE=long`), which draws many more, afresh, before a release. Every input Hypothesis found while
these were written is an explicit `@example` below, so that it is checked on every run whatever the draw.
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import example, given
from hypothesis import strategies as st

from pmlm_lib.data.cohort import CohortError, load_folder
from pmlm_lib.data.indicators import ABBREVIATIONS, INDICATORS
from pmlm_lib.data.prompts import coarse_prompt
from pmlm_lib.llm.responders import RawDataRefused, make_responder
from pmlm_lib.llm.responders.base import contains_raw_values

IDS = st.one_of(
    st.from_regex(r"\A0{0,3}[1-9][0-9]{0,7}\Z"),  # numeric ids with the leading zeros a hospital keeps
    st.from_regex(r"\A[A-Z]{1,3}-?[0-9]{1,5}\Z"),
    st.text(alphabet="张王李赵病人", min_size=1, max_size=4),
)
DAYS = st.dates(min_value=pd.Timestamp("2020-01-01").date(), max_value=pd.Timestamp("2022-12-31").date())
HEMOGLOBIN = st.one_of(st.none(), st.integers(600, 1800).map(lambda v: v / 10))  # g/L, plausible
PLATELETS = st.one_of(st.none(), st.integers(50, 500))


@st.composite
def exports(draw):
    """An examinations table and a patients table as a hospital writes them: the values, and how they are
    written (delimiter, decimal mark, encoding and byte-order mark, line ends)."""
    ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    rows = []
    for pid in ids:
        for day in draw(st.lists(DAYS, min_size=1, max_size=3, unique=True)):
            hb, plt = draw(HEMOGLOBIN), draw(PLATELETS)
            if hb is None and plt is None:
                hb = 100.0
            rows.append((pid, day, hb, plt))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    decimal = draw(st.sampled_from(["."] if delimiter == "," else [".", ","]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "gb18030"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return ids, rows, delimiter, decimal, encoding, newline


def _number(v, decimal: str) -> str:
    return "" if v is None else (f"{v:g}".replace(".", decimal))


def _write(folder: Path, export) -> None:
    ids, rows, delimiter, decimal, encoding, newline = export
    exams = [delimiter.join(["patient_id", "exam_date", "hemoglobin", "platelet_count"])] + [
        delimiter.join([pid, f"{day:%Y-%m-%d}", _number(hb, decimal), _number(plt, decimal)])
        for pid, day, hb, plt in rows
    ]
    patients = [delimiter.join(["patient_id", "label"])] + [delimiter.join([p, "normal"]) for p in ids]
    for name, lines in (("exams.csv", exams), ("patients.csv", patients)):
        (folder / name).write_bytes((newline.join(lines) + newline).encode(encoding))


def _same_values(cohort, rows) -> None:
    got = cohort.exams.set_index(["patient_id", "exam_date"]).sort_index()
    assert len(got) == len(rows)
    for pid, day, hb, plt in rows:
        row = got.loc[(pid, pd.Timestamp(day))]
        for expected, column in ((hb, "hemoglobin"), (plt, "platelet_count")):
            value = row[column]
            assert np.isnan(value) if expected is None else value == expected, (pid, day, column, value, expected)


@given(exports())
@example(([" 1"], [(" 1", pd.Timestamp("2020-01-01").date(), 100.0, None)], ",", ".", "utf-8", "\n"))
def test_a_load_returns_every_generated_value_and_a_round_trip_changes_nothing(export):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(folder, export)
        ids = [p.strip() for p in export[0]]
        if len(set(ids)) < len(ids):
            return  # ids that differ only by spaces around them are one id, as the loader says elsewhere
        cohort = load_folder(folder)
        rows = [(pid.strip(), day, hb, plt) for pid, day, hb, plt in export[1]]
        _same_values(cohort, rows)
        again = load_folder(cohort.save(folder / "saved"))
        pd.testing.assert_frame_equal(again.exams, cohort.exams)
        pd.testing.assert_frame_equal(again.patients, cohort.patients)


MUTATIONS = st.sampled_from(["cell", "line", "junk line", "bom", "header", "bytes", "truncate"])


@given(exports(), MUTATIONS, st.text(max_size=12), st.integers(0, 10_000), st.binary(max_size=8))
def test_a_damaged_export_loads_or_stops_with_one_error_naming_the_file_never_another_exception(
    export, mutation, text, at, junk
):
    """Whatever the damage, the load either returns a cohort or raises one CohortError that names the file it
    could not read; no other exception (a traceback a clinician cannot act on) ever escapes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(folder, export)
        path = folder / ("exams.csv" if at % 2 == 0 else "patients.csv")
        raw = path.read_bytes()
        encoding = export[4]
        lines = raw.decode(encoding).split(export[5])
        if mutation == "cell":
            k = at % max(len(lines) - 1, 1) + 1
            cells = lines[k].split(export[2]) if k < len(lines) else [""]
            cells[at % len(cells)] = text
            lines[k % len(lines)] = export[2].join(cells)
        elif mutation == "line":
            lines.pop(at % len(lines))
        elif mutation == "junk line":
            lines.insert(at % (len(lines) + 1), text)
        elif mutation == "header":
            lines[0] = lines[0].replace("platelet_count", "hemoglobin").replace("label", text or "label")
        if mutation in ("cell", "line", "junk line", "header"):
            raw = export[5].join(lines).encode(encoding, errors="replace")
        elif mutation == "bom":
            raw = "\ufeff".encode("utf-8") + raw
        elif mutation == "bytes":
            raw = raw[: at % (len(raw) + 1)] + junk + raw[at % (len(raw) + 1) :]
        else:
            raw = raw[: at % (len(raw) + 1)]
        path.write_bytes(raw)
        try:
            load_folder(folder)
        except CohortError as exc:
            assert str(folder) in str(exc), str(exc)


NAMES = st.sampled_from(
    sorted({i.name for i in INDICATORS} | {i.label for i in INDICATORS} | set(ABBREVIATIONS.values()))
)
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@st.composite
def raw_values(draw):
    """An indicator named as a clinician or an export would (name, label or abbreviation; any case; spaces for
    underscores), then a number in any notation the loaders accept."""
    name = draw(NAMES).replace("_", draw(st.sampled_from(["_", " "])))
    name = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)
    between = draw(st.sampled_from([" ", "", ": ", ":", " = ", "=", "\t", "：", "＝", "  "]))
    comparison = draw(st.sampled_from(["", "", "<", ">", "≤", "≥", "＜", "＞"]))
    sign = draw(st.sampled_from(["", "", "-", "+"]))
    whole, fraction = draw(st.integers(0, 99999)), draw(st.integers(0, 999))
    number = draw(
        st.sampled_from(
            [f"{whole}", f"{whole}.{fraction}", f"{whole},{fraction}", f".{fraction}", f"{whole:,}", f"{whole}e2"]
        )
    )
    if draw(st.booleans()):
        number = number.translate(FULL_WIDTH)
    before = draw(st.sampled_from(["", "My ", "Results: ", "最近一次 ", "(", "- "]))
    after = draw(st.sampled_from(["", ".", " g/L", ", thank you", ")", "\n"]))
    return f"{before}{name}{between}{comparison}{sign}{number}{after}"


@given(raw_values())
@example("hemoglobin +120")  # found while writing this: a sign the loaders read was not
@example("hemoglobin: .5")  # a leading decimal point
@example("HGB：120")  # a full-width colon (Chinese input methods)
@example("hemoglobin ＜5")  # a full-width comparison sign before a censored value
@example("alb 0e2")  # Hypothesis: scientific notation, which pandas reads as a number
def test_any_prompt_carrying_an_examination_value_is_recognized_as_raw(prompt):
    assert contains_raw_values(prompt), prompt


def test_a_remote_endpoint_refuses_such_a_prompt_before_anything_is_sent():
    remote = make_responder({"backend": "openai", "base_url": "https://example.invalid/v1", "model": "m"})
    try:
        remote.answer(["Please advise: HGB：１２０ and ALT ≤ 40."])
    except RawDataRefused as exc:
        assert "example.invalid" in str(exc) and "allow_raw_data" in str(exc)
    else:
        raise AssertionError("the raw values were not refused")


LABELS = st.sampled_from(
    [
        "normal",
        "uterine scar",
        "gestational diabetes",
        "thalassemia",
        "hypothyroidism",
        "premature rupture of membranes",
    ]
)


@given(st.one_of(st.none(), LABELS), st.lists(st.tuples(LABELS, st.floats(0, 1)), max_size=20))
def test_the_pmlm_prompts_never_look_raw(prediction, peers):
    assert not contains_raw_values(coarse_prompt(prediction, peers))
