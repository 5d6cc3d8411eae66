"""House rules for the stored notebooks."""

import ast
import json

import pytest
from conftest import REPO

from pmlm_lib.workbench.notebook_hygiene import problems

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs_and_with_parameters_cell(path):
    assert problems(path) == []
    first_code = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert "parameters" in first_code["metadata"]["tags"], "the parameters cell must be the first code cell"
    assert "run_dir" in "".join(first_code["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_stay_thin(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"{path.name} defines {defs[0].name}: move it into pmlm_lib with a test"
        loops = [n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.While))]
        assert all((n.end_lineno - n.lineno) < 6 for n in loops), f"{path.name} has a long loop: move it into pmlm_lib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """A parameter papermill cannot parse (e.g. a comment with '=') would silently ignore the profile's value."""
    import papermill

    first_code = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assigned = [
        t.id for n in ast.parse("".join(first_code["source"])).body if isinstance(n, ast.Assign) for t in n.targets
    ]
    assert sorted(papermill.inspect_notebook(str(path))) == sorted(assigned)
