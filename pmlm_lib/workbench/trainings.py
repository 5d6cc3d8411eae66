"""How much a finding depends on the training: the refinement trained k times, scored on the same test patients.

A report's paired intervals cover its test patients, not its training. Two trainings of one profile can
end in different policies (another seed, or llama.cpp's batched answers, which are not reproducible
across batch compositions: docs/evidence.md, "Does the same seed give the same run?"), and PMLM's effect moves with
the policy. `repeat` trains the refinement again on a copy of a finished run (its notebooks 01-03 kept,
04 with another `training_seed`, 05 on the same test patients, every other prompt answered from the
cache), and `across` puts the trainings side by side:

The statistics that combine them (an interval over trainings and patients, a two-level bootstrap, how many
trainings hurt) are `evaluation.across_trainings`.

The results go to the base run's folder (step "trainings"), and its report page shows them beside the
notebooks' findings.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from pmlm_lib.common.atomic import write_json
from pmlm_lib.evaluation import across_trainings, plots
from pmlm_lib.evaluation import systems as ev
from pmlm_lib.workbench.artifacts import TRAININGS_RESULTS, TRAININGS_STEP, RunFolder, read_manifest
from pmlm_lib.workbench.pipeline import run_report
from pmlm_lib.workbench.record import EARLIER, RECORD_FILE, RunRecord, update_latest
from pmlm_lib.workbench.report import build_report

STEP = TRAININGS_STEP
REFINEMENT = "04_rl_refinement"
RETRAINED = ("04", "05")  # the notebooks a training runs again; 01-03 are kept from the base run
# Table 2's LoRA reply model and the greedy-search oracle do not depend on the policy: not made again
INDEPENDENT_OF_TRAINING = {"finetune_patients": 0, "greedy_patients": 0}
BASE_RECORD = "trainings_base.json"  # in a training's folder: the state of the base run it was copied from
COMPARED = [ev.WITHOUT_PR, ev.RANDOM, ev.SHUFFLED, ev.CONSENSUS, ev.BEFORE, ev.WITHOUT_SP, ev.WITHOUT_PP]


class TrainingsError(RuntimeError):
    """A run that cannot be trained again, or trainings that cannot be compared."""


def training_seed(base_seed: int, j: int) -> int:
    """The j-th training's seed (j = 0: the base run's own). Far from the base seeds, so that trainings of
    runs with seeds 0 and 1 do not share one (the refinement seeds its epochs with seed * 1000 + epoch)."""
    return base_seed + 1_000_000 * j


def finished_record(base: Path, notebooks: tuple[str, ...] = ("01", "02", "03", *RETRAINED)) -> RunRecord:
    """The run record of `base`, whose `notebooks` (prefixes) must have finished."""
    record = RunRecord.read_if_any(base)
    if record is None:
        raise TrainingsError(f"{base} is not a run folder (no {RECORD_FILE}): give --run of a finished report")
    missing = record.missing(notebooks)
    if missing:
        raise TrainingsError(
            f"{base}: notebooks {', '.join(missing)} did not finish in this run; finish it first "
            f"(pmlm report --run {base.name} --from {missing[0]})"
        )
    return record


def inputs_of(record: RunRecord) -> dict:
    """What identifies the base run's notebooks 01-03 (a run made again from 01, 02 or 03 changes it)."""
    kept = [nb for nb in record.notebooks if nb["notebook"][:2] < RETRAINED[0]]
    return {
        "run": record.run,
        "started": record.started,
        "notebooks": [[nb["notebook"], nb["status"].replace(EARLIER, ""), nb["wall_seconds"]] for nb in kept],
    }


def copied_from(record: RunRecord, target: Path) -> bool:
    """Whether `target` was copied from the base run in the state `record` describes (its notebooks 01-03)."""
    path = target / BASE_RECORD
    return path.exists() and json.loads(path.read_text(encoding="utf-8")) == inputs_of(record)


