"""Profiles and notebook parameters: which values each notebook of a run gets.

A profile (pmlm_lib/profiles/NAME.yaml, or a file) gives parameters by notebook ("common" for every notebook
that declares them) and may extend another; `--set` overrides come on top. `parameters_for` checks that a
notebook declares what it is given, so a typo in a profile stops the run instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pmlm_lib import PACKAGE_DIR
from pmlm_lib.common.weights import repo_root
from pmlm_lib.data.sources import NAMED_SOURCES
from pmlm_lib.workbench.artifacts import check_variant
from pmlm_lib.workbench.errors import PipelineError

PROFILE_DIR = PACKAGE_DIR / "profiles"


def default_notebooks_dir() -> Path:
    root = repo_root()
    if root is None:
        raise PipelineError("cannot find notebooks/: run pmlm from a clone of the repository (pip install -e .)")
    return root / "notebooks"


def default_reports_dir() -> Path:
    root = repo_root()
    return (root / "reports") if root else Path.cwd() / "reports"


def discover_notebooks(notebooks_dir: Path) -> list[Path]:
    """The pipeline's notebooks: notebooks/NN_name.ipynb, in the order of their numbers."""
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _profile_path(name: str, relative_to: Path | None = None) -> Path:
    """A profile by name (pmlm_lib/profiles/NAME.yaml) or by path (absolute, or relative to the
    working directory or to the profile that extends it)."""
    if not name.endswith((".yaml", ".yml")) and "/" not in name:
        path = PROFILE_DIR / f"{name}.yaml"
        if not path.exists():
            raise PipelineError(
                f"unknown profile '{name}': choose one of {', '.join(available_profiles())}, "
                "or give the path of a profile file (.yaml)"
            )
        return path
    candidates = [Path(name).expanduser()]
    if relative_to is not None:
        candidates.insert(0, relative_to.parent / name)
    for path in candidates:
        if path.exists():
            return path.resolve()
    raise PipelineError(
        f"profile file {name} not found (looked in {', '.join(str(c.parent.resolve()) for c in candidates)})"
    )


def load_profile(name: str, _seen: tuple = ()) -> dict:
    """A profile: its description and parameters by notebook ("common" for every notebook that
    declares them). A profile file may say `extends: default` (or another profile's name or path)
    and give only the values that change."""
    path = _profile_path(name, Path(_seen[-1]) if _seen else None)
    if str(path) in _seen:
        raise PipelineError(f"profile {path} extends itself (through {' -> '.join(_seen)})")
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"profile {path} is not valid YAML: {exc}") from None
    unknown = sorted(set(profile) - {"description", "extends", "parameters", "prices", "responders"})
    if unknown:
        raise PipelineError(
            f"profile {path}: unknown key(s) {', '.join(unknown)} "
            "(use description, extends, parameters, prices, responders)"
        )
    if "responders" in profile:
        profile["responders"] = _checked_responders(profile["responders"], path)
    if profile.get("extends"):
        base = load_profile(str(profile["extends"]), _seen + (str(path),))
        profile = {
            "description": profile.get("description", base.get("description", "")),
            "parameters": merge_sections(base["parameters"], profile.get("parameters")),
            "prices": {**base.get("prices", {}), **(profile.get("prices") or {})},
            "responders": profile.get("responders", base.get("responders")),  # the child's list replaces the base's
            "extends": base["name"],
        }
    profile.setdefault("parameters", {})
    profile["name"] = path.stem if path.parent == PROFILE_DIR else str(path)
    return profile


def _checked_responders(responders, path: Path) -> dict:
    """The profile's `responders` ({name: spec}, in order) or one clear error."""
    if not isinstance(responders, dict) or not responders:
        raise PipelineError(
            f"profile {path}: responders must map names to responder specs, e.g. "
            "{smollm2: bundled, gemma3: {backend: llamacpp, model: gemma3-270m}}"
        )
    for name, spec in responders.items():
        try:
            check_variant(str(name))
        except ValueError as exc:
            raise PipelineError(f"profile {path}: {exc}") from None
        if not (spec == "bundled" or (isinstance(spec, dict) and "backend" in spec)):
            raise PipelineError(
                f"profile {path}: responder {name}: give 'bundled' or a spec with a backend (llamacpp, transformers, "
                f"openai), not {spec!r}"
            )
    return {str(name): spec for name, spec in responders.items()}


