"""A notebook's outputs in its run folder, in the order it produced them.

Each notebook opens `RunFolder(run_dir, step)` and saves every table and figure it shows through
it: the files get stable names (tables/NAME.csv and .md, figures/NAME.png and .svg) and a
manifest (artifacts/STEP.json) records them in order, so that the report page can show them
without re-running anything. Re-running a notebook replaces its own manifest only.

A notebook run again for another responder (notebook 04: one refinement per responder of the profile)
opens `RunFolder(run_dir, step, variant=NAME)`: everything it writes carries "@NAME" (policy@NAME.pt,
tables/refinement_history@NAME.csv, results/rl_refinement@NAME.json, artifacts/STEP@NAME.json), so the
refinements of several responders stand side by side in one run; what it reads is unchanged.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from pmlm_lib import PACKAGE_DIR
from pmlm_lib.common.atomic import atomic_write_text, write_json
from pmlm_lib.workbench import handrun
from pmlm_lib.workbench.parameter_text import parameters_markdown
from pmlm_lib.workbench.record import RunRecord

TRAININGS_STEP = "trainings"  # the outputs `pmlm trainings` saves into a run, beside its notebooks'
TRAININGS_RESULTS = "trainings.json"  # in the run's results/: every training's row and the rows across them
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a responder's name, as it appears in file names


def with_variant(name: str, variant: str = "") -> str:
    """A file or output name of a notebook's variant: "policy.pt" -> "policy@gemma3.pt" ("" : unchanged)."""
    if not variant:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}@{variant}{dot}{suffix}"


def check_variant(variant: str) -> str:
    """A variant name that is safe in file names, or one clear error."""
    if variant and not VARIANT_NAME.match(variant):
        raise ValueError(
            f"responder name {variant!r} cannot name files: use letters, digits and . _ + - (e.g. gemma3-270m)"
        )
    return variant


def check_library() -> None:
    """Stop when the kernel imported pmlm_lib from another checkout than the one running the report
    (two clones sharing one environment): the results would come from the other clone's code."""
    expected = os.environ.get("PMLM_REPO_ROOT")
    here = PACKAGE_DIR.parent
    if expected and Path(expected).resolve() != here:
        raise RuntimeError(
            f"this notebook imported pmlm_lib from {here}, but the report runs the checkout {expected}. "
            f"Run `make setup` in {expected} (each clone has its own .venv), or run the report from {here}."
        )


