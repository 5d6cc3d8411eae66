"""How much a finding depends on the training: the refinement trained k times, scored on the same test patients.

A report's paired intervals cover its test patients, not its training. Two trainings of one profile can
end in different policies (another seed, or llama.cpp's batched answers, which are not reproducible
across batch compositions: README, "Does the same seed give the same run?"), and PMLM's effect moves with
the policy. `repeat` trains the refinement again on a copy of a finished run (its notebooks 01-03 kept,
04 with another `training_seed`, 05 on the same test patients, every other prompt answered from the
cache), and `across` puts the trainings side by side:

- one row per training and comparison: PMLM's paired difference on the test patients, with its CI;
- one row per comparison across the trainings: the mean of the trainings' means, their spread, and a 95%
  interval that counts both the trainings and the patients. In a model d = mu + patient + training +
  noise, the variance of the grand mean is var_patient/n + var_training/k + var_noise/(nk); the interval
  adds the variance of the patients' means over trainings (/n) to that of the trainings' means (/k),
  which counts the noise term twice: conservative, never narrower than the truth it estimates.
  Degrees of freedom by Welch-Satterthwaite. Beside it, a two-level bootstrap: trainings drawn with
  replacement, then patients drawn with replacement, the grand mean of each draw; its 2.5 and 97.5
  percentiles. With few trainings the bootstrap is too narrow (3 trainings give 10 distinct draws and
  (k - 1)/k of their variance), which is why the sentence quotes the analytic interval and both are kept.
- how many trainings hurt: a mean below zero, and a CI of their own below zero.

The results go to the base run's folder (step "trainings"), and its report page shows them beside the
notebooks' findings.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import evaluation as ev
from .artifacts import TRAININGS_RESULTS, TRAININGS_STEP, RunFolder, read_manifest
from .atomic import write_json

STEP = TRAININGS_STEP
RETRAINED = ("04", "05")  # the notebooks a training runs again; 01-03 are kept from the base run
# Table 2's LoRA reply model and the greedy-search oracle do not depend on the policy: not made again
INDEPENDENT_OF_TRAINING = {"finetune_patients": 0, "greedy_patients": 0}
BASE_RECORD = "trainings_base.json"  # in a training's folder: the state of the base run it was copied from
COMPARED = [ev.WITHOUT_PR, ev.RANDOM, ev.TEMPLATE, ev.BEFORE, ev.WITHOUT_SP, ev.WITHOUT_PP]


class TrainingsError(RuntimeError):
    """A run that cannot be trained again, or trainings that cannot be compared."""


def training_seed(base_seed: int, j: int) -> int:
    """The j-th training's seed (j = 0: the base run's own). Far from the base seeds, so that trainings of
    runs with seeds 0 and 1 do not share one (the refinement seeds its epochs with seed * 1000 + epoch)."""
    return base_seed + 1_000_000 * j


def finished_record(base: Path, notebooks: tuple[str, ...] = ("01", "02", "03", *RETRAINED)) -> dict:
    """The run record of `base`, whose `notebooks` (prefixes) must have finished."""
    record_path = base / "run.json"
    if not record_path.exists():
        raise TrainingsError(f"{base} is not a run folder (no run.json): give --run of a finished report")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    done = {nb["notebook"][:2]: nb["status"] for nb in record.get("notebooks", [])}
    missing = [n for n in notebooks if not done.get(n, "").startswith("ok")]
    if missing:
        raise TrainingsError(
            f"{base}: notebooks {', '.join(missing)} did not finish in this run; finish it first "
            f"(pmlm report --run {base.name} --from {missing[0]})"
        )
    return record


def inputs_of(record: dict) -> dict:
    """What identifies the base run's notebooks 01-03 (a run made again from 01, 02 or 03 changes it)."""
    kept = [nb for nb in record.get("notebooks", []) if nb["notebook"][:2] < RETRAINED[0]]
    return {
        "run": record.get("run"),
        "started": record.get("started"),
        "notebooks": [[nb["notebook"], nb["status"].replace(" (earlier run)", ""), nb["wall_seconds"]] for nb in kept],
    }


def _require_same_inputs(base: Path, record: dict, target: Path) -> None:
    path = target / BASE_RECORD
    copied = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if copied != inputs_of(record):
        raise TrainingsError(
            f"{target} was trained on another state of {base.name} (its notebooks 01-03 ran again since): delete "
            f"or move the folders {base.name}-training* and run `pmlm trainings` again"
        )


