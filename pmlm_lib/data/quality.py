"""Data-quality findings of a cohort, cleaned and counted or raised, by one option.

What a hospital export holds besides its data: a label written "Normal ", "normal" and "NORMAL";
"NA" or "null" standing for a missing label or reply; values no body can have (a haemoglobin of
99999, a ratio of 250%, a negative count); censored values such as "<5". With `on_quality="clean"`
(the default) each is repaired or removed and counted in the cohort's load log, which the filtering
step shows first in its filter log; with `on_quality="raise"` the first one stops the load with the
file, row, column and fix. Structural faults (a missing column, a cell that is no number) are errors
in both modes.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

from pmlm_lib.data.indicators import INDICATOR_BY_NAME, PLAUSIBLE_LIMITS

QUALITY_MODES = ("clean", "raise")
MISSING_TOKENS = frozenset(
    {
        "",
        "na",
        "n/a",
        "n.a.",
        "nan",
        "null",
        "none",
        "nil",
        "missing",
        "unknown",
        "-",
        "--",
        "?",
        "#n/a",
        "无",
        "空",
        "未知",
        "缺失",
    }
)
_CENSORED = re.compile(r"^\s*([<>]=?|≤|≥)\s*(-?\d+(?:\.\d+)?)\s*$")
UNIT_MIXUP_SHARE = 0.5  # beyond this share of values outside the limits, the unit is wrong, not the values


def missing_token(values: pd.Series) -> pd.Series:
    """True where a cell is empty or a word that means "missing" (NA, null, unknown, 无, ...)."""
    return values.isna() | values.astype(str).str.strip().str.lower().isin(MISSING_TOKENS)


def label_key(label: str) -> str:
    """Spellings of one label compare equal: case, surrounding and repeated spaces ignored."""
    return " ".join(str(label).split()).casefold()


def canonical_labels(labels: pd.Series) -> tuple[pd.Series, dict[str, list[str]]]:
    """Each label in its most frequent spelling among those that differ only in case and spaces
    (the first seen on a tie); and the variants merged, by canonical label."""
    stripped = labels.astype(str).map(lambda s: " ".join(s.split()))
    keys = stripped.map(label_key)
    spellings = Counter(zip(keys, stripped))
    order = {s: i for i, s in enumerate(dict.fromkeys(stripped))}
    canonical = {}
    for key in dict.fromkeys(keys):
        options = [(n, -order[s], s) for (k, s), n in spellings.items() if k == key]
        canonical[key] = max(options)[2]
    originals = {k: sorted(set(labels[keys == k].astype(str))) for k in canonical}
    merged = {canonical[k]: spelled for k, spelled in originals.items() if len(spelled) > 1}
    return keys.map(canonical), merged


def censored_values(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values written as a bound ("<5", ">=200", "≤0.1"): the bound as a number, and where they are."""
    match = text.astype(str).str.extract(_CENSORED)
    found = match[1].notna()
    return pd.to_numeric(match[1], errors="coerce"), found


# value in the declared unit = value in the catalogue's unit × factor, for the units hospitals use besides the
# catalogue's (lower case, "µ" written "u"); an indicator-specific factor (molar mass) comes first
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("g/l", "g/dl"): 0.1,
    ("g/l", "mg/dl"): 100.0,
    ("mg/l", "mg/dl"): 0.1,
    ("mg/l", "g/l"): 0.001,
    ("10^9/l", "10^3/ul"): 1.0,
    ("10^9/l", "k/ul"): 1.0,
    ("10^9/l", "/nl"): 1.0,
    ("10^12/l", "10^6/ul"): 1.0,
    ("10^12/l", "m/ul"): 1.0,
    ("%", "fraction"): 0.01,
    ("%", "l/l"): 0.01,
}
INDICATOR_UNIT_FACTORS: dict[tuple[str, str], float] = {
    # bilirubin: 1 mg/dL = 17.1 umol/L (molar mass 584.7 g/mol)
    **{(name, "mg/dl"): 1 / 17.1 for name in ("total_bilirubin", "direct_bilirubin", "indirect_bilirubin")},
    # haemoglobin in mmol/L (as in the Netherlands): 1 mmol/L = 16.11 g/L (the monomer, 16.1 kDa)
    ("hemoglobin", "mmol/l"): 1 / 16.11,
}


def unit_key(unit: str) -> str:
    return str(unit).strip().lower().replace("µ", "u").replace("μ", "u").replace(" ", "")


def unit_factor(name: str, declared: str) -> float | None:
    """How a value of `name` in the catalogue's unit is written in the `declared` unit (1.0: the same unit);
    None when the factor is not known."""
    spec = INDICATOR_BY_NAME.get(name)
    if spec is None or not declared or unit_key(declared) == unit_key(spec.unit):
        return 1.0
    pair = (unit_key(spec.unit), unit_key(declared))
    return INDICATOR_UNIT_FACTORS.get((name, pair[1]), UNIT_FACTORS.get(pair))


def plausible_limits(
    indicators: list[str], units: dict[str, str], extra: dict | None = None
) -> dict[str, tuple[float, float]]:
    """Limits per indicator: the catalogue's, converted into the cohort's declared unit where the factor is
    known (g/L and g/dL, umol/L and mg/dL of bilirubin, ...), then the cohort's own table (`extra`: name ->
    [low, high]) on top. An indicator whose declared unit has no known factor has no limits (see `unchecked`)."""
    limits = {}
    for name in indicators:
        factor = unit_factor(name, units.get(name, ""))
        if name in PLAUSIBLE_LIMITS and factor is not None:
            low, high = PLAUSIBLE_LIMITS[name]
            limits[name] = (low * factor, high * factor)
    for name, bounds in (extra or {}).items():
        if name in indicators:
            low, high = bounds
            limits[name] = (float("-inf") if low is None else float(low), float("inf") if high is None else float(high))
    return limits


def unchecked(indicators: list[str], units: dict[str, str], extra: dict | None = None) -> dict[str, tuple[str, str]]:
    """Indicators that go without a plausibility check: a declared unit that is not the catalogue's, with no known
    factor and no limits of the cohort's own: name -> (declared unit, catalogue unit)."""
    return {
        name: (units[name], INDICATOR_BY_NAME[name].unit)
        for name in indicators
        if name in PLAUSIBLE_LIMITS
        and name not in (extra or {})
        and units.get(name)
        and unit_factor(name, units[name]) is None
    }


def outside_limits(values: pd.DataFrame, limits: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Boolean masks of the values outside their indicator's limits, for the indicators that have any."""
    out = {}
    for name, (low, high) in limits.items():
        column = values[name].to_numpy(dtype=float)
        mask = ~np.isnan(column) & ((column < low) | (column > high))
        if mask.any():
            out[name] = mask
    return out
