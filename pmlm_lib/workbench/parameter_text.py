"""What a notebook ran with, said by the run itself: a Markdown table of the notebook's parameters as this run
set them, with the paper's value beside each one the paper fixes and why the workbench may differ.

Generated from the notebook's own namespace when it runs (RunFolder shows it as the notebook's second output), so
that no sentence in a notebook has to repeat a value a profile can change. `tests/workbench/test_parameter_text.py`
compares the table of every notebook of the smoke run with the run record.
"""

from __future__ import annotations

from pmlm_lib.common.paper import NOT_GIVEN, PARAMETERS

HEADING = "**Parameters of this run**"
SKIPPED = ("run_dir",)  # where it writes is said in the first output


def _shown(value) -> str:
    text = repr(value)
    return "`" + (text if len(text) <= 90 else text[:87] + "...") + "`"


def parameters_markdown(step: str, names: list[str], values: dict) -> str:
    """The table for notebook `step` (a variant, "04_rl_refinement@NAME", is notebook 04's): one row per parameter
    in `names` with its value in `values`, the paper's value where the paper fixes it and whether they agree."""
    paper = PARAMETERS.get(step.split("@")[0], {})
    rows = [
        f"{HEADING} ({step}; the paper's value where it fixes one, and why this run may differ):",
        "",
        "| parameter | this run | the paper | |",
        "|---|---|---|---|",
    ]
    for name in names:
        if name in SKIPPED or name not in values:
            continue
        value = values[name]
        if name in paper and paper[name][0] == NOT_GIVEN:
            why = paper[name][1]
            note = "the paper does not give it" + (f": {why}" if why else "")
            rows.append(f"| {name} | {_shown(value)} | not given | {note} |")
        elif name in paper:
            theirs, why = paper[name]
            note = "same" if value == theirs else ("differs: " + why if why else "differs")
            rows.append(f"| {name} | {_shown(value)} | {_shown(theirs)} | {note} |")
        else:
            rows.append(f"| {name} | {_shown(value)} | | the workbench's |")
    return "\n".join(rows)


def parse(markdown: str) -> dict[str, str]:
    """The table back as {parameter: the value's text as shown} (the test reads the executed notebooks)."""
    out = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("`") and cells[0] not in ("parameter",):
            out[cells[0]] = cells[1].strip("`")
    return out