def copy_inputs(base: Path, target: Path) -> None:
    """The base run's folder without what the retrained notebooks and later ones wrote (their files are
    made again, or would show the base's results under the training's name)."""
    later = [m.stem for m in (base / "artifacts").glob("*.json") if m.stem[:2] >= RETRAINED[0] or m.stem == STEP]
    dropped = {Path(f) for step in later for entry in read_manifest(base, step) for f in entry["files"]}
    dropped |= {Path("artifacts") / f"{step}.json" for step in later}
    skip_dirs = {"notebooks", "logs", STEP}
    for path in base.rglob("*"):
        relative = path.relative_to(base)
        if relative.parts[0] in skip_dirs or relative in dropped or path.is_dir():
            continue
        if relative.name == "index.html" or relative.name.startswith("policy.pt"):
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / relative)


def repeat(base: str | Path, k: int, reports_dir: str | Path | None = None, console=sys.stderr) -> list[Path]:
    """The base run and k - 1 more trainings of it (run folders BASE-training1 ...), each trained with its own
    `training_seed` and evaluated on the base run's test patients. A training that finished earlier is kept
    (its folder says so); one that was interrupted resumes from its checkpoint."""
    from .pipeline import run_report

    base = Path(base).resolve()
    if k < 2:
        raise TrainingsError(f"k = {k}: comparing trainings needs at least 2 (the base run and one more)")
    record = finished_record(base)
    seed = int(record.get("seeds", {}).get("04_rl_refinement") or 0)
    given = record.get("parameters", {}).get("04_rl_refinement", {}).get("training_seed")
    if given is not None and given != seed:
        raise TrainingsError(f"{base} was itself trained with training_seed {given}: give the run it was made from")
    reports_dir = Path(reports_dir) if reports_dir else base.parent
    runs = [base]
    for j in range(1, k):
        target = reports_dir / f"{base.name}-training{j}"
        wanted = training_seed(seed, j)
        done = target / "run.json"
        if done.exists():
            _require_same_inputs(base, record, target)
            previous = json.loads(done.read_text(encoding="utf-8"))
            trained = previous.get("parameters", {}).get("04_rl_refinement", {}).get("training_seed")
            if trained != wanted:
                raise TrainingsError(
                    f"{target} exists with training_seed {trained}, not {wanted}: move it away or delete it"
                )
            if previous.get("status") == "ok":
                console.write(f"[pmlm] training {j} of {k - 1}: kept ({target.name} finished earlier)\n")
                runs.append(target)
                continue
        else:
            copy_inputs(base, target)
            write_json(target / BASE_RECORD, inputs_of(record))
        console.write(f"[pmlm] training {j} of {k - 1}: {target.name} (training_seed {wanted})\n")
        run_report(
            run=target.name,
            reports_dir=reports_dir,
            start_from=RETRAINED[0],
            only=["01", "02", "03", *RETRAINED],
            overrides={"04_rl_refinement": {"training_seed": wanted}, "05_evaluation": INDEPENDENT_OF_TRAINING},
            console=console,
        )
        runs.append(target)
    _point_latest_at(reports_dir, base)
    return runs


def _point_latest_at(reports_dir: Path, base: Path) -> None:
    """reports/latest goes back to the base run: the trainings are parts of it, not newer reports."""
    latest = reports_dir / "latest"
    if latest.is_symlink():
        latest.unlink()
        latest.symlink_to(base.name, target_is_directory=True)


def _scores(run: Path) -> pd.DataFrame:
    path = run / "answers_scored.parquet"
    if not path.exists():
        raise TrainingsError(f"{path} is missing: notebook 05 did not finish in {run}")
    scored = pd.read_parquet(path)
    return scored[scored["responder"] == ev.BUNDLED]


def _training_of(run: Path) -> int:
    record = json.loads((run / "results" / "rl_refinement.json").read_text(encoding="utf-8"))
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


def combined(d: pd.DataFrame) -> dict:
    """One comparison across trainings: the mean of the trainings' means, their sd, and a 95% interval
    that counts the trainings and the patients (see the module's text)."""
    from scipy import stats

    wide = d.pivot_table(index="patient_id", columns="training", values="d")
    n, k = wide.shape
    per_training = wide.mean(axis=0)
    per_patient = wide.mean(axis=1)
    a = per_training.var(ddof=1) / k if k > 1 else np.nan
    b = per_patient.var(ddof=1) / n if n > 1 else np.nan
    se = float(np.sqrt(a + b))
    df = (a + b) ** 2 / ((a**2 / (k - 1) if k > 1 else 0) + (b**2 / (n - 1) if n > 1 else 0)) if se > 0 else np.inf
    half = float(stats.t.ppf(0.975, df) * se) if se > 0 else 0.0
    mean = float(per_training.mean())
    own = [_training_ci(wide[c]) for c in wide]  # each training's CI over its patients
    boot_low, boot_high = two_level_bootstrap(wide.to_numpy())
    return {
        "n": n,
        "trainings": k,
        "mean_difference": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "sd_between_trainings": float(per_training.std(ddof=1)) if k > 1 else np.nan,
        "lowest_training": float(per_training.min()),
        "highest_training": float(per_training.max()),
        "bootstrap_low": boot_low,
        "bootstrap_high": boot_high,
        "trainings_above_zero": sum(low > 0 for low, _ in own),
        "trainings_below_zero": sum(high < 0 for _, high in own),
        "trainings_mean_below_zero": int((per_training < 0).sum()),
    }


