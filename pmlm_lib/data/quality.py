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


def plausible_limits(
    indicators: list[str], units: dict[str, str], extra: dict | None = None
) -> dict[str, tuple[float, float]]:
    """Limits per indicator: the catalogue's where the cohort's unit is the catalogue's (or not
    declared), then the cohort's own table (`extra`: name -> [low, high]) on top."""
    limits = {}
    for name in indicators:
        spec = INDICATOR_BY_NAME.get(name)
        if name in PLAUSIBLE_LIMITS and (not units.get(name) or spec is None or units[name] == spec.unit):
            limits[name] = PLAUSIBLE_LIMITS[name]
    for name, bounds in (extra or {}).items():
        if name in indicators:
            low, high = bounds
            limits[name] = (float("-inf") if low is None else float(low), float("inf") if high is None else float(high))
    return limits


def outside_limits(values: pd.DataFrame, limits: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Boolean masks of the values outside their indicator's limits, for the indicators that have any."""
    out = {}
    for name, (low, high) in limits.items():
        column = values[name].to_numpy(dtype=float)
        mask = ~np.isnan(column) & ((column < low) | (column > high))
        if mask.any():
            out[name] = mask
    return out
