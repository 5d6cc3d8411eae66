"""Which refinement configuration learns reliably: each trained k times on one run's inputs, scored on
validation patients (never test), each with its own inference mode.

Three trainings cannot tell a reliable configuration from a lucky one, and one training's interval covers
its patients, not its training. `compare` trains notebook 04 k times per configuration on copies of a
run whose notebooks 01-03 are done (the same cohort, predictions, peers and coarse prompts; training seeds
0 .. k-1 of the run's seed, the same for every configuration), and has each training's edits (in the
configuration's inference mode), s_0 and random deletion answered on the same validation patients with the
training's decoding (notebook 04's own validation comparison). s_0 and random deletion do not depend on the
training, so after the first training they come from the answer cache: each further training costs its
episodes and one answer per validation patient.

The table: per configuration and training, PMLM − s_0 and PMLM − random deletion (BERTScore-F1 points,
95% CI over the validation patients) and how personal the training's edits of the test prompts are
(no test answer is read); per configuration, the mean over trainings, the sd between trainings and the
worst training. `pmlm tune --run NAME --config NAME=FILE.yaml ... --k 6` runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pmlm_lib.common.atomic import write_json
from pmlm_lib.evaluation.across_trainings import combined
from pmlm_lib.workbench.pipeline import run_report
from pmlm_lib.workbench.record import RunRecord
from pmlm_lib.workbench.trainings import (
    TrainingsError,
    copied_from,
    copy_inputs,
    finished_record,
    training_seed,
)

KEPT = ("01", "02", "03")
STEP = "04_rl_refinement"
SHUFFLED = "shuffled"  # a mode's own edit sets shuffled among the validation patients (notebook 04's column)
VALIDATED = ("s_0", "random deletion", SHUFFLED, "consensus template")  # the latter two: trainings since 2026-12-04
PERSONAL = ("distinct_edit_sets", "share_most_common", "share_prediction_cut", "share_peer_diagnosis_cut")


def train(
    base: str | Path,
    name: str,
    parameters: dict,
    j: int,
    validation_patients: int = 40,
    reports_dir: str | Path | None = None,
    console=sys.stderr,
) -> Path:
    """Training j of configuration `name` (notebook 04's parameters over the run's own): its run folder."""

    base = Path(base).resolve()
    record = finished_record(base, KEPT)
    seed = int(record.seeds.get(STEP) or record.parameters_of(STEP).get("seed") or 0)
    target = Path(reports_dir or base.parent) / f"{base.name}-tune-{name}-{j}"
    wanted = training_seed(seed, j)
    mode = parameters.get("inference") or record.parameters_of(STEP).get("inference") or "greedy"
    # notebook 04's validation comparison, of the configuration's own mode only, or of the modes it names (each
    # training then judged in the first and measured in all: the same trainings compare the modes)
    modes = parameters.get("inference_modes") or ["greedy" if mode == "auto" else mode]
    overrides = {
        **{k: v for k, v in parameters.items() if k != "inference_modes"},
        "training_seed": wanted,
        "inference": "auto",
        "inference_modes": list(modes),
        "validation_patients": validation_patients,
    }
    previous = RunRecord.read_if_any(target)
    if previous is not None:
        same = copied_from(record, target)
        asked = {k: previous.parameters_of(STEP).get(k) for k in overrides}
        if same and asked == overrides and previous.status == "ok":
            console.write(f"[pmlm] {target.name}: kept (finished earlier)\n")
            return target
        if not same or asked != overrides:
            raise TrainingsError(f"{target} was trained on other inputs or parameters: move it away or delete it")
    else:
        copy_inputs(base, record, target)
    console.write(f"[pmlm] {target.name}: configuration {name}, training_seed {wanted}\n")
    run_report(
        run=target.name,
        reports_dir=target.parent,
        start_from="04",
        only=[*KEPT, "04"],
        overrides={STEP: overrides},
        console=console,
    )
    return target


def result(run: Path, mode: str | None = None) -> dict:
    """One training's validation comparison (of its chosen inference mode, or of `mode`) and the personalization of
    its test prompts."""
    record = json.loads((run / "results" / "rl_refinement.json").read_text(encoding="utf-8"))
    edits = next(r for r in record["inference"]["validation"] if r["mode"] == (mode or record["inference"]["mode"]))
    row = {"run": run.name, "training": record.get("training_seed"), "mode": edits["mode"], "n": int(edits["patients"])}
    for other in VALIDATED:
        if pd.notna(edits.get(f"− {other}")):  # a mode has no shuffled control of its own when it is the consensus
            row[f"− {other}"] = edits[f"− {other}"]
            row[f"− {other} CI"] = f"[{edits[f'− {other} CI low']:+.1f}, {edits[f'− {other} CI high']:+.1f}]"
    history = record.get("history") or [{}]
    row["last epoch − random (train)"] = history[-1].get("minus_random")
    restarts = record.get("restarts") or {}
    if (restarts.get("count") or 1) > 1:
        row["chosen restart"] = restarts["chosen"]
        judged = restarts.get("selection") or []
        row["turned down"] = sum(not r.get("accepted") for r in judged)
        row["first try passed"] = bool(judged and judged[0].get("accepted"))
    row.update({k: (record.get("personalization") or {}).get(k) for k in PERSONAL})
    return row


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: the mean over trainings, the sd between trainings, the worst training."""
    out = {}
    for name, part in rows.groupby("configuration", sort=False):
        entry = {"trainings": len(part), "validation patients": int(part["n"].iloc[0])}
        for other in VALIDATED:
            if f"− {other}" not in part or part[f"− {other}"].isna().all():
                continue
            values = part[f"− {other}"].astype(float)
            entry[f"− {other}: mean"] = values.mean()
            entry[f"− {other}: sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
            entry[f"− {other}: worst"] = values.min()
        if "first try passed" in part:
            entry["first tries turned down"] = int((~part["first try passed"].astype(bool)).sum())
            entry["trainings turned down"] = int(part["turned down"].sum())
        for k in PERSONAL:
            if part[k].notna().any():
                entry[f"{k} (mean)"] = part[k].astype(float).mean()
        out[name] = entry
    return pd.DataFrame(out).T.rename_axis("configuration")


def compare(
    base: str | Path,
    configurations: dict[str, dict],
    k: int = 6,
    validation_patients: int = 40,
    reports_dir: str | Path | None = None,
    console=sys.stderr,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every configuration trained k times (kept when done earlier); per training and per configuration tables,
    also written to the base run's folder (tuning.json, tuning.md)."""
    base = Path(base).resolve()
    rows = []
    for j in range(k):  # training by training across configurations: an interrupted comparison stays balanced
        for name, parameters in configurations.items():
            run = train(base, name, parameters, j, validation_patients, reports_dir, console)
            modes = parameters.get("inference_modes")
            if modes:  # one row per mode measured on the same training
                rows += [{"configuration": f"{name} · {m}", **result(run, m)} for m in modes]
            else:
                rows.append({"configuration": name, **result(run)})
    per_training = pd.DataFrame(rows)
    table = summarize(per_training).join(across(per_training, reports_dir or base.parent))
    write_json(
        base / "tuning.json",
        {"configurations": configurations, "trainings": rows, "summary": table.reset_index().to_dict("records")},
    )
    (base / "tuning.md").write_text(
        "# Configurations on validation patients\n\n"
        + table.round(3).to_markdown()
        + "\n\n## Each training\n\n"
        + per_training.round(3).to_markdown(index=False)
        + "\n",
        encoding="utf-8",
    )
    return per_training, table


def across(per_training: pd.DataFrame, reports_dir: Path) -> pd.DataFrame:
    """Per configuration and control: the mean difference over its trainings with a 95% interval that counts the
    trainings and the validation patients (`across_trainings.combined`), from each training's per-patient scores
    (notebook 04's inference_modes_scores.csv); empty for trainings made before those were written."""
    out: dict[str, dict] = {}
    for name, part in per_training.groupby("configuration", sort=False):
        parts = []
        for _, row in part.iterrows():
            path = Path(reports_dir) / row["run"] / "inference_modes_scores.csv"
            if path.exists():
                parts.append((row["training"], row["mode"], pd.read_csv(path, dtype={"patient_id": str})))
        if len(parts) < 2:
            continue
        for other in VALIDATED:
            d = []
            for training, mode, scores in parts:
                against = f"{SHUFFLED} ({mode})" if other == SHUFFLED else other
                if against in scores and mode in scores:
                    d.append(
                        pd.DataFrame(
                            {
                                "patient_id": scores["patient_id"],
                                "training": training,
                                "d": scores[mode] - scores[against],
                            }
                        )
                    )
            if len(d) >= 2:
                c = combined(pd.concat(d, ignore_index=True))
                out.setdefault(name, {})[f"− {other}: two-level CI"] = f"[{c['ci95_low']:+.1f}, {c['ci95_high']:+.1f}]"
    return pd.DataFrame(out).T.rename_axis("configuration")


def configurations_from(arguments: list[str]) -> dict[str, dict]:
    """`NAME` (the run's own notebook 04) or `NAME=FILE.yaml` (a mapping of notebook 04 parameters) each."""
    import yaml

    out = {}
    for argument in arguments:
        name, _, path = argument.partition("=")
        if not name or name in out:
            raise ValueError(f"--config {argument!r}: give each configuration its own name (NAME or NAME=FILE.yaml)")
        parameters = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
        if not isinstance(parameters or {}, dict):
            raise ValueError(f"{path}: expected a mapping of notebook 04 parameters (lr: 0.01, group_size: 4 ...)")
        out[name] = parameters or {}
    return out
