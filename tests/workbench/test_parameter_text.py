"""Each notebook says what it ran with, from the run itself: its table of parameters agrees with the run record."""

import ast
import json

import pytest

from pmlm_lib.workbench.parameter_text import HEADING, parameters_markdown, parse
from pmlm_lib.workbench.record import RunRecord


def test_the_table_shows_the_runs_value_beside_the_papers_and_says_where_they_differ():
    text = parameters_markdown(
        "04_rl_refinement@gemma",
        ["run_dir", "n_steps", "lr", "epochs"],
        {"run_dir": "x", "n_steps": 10, "lr": 0.01, "epochs": 8},
    )
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "`" in line}
    assert list(rows) == ["n_steps", "lr", "epochs"]  # where it writes is said elsewhere
    assert "`0.01` | `0.005` | differs: " in rows["lr"] and rows["n_steps"].endswith("| same |")
    assert rows["epochs"].endswith("| the workbench's |")
    assert parse(text) == {"n_steps": "10", "lr": "0.01", "epochs": "8"}


@pytest.mark.slow
def test_every_notebook_of_the_smoke_run_states_the_parameters_the_run_record_holds(smoke_run):
    run_dir = smoke_run[1]
    record = RunRecord.read(run_dir)
    checked = 0
    for nb in record.notebooks:
        executed = json.loads((run_dir / "notebooks" / f"{nb['notebook']}.ipynb").read_text(encoding="utf-8"))
        tables = [
            "".join(out["data"]["text/markdown"])
            for cell in executed["cells"]
            for out in cell.get("outputs", [])
            if HEADING in "".join(out.get("data", {}).get("text/markdown", ""))
        ]
        assert len(tables) == 1, f"{nb['notebook']} shows {len(tables)} parameter tables"
        shown = parse(tables[0])
        for name, value in record.parameters_of(nb["notebook"]).items():
            if name == "run_dir" or shown.get(name, "").endswith("..."):
                continue
            assert name in shown, f"{nb['notebook']}: {name} is in the run record but not in the notebook's table"
            assert ast.literal_eval(shown[name]) == value, f"{nb['notebook']}: {name} {shown[name]}, ran {value!r}"
            checked += 1
    assert checked >= 20


def test_a_value_the_paper_does_not_give_is_not_called_the_same():
    text = parameters_markdown("04_rl_refinement", ["temperature"], {"temperature": 0.0})
    assert "| temperature | `0.0` | not given | the paper does not give it: " in text
    assert parse(text) == {"temperature": "0.0"}