def _require_same_inputs(base: Path, record: RunRecord, target: Path) -> None:
    if not copied_from(record, target):
        raise TrainingsError(
            f"{target} was trained on another state of {base.name} (its notebooks 01-03 ran again since): delete "
            f"or move the folders {base.name}-training* and run `pmlm trainings` again"
        )


def copy_inputs(base: Path, record: RunRecord, target: Path) -> None:
    """The base run's folder without what the retrained notebooks and later ones wrote (their files are
    made again, or would show the base's results under the training's name), and the state it was copied in."""
    later = [m.stem for m in (base / "artifacts").glob("*.json") if m.stem[:2] >= RETRAINED[0] or m.stem == STEP]
    dropped = {Path(f) for step in later for entry in read_manifest(base, step) for f in entry["files"]}
    dropped |= {Path("artifacts") / f"{step}.json" for step in later}
    skip_dirs = {"notebooks", "logs", STEP}
    for path in base.rglob("*"):
        relative = path.relative_to(base)
        if relative.parts[0] in skip_dirs or relative in dropped or path.is_dir():
            continue
        if relative.name == "index.html" or relative.name.startswith("policy"):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)
    write_json(target / BASE_RECORD, inputs_of(record))


def repeat(base: str | Path, k: int, reports_dir: str | Path | None = None, console=sys.stderr) -> list[Path]:
    """The base run and k - 1 more trainings of it (run folders BASE-training1 ...), each trained with its own
    `training_seed` and evaluated on the base run's test patients. A training that finished earlier is kept
    (its folder says so); one that was interrupted resumes from its checkpoint."""

    base = Path(base).resolve()
    if k < 2:
        raise TrainingsError(f"k = {k}: comparing trainings needs at least 2 (the base run and one more)")
    record = finished_record(base)
    seed = int(record.seeds.get(REFINEMENT) or 0)
    given = record.parameters_of(REFINEMENT).get("training_seed")
    if given is not None and given != seed:
        raise TrainingsError(f"{base} was itself trained with training_seed {given}: give the run it was made from")
    reports_dir = Path(reports_dir) if reports_dir else base.parent
    runs = [base]
    for j in range(1, k):
        target = reports_dir / f"{base.name}-training{j}"
        wanted = training_seed(seed, j)
        previous = RunRecord.read_if_any(target)
        if previous is not None:
            _require_same_inputs(base, record, target)
            trained = previous.parameters_of(REFINEMENT).get("training_seed")
            if trained != wanted:
                raise TrainingsError(
                    f"{target} exists with training_seed {trained}, not {wanted}: move it away or delete it"
                )
            if previous.status == "ok":
                console.write(f"[pmlm] training {j} of {k - 1}: kept ({target.name} finished earlier)\n")
                runs.append(target)
                continue
        else:
            copy_inputs(base, record, target)
        console.write(f"[pmlm] training {j} of {k - 1}: {target.name} (training_seed {wanted})\n")
        run_report(
            run=target.name,
            reports_dir=reports_dir,
            start_from=RETRAINED[0],
            only=["01", "02", "03", *RETRAINED],
            overrides={REFINEMENT: {"training_seed": wanted}, "05_evaluation": INDEPENDENT_OF_TRAINING},
            console=console,
        )
        runs.append(target)
    update_latest(reports_dir, base)  # the trainings are parts of the base run, not newer reports
    return runs


def _scores(run: Path) -> pd.DataFrame:
    path = run / "answers_scored.parquet"
    if not path.exists():
        raise TrainingsError(f"{path} is missing: notebook 05 did not finish in {run}")
    scored = pd.read_parquet(path)
    return scored[scored["responder"] == ev.refinement_label(_refinement(run))]


def _refinement(run: Path) -> dict:
    return json.loads((run / "results" / "rl_refinement.json").read_text(encoding="utf-8"))


def _training_of(run: Path) -> int:
    record = _refinement(run)
    return int(record.get("training_seed", record.get("inference", {}).get("seed", 0)))