def two_level_bootstrap(d: np.ndarray, draws: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the grand mean of d [patients, trainings]: trainings resampled, then
    patients resampled, in each draw."""
    n, k = d.shape
    rng = np.random.default_rng(seed)
    trainings = rng.integers(k, size=(draws, k))
    patients = rng.integers(n, size=(draws, n))
    means = np.array([d[np.ix_(p, t)].mean() for p, t in zip(patients, trainings)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _training_ci(diffs: pd.Series) -> tuple[float, float]:
    from .metrics import paired_test

    test = paired_test(diffs.to_numpy(), np.zeros(len(diffs)))
    return test["ci95_low"], test["ci95_high"]


def across(runs: list[Path], metric: str = ev.HEADLINE) -> pd.DataFrame:
    """Per setting and comparison: each training's paired difference with its CI (rows 'training N'), and
    the trainings combined (row 'across trainings')."""
    d = differences(runs, metric)
    rows = []
    for (setting, other), part in d.groupby(["setting", "against"], sort=False):
        for seed, one in part.groupby("training", sort=False):
            low, high = _training_ci(one.set_index("patient_id")["d"])
            rows.append(
                {
                    "setting": setting,
                    "PMLM against": other,
                    "training": f"training_seed {seed}",
                    "run": one["run"].iloc[0],
                    "n": len(one),
                    "mean_difference": one["d"].mean(),
                    "ci95_low": low,
                    "ci95_high": high,
                }
            )
        both = combined(part)
        rows.append(
            {
                "setting": setting,
                "PMLM against": other,
                "training": f"across {both['trainings']} trainings",
                "run": "",
                **both,
            }
        )
    return pd.DataFrame(rows)


def sentence(row: dict, metric: str = ev.HEADLINE) -> str:
    """One finding across trainings, with its interval, its sample and how the trainings agreed."""
    sample = f"n = {int(row['n'])} patients × {int(row['trainings'])} trainings"
    text = ev.finding(row, ev.PMLM, row["PMLM against"], metric, sample=sample)
    agreed = (
        f" Trainings: {row['lowest_training']:+.1f} to {row['highest_training']:+.1f} "
        f"(sd {row['sd_between_trainings']:.1f}); "
        f"{int(row['trainings_above_zero'])} of {int(row['trainings'])} with their own CI above zero, "
        f"{int(row['trainings_below_zero'])} below; two-level bootstrap {row['bootstrap_low']:+.1f} to "
        f"{row['bootstrap_high']:+.1f}."
    )
    return text + agreed


def save(base: str | Path, table: pd.DataFrame, data_name: str, metric: str = ev.HEADLINE) -> RunFolder:
    """The comparison into the base run's folder: a table, a figure and the findings; the report page is rebuilt."""
    from . import plots
    from .report import build_report

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
            [sentence(r, metric) for r in part.to_dict(orient="records")],
        )
    write_json(folder.path("results", TRAININGS_RESULTS), table.to_dict(orient="records"))
    build_report(base)
    return folder


def _cohort_name(run: Path) -> str:
    """The cohort's name as notebook 05's findings give it (runs made before it was recorded: the data source)."""
    evaluation = run / "results" / "evaluation.json"
    named = json.loads(evaluation.read_text(encoding="utf-8")).get("cohort") if evaluation.exists() else None
    return named or json.loads((run / "run.json").read_text(encoding="utf-8")).get("data", "this")


def run_trainings(base: str | Path, k: int = 3, reports_dir: str | Path | None = None, console=sys.stderr) -> Path:
    """`pmlm trainings`: the trainings made (or kept), compared, saved into the base run; its folder."""
    base = Path(base).resolve()
    runs = repeat(base, k, reports_dir, console)
    table = across(runs)
    save(base, table, _cohort_name(base))
    for setting, part in table[table["training"].str.startswith("across")].groupby("setting", sort=False):
        console.write(f"[pmlm] across {k} trainings, {setting} decoding:\n")
        for r in part.to_dict(orient="records"):
            console.write(f"  - {sentence(r)}\n")
    return base