class RunReader:
    """A run folder read, never written: what a study over a finished run (`pmlm headroom`) and RunFolder share."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir).resolve()

    def exists(self, *parts: str) -> bool:
        return self.root.joinpath(*parts).exists()

    def require(self, *parts: str, made_by: str) -> Path:
        """An input another notebook wrote; a clear error when it is not there yet."""
        p = self.root.joinpath(*parts)
        if not p.exists():
            raise FileNotFoundError(
                f"{p} is missing: run {made_by} first with the same run_dir (pmlm report runs the notebooks in order)."
            )
        return p

    def read_record(self, name: str, made_by: str):
        """Numbers an earlier notebook saved with `record`."""
        return json.loads(self.require("results", f"{name}.json", made_by=made_by).read_text(encoding="utf-8"))


class RunFolder(RunReader):
    """The run folder seen from one notebook (step), or from one variant of it (its outputs named "@variant").
    Opened by hand in JupyterLab, a notebook works in reports/latest, the newest complete run, and replaces
    its own outputs there."""

    def __init__(self, run_dir: str | Path, step: str, variant: str = "", parameters: dict | None = None):
        """`parameters`: the notebook's globals(), given by the numbered notebooks. Run by hand (not by `pmlm
        report`), such a notebook reads the newest run that has its inputs, takes that run's parameters where the
        user left the stored defaults, and writes into a copy of the run, never into a finished run (handrun)."""
        check_library()
        given = Path(run_dir)
        self.variant = check_variant(variant or "")
        self.step = with_variant(step, self.variant)
        if not given.resolve().exists() and given.name == "latest":
            raise FileNotFoundError(
                f"{given} does not exist: no report has been run here yet. Run `make report` (or "
                "`make report PROFILE=smoke`, a few minutes) first, or set run_dir to a run folder "
                "under reports/."
            )
        self.hand_note = ""
        if parameters is not None and handrun.is_hand_run():
            given = self._by_hand(given, parameters)
        self.root = given.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "artifacts" / f"{self.step}.json"
        self.entries: list[dict] = []
        self.found: list[dict] = []
        self._save_manifest()
        print(self.describe())
        self.parameter_text = ""
        if parameters is not None:
            self._show_parameters(parameters)

    def _by_hand(self, given: Path, parameters: dict) -> Path:
        """The folder a hand run writes into (a copy of a finished run), with the run's parameters taken over."""
        source, why = handrun.source_run(given, self.step)
        record = RunRecord.read_if_any(source)
        if record is None or record.status == handrun.BY_HAND:
            return source  # a new folder, or a run made by hand: written into directly
        target = handrun.derive(source, self.step)
        taken, kept = handrun.inherit_parameters(parameters, self.step, record.parameters.get(self.step, {}))
        lines = [
            f"Run by hand: this notebook reads run {source.name} ({why}) and writes into {target.name}, a copy of it "
            f"made for this hand run, so that the finished run stays as `pmlm report` made it.",
            "Parameters taken from that run (the stored defaults differ): "
            + (", ".join(f"{k} = {v!r}" for k, v in taken.items()) or "none"),
            "Parameters you changed, kept: " + (", ".join(f"{k} = {v!r}" for k, v in kept.items()) or "none"),
        ]
        if "run_dir" in parameters:
            parameters["run_dir"] = str(target)  # later cells of this notebook see the folder it writes
        self.hand_note = "\n".join(lines)
        return target

    def _show_parameters(self, parameters: dict) -> None:
        """The notebook's parameters as this run set them, beside the paper's (its second output, in Markdown)."""
        names = list(handrun.parameter_names(self.step)) or list(parameters)
        self.parameter_text = parameters_markdown(self.step, names, parameters)
        from IPython import get_ipython

        if get_ipython() is not None:  # in a kernel (JupyterLab, papermill); a script has no one to show it to
            from IPython.display import Markdown, display

            display(Markdown(self.parameter_text))

    def describe(self) -> str:
        """Which run this notebook reads and writes (its first output)."""
        info = RunRecord.read_if_any(self.root)
        if info is None:
            return f"Run folder {self.root} (a new run)"
        where = (
            f"Run folder {self.root}: run {info.run}, profile {info.profile}, data {info.data}, "
            f"{info.status} (started {info.started}); this notebook ({self.step}) writes its outputs "
            "there"
        )
        return f"{self.hand_note}\n{where}" if self.hand_note else where

    def path(self, *parts: str) -> Path:
        """A path this notebook writes inside the run folder (its parent folder is created; a variant's file
        names carry "@variant")."""
        p = self.root.joinpath(*parts[:-1], with_variant(parts[-1], self.variant))
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _save_manifest(self) -> None:
        write_json(self.manifest_path, {"step": self.step, "artifacts": self.entries, "findings": self.found})

    def _add(self, entry: dict) -> None:
        self.entries = [e for e in self.entries if e["name"] != entry["name"]] + [entry]
        self._save_manifest()

    def table(
        self, df: pd.DataFrame, name: str, caption: str, *, index: bool = True, floatfmt: str = ".4g"
    ) -> pd.DataFrame:
        """Save a table (CSV for machines, Markdown for people, HTML for the report); return it for display.
        People see an empty cell where a value is missing, never NaN or <NA>."""
        name = with_variant(name, self.variant)
        csv_path = self.root / "tables" / f"{name}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(csv_path, df.to_csv(index=index))
        readable = readable_table(df, floatfmt)
        atomic_write_text(
            self.root / "tables" / f"{name}.md", f"{caption}\n\n" + readable.to_markdown(index=index) + "\n"
        )
        html = readable.to_html(index=index, border=0, classes="table", escape=True)
        atomic_write_text(self.root / "tables" / f"{name}.html", html)
        self._add(
            {
                "kind": "table",
                "name": name,
                "caption": caption,
                "files": [str(csv_path.relative_to(self.root)), f"tables/{name}.md", f"tables/{name}.html"],
            }
        )
        return df

    def figure(self, fig, name: str, caption: str):
        """Save a matplotlib figure as PNG (report) and SVG (papers); return it for display."""
        name = with_variant(name, self.variant)
        png, svg = self.root / "figures" / f"{name}.png", self.root / "figures" / f"{name}.svg"
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
        self._add(
            {
                "kind": "figure",
                "name": name,
                "caption": caption,
                "files": [f"figures/{name}.png", f"figures/{name}.svg"],
            }
        )
        return fig

    def text(self, name: str, caption: str, body: str) -> str:
        """Save a text block (a prompt, a reply) that the report shows verbatim."""
        name = with_variant(name, self.variant)
        path = self.root / "texts" / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, body)
        self._add({"kind": "text", "name": name, "caption": caption, "files": [f"texts/{name}.txt"]})
        return body

    def findings(self, heading: str, sentences: list[str]) -> list[str]:
        """What the run found, in sentences generated from its numbers: the report page opens with them."""
        if self.variant:
            heading = f"{heading}, refined for {self.variant}"
        self.found = [f for f in self.found if f["heading"] != heading] + [
            {"heading": heading, "sentences": list(sentences)}
        ]
        self._save_manifest()
        return sentences

    def record(self, name: str, obj) -> None:
        """Save numbers that later notebooks, the report or tests read (JSON)."""
        write_json(self.path("results", f"{name}.json"), obj)  # a variant's: results/NAME@variant.json


def readable_table(df: pd.DataFrame, floatfmt: str = ".4g") -> pd.DataFrame:
    """The table as text cells: numbers in `floatfmt`, missing values as empty cells."""
    out = df.astype(object).copy()
    for column in df.columns:
        values = df[column]
        if pd.api.types.is_float_dtype(values):
            out[column] = [format(v, floatfmt) if pd.notna(v) else "" for v in values]
        else:
            out[column] = [
                "" if v is None or (not isinstance(v, (list, tuple, dict)) and pd.isna(v)) else v for v in values
            ]
    return out


def read_manifest(run_dir: str | Path, step: str) -> list[dict]:
    path = Path(run_dir) / "artifacts" / f"{step}.json"
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["artifacts"]


def read_findings(run_dir: str | Path, step: str) -> list[dict]:
    """The findings a notebook saved: [{"heading": ..., "sentences": [...]}, ...]."""
    path = Path(run_dir) / "artifacts" / f"{step}.json"
    if not path.exists():
        return []
    return json.loads(path.read_text(encoding="utf-8")).get("findings", [])