def differences(runs: list[Path], metric: str = ev.HEADLINE) -> pd.DataFrame:
    """PMLM minus each other system, patient by patient, in every training and setting: one row per
    (setting, against, training, patient) with the difference. The trainings must share their patients."""
    rows = []
    patients = {}
    for run in runs:
        scored = _scores(run)
        seed = _training_of(run)
        for setting, part in scored.groupby("setting"):
            means = part.groupby(["system", "patient_id"])[metric].mean()
            if ev.PMLM not in means.index.get_level_values(0):
                continue
            patients.setdefault(setting, {})[run.name] = frozenset(means.loc[ev.PMLM].index)
            for other in COMPARED:
                if other not in means.index.get_level_values(0):
                    continue
                diff = (means.loc[ev.PMLM] - means.loc[other]).dropna()
                rows += [
                    {"setting": setting, "against": other, "training": seed, "run": run.name, "patient_id": p, "d": d}
                    for p, d in diff.items()
                ]
    for setting, by_run in patients.items():
        if len(set(by_run.values())) > 1:
            sizes = ", ".join(f"{r}: {len(p)}" for r, p in by_run.items())
            raise TrainingsError(
                f"the trainings were evaluated on different test patients ({setting} setting: {sizes}); "
                "trainings are compared on the same patients: make them with `pmlm trainings` from one run"
            )
    return pd.DataFrame(rows)


def across(runs: list[Path], metric: str = ev.HEADLINE) -> pd.DataFrame:
    """Per setting and comparison: each training's paired difference with its CI (rows 'training N'), and
    the trainings combined (row 'across trainings')."""
    return across_trainings.table(differences(runs, metric))


def save(base: str | Path, table: pd.DataFrame, data_name: str, metric: str = ev.HEADLINE) -> RunFolder:
    """The comparison into the base run's folder: a table, a figure and the findings; the report page is rebuilt."""

    folder = RunFolder(base, STEP)
    columns = ["setting", "PMLM against", "training", "mean_difference", "ci95_low", "ci95_high", "n", "trainings"]
    columns += ["sd_between_trainings", "bootstrap_low", "bootstrap_high", "trainings_mean_below_zero", "run"]
    folder.table(
        table[[c for c in columns if c in table]].round(3),
        "trainings",
        f"PMLM − each system, {metric} (x100), in each training of the refinement on the same test patients, and "
        "across the trainings: the mean of their means with a 95% interval that counts trainings and patients.",
        index=False,
    )
    folder.figure(
        plots.across_trainings(table, metric),
        "trainings_forest",
        "Each training's paired difference (95% CI over patients) and the trainings combined (black), per comparison.",
    )
    combined_rows = table[table["training"].str.startswith("across")]
    for setting, part in combined_rows.groupby("setting", sort=False):
        k = int(part["trainings"].iloc[0])
        folder.findings(
            f"Across {k} trainings of the refinement ({setting} decoding, the {data_name} cohort)",
            [across_trainings.sentence(r, metric) for r in part.to_dict(orient="records")],
        )
    write_json(folder.path("results", TRAININGS_RESULTS), table.to_dict(orient="records"))
    build_report(base)
    return folder


def _cohort_name(run: Path) -> str:
    """The cohort's name as notebook 05's findings give it (runs made before it was recorded: the data source)."""
    evaluation = run / "results" / "evaluation.json"
    named = json.loads(evaluation.read_text(encoding="utf-8")).get("cohort") if evaluation.exists() else None
    return named or RunRecord.read(run).data or "this"


def run_trainings(base: str | Path, k: int = 3, reports_dir: str | Path | None = None, console=sys.stderr) -> Path:
    """`pmlm trainings`: the trainings made (or kept), compared, saved into the base run; its folder."""
    base = Path(base).resolve()
    runs = repeat(base, k, reports_dir, console)
    table = across(runs)
    save(base, table, _cohort_name(base))
    for setting, part in table[table["training"].str.startswith("across")].groupby("setting", sort=False):
        console.write(f"[pmlm] across {k} trainings, {setting} decoding:\n")
        for r in part.to_dict(orient="records"):
            console.write(f"  - {across_trainings.sentence(r)}\n")
    return base