REFINEMENT_STEP = "04_rl_refinement"
EVALUATION_STEP = "05_evaluation"


def expand_responders(parameters: dict[str, dict], responders: dict | None) -> dict[str, dict]:
    """Each notebook's parameters by run key, with one refinement per responder of the profile.

    Why: the paper refines the prompt for its responder (Eq. 10: the reward answers with LLM_r) and reports one
    refinement per LLM (Table 1). The first responder is the run's main one (notebook 04 as usual, and every
    table of 05-07); each other one gets its own run of notebook 04, keyed "04_rl_refinement@NAME" (its outputs
    carry @NAME), and notebook 05 answers each with its own refined prompts and the others' (the transfer
    table). Without `responders` the parameters are unchanged."""
    if not responders:
        return dict(parameters)
    names = list(responders)
    out: dict[str, dict] = {}
    for key, params in parameters.items():
        if key == REFINEMENT_STEP:
            main = {**params, "responder": responders[names[0]], "responder_name": names[0], "variant": ""}
            out[key] = main
            for name in names[1:]:
                out[f"{key}@{name}"] = {**main, "responder": responders[name], "responder_name": name, "variant": name}
        elif key == EVALUATION_STEP:
            out[key] = {**params, "refinements": names[1:]}
        else:
            out[key] = params
    return out


def declared_parameters(notebook: Path) -> dict:
    import papermill

    return papermill.inspect_notebook(str(notebook))


def parameters_for(notebook: Path, profile: dict, run_dir: Path, overrides: dict) -> dict:
    """The profile's common and notebook-specific values that this notebook declares, plus overrides.

    A notebook-specific value the notebook does not declare is an error (a typo in a profile
    would otherwise be ignored silently); common values go to the notebooks that declare them.
    """
    declared = declared_parameters(notebook)
    if "run_dir" not in declared:
        raise PipelineError(
            f"{notebook.name}: its parameters cell has no run_dir; every notebook reads and writes the run folder"
        )
    params = {"run_dir": str(run_dir)}
    sections = profile["parameters"]
    params.update({k: v for k, v in (sections.get("common") or {}).items() if k in declared})
    specific = {**(sections.get(notebook.stem) or {}), **(overrides.get(notebook.stem) or {})}
    unknown = [k for k in specific if k not in declared]
    if unknown:
        raise PipelineError(
            f"parameter(s) {', '.join(unknown)} set for {notebook.stem}, which does not declare them "
            f"(it declares: {', '.join(declared)})"
        )
    params.update(specific)
    params.update({k: v for k, v in (overrides.get("common") or {}).items() if k in declared})
    return params


def parse_overrides(items: list[str]) -> dict:
    """`--set 01_data_filtering.min_patients=20` or `--set seed=1` (common) into nested dicts."""
    out: dict[str, dict] = {}
    for item in items or []:
        if "=" not in item:
            raise PipelineError(f"--set {item}: write NAME=VALUE or NOTEBOOK.NAME=VALUE")
        key, raw = item.split("=", 1)
        section, _, name = key.rpartition(".")
        out.setdefault(section or "common", {})[name] = yaml.safe_load(raw)
    return out


def resolve_data(data: str | None) -> str | None:
    """A --data folder as an absolute path, resolved from the directory the command runs in (the
    notebooks run elsewhere); a named source stays a name."""

    if data is None or data in NAMED_SOURCES:
        return data
    path = Path(data).expanduser()
    resolved = path if path.is_absolute() else (Path.cwd() / path)
    if not resolved.is_dir():
        raise PipelineError(
            f"--data {data}: no such folder ({resolved}); give a folder with exams and patients tables, "
            f"or one of {', '.join(NAMED_SOURCES)}"
        )
    return str(resolved.resolve())


def merge_sections(*parts: dict) -> dict:
    """Parameter sections ({notebook or "common": {name: value}}) merged left to right, key by key: a later
    part's value replaces an earlier one's (a profile over the one it extends, --set over the run's values)."""
    out: dict[str, dict] = {}
    for part in parts:
        for section, values in (part or {}).items():
            if values is not None and not isinstance(values, dict):
                raise PipelineError(f"profile section '{section}' must map parameter names to values")
            out.setdefault(section, {}).update(values or {})
    return out
