"""`pmlm report` end to end with papermill, on the real notebooks and the smoke profile."""

import json
import shutil

import nbformat
import pandas as pd
import pytest

from pmlm_lib.pipeline import PipelineError, parse_overrides, run_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    run_dir = run_report(profile="smoke", run="smoke", reports_dir=reports)
    return reports, run_dir


def test_report_page_shows_what_the_notebooks_produced(smoke_run):
    reports, run_dir = smoke_run
    page = (run_dir / "index.html").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok" and record["profile"] == "smoke"
    manifest = json.loads((run_dir / "artifacts" / "01_data_filtering.json").read_text())["artifacts"]
    assert {a["name"] for a in manifest} >= {"cohort_summary", "filter_log", "label_counts_by_split", "missingness"}
    for artifact in manifest:
        assert artifact["caption"] in page or artifact["caption"].replace("'", "&#x27;") in page
    every = [a for nb in record["notebooks"] for a in json.loads((run_dir / "artifacts" / f"{nb['notebook']}.json").read_text())["artifacts"]]
    assert {nb["notebook"] for nb in record["notebooks"]} >= {"01_data_filtering", "02_predictor_study", "03_peer_retrieval"}
    assert page.count("data:image/png;base64,") == sum(a["kind"] == "figure" for a in every)
    assert all(nb["status"] == "ok" and nb["wall_seconds"] > 0 for nb in record["notebooks"])
    # the run's record: timings, memory, versions, model checksums, seeds
    nb = record["notebooks"][0]
    assert nb["wall_seconds"] > 0 and nb["peak_memory_mb"] > 50
    assert record["environment"]["packages"]["papermill"] and record["seeds"]["01_data_filtering"] == 0
    assert all(len(m["sha256"]) == 64 for m in record["models"]) and record["models"][0]["sha256"] in page
    assert (run_dir / nb["html"]).exists() and nb["html"] in page
    assert (reports / "latest").resolve() == run_dir
    # the notebook wrote the cohort and split that later notebooks read
    assert (run_dir / "cohort" / "exams.parquet").exists() and (run_dir / "split.csv").exists()


def test_every_step_of_the_method_is_in_the_report(smoke_run):
    _, run_dir = smoke_run
    record = json.loads((run_dir / "run.json").read_text())
    assert [nb["notebook"] for nb in record["notebooks"]] == ["01_data_filtering", "02_predictor_study", "03_peer_retrieval",
                                                             "04_rl_refinement", "05_evaluation", "06_figures", "07_case_study"]
    for name in ("refinement_curves", "edit_heatmap", "k_sweep", "n_sweep", "bertscore_by_system", "case1_indicators", "case2_indicators"):
        for ext in ("png", "svg"):
            assert (run_dir / "figures" / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    table3 = pd.read_csv(run_dir / "tables" / "table3.csv", index_col=0)
    assert list(table3.index) == ["without SP", "without PP", "without PR (s_0)", "random deletion", "greedy search (oracle)", "PMLM"]
    assert all("±" in v for v in table3["BERTScore-F1"])
    paired = pd.read_csv(run_dir / "tables" / "table1_paired.csv", index_col=0)
    assert paired["wilcoxon_p"].between(0, 1).all() and (paired["n"] == 4).all()
    scored = pd.read_parquet(run_dir / "answers_scored.parquet")
    assert set(scored["seed"]) == {0, 1} and scored["BERTScore-F1"].between(0, 100).all()
    assert "SmolLM2-135M + LoRA" in set(scored["responder"])
    # the refinement's time is accounted for, and its example shows marked edits
    result = json.loads((run_dir / "results" / "rl_refinement.json").read_text())
    assert 0 < result["time_split"]["share_outside_answers"] < 1
    assert "[-" in (run_dir / "texts" / "refined_prompt_example.txt").read_text()
    # the two cases: one normal patient, one with a condition, each with the doctor's reply beside the answers
    cases = json.loads((run_dir / "results" / "case_study.json").read_text())
    assert cases["labels"][0] == "normal" and cases["labels"][1] != "normal"
    evaluated = set(scored["patient_id"])
    for i, case in enumerate(cases["cases"], start=1):
        assert (run_dir / "texts" / f"case{i}_prompt.txt").exists()
        if case in evaluated:  # a normal case may come from outside the evaluated sample (then it has no answers)
            assert "doctor" in set(pd.read_csv(run_dir / "tables" / f"case{i}_answers.csv")["responder"])
    assert cases["cases"][1] in evaluated


def test_the_explorer_renders_the_chosen_patient(smoke_run):
    from pmlm_lib.artifacts import RunFolder
    from pmlm_lib.casestudy import CaseData, explorer

    _, run_dir = smoke_run
    data = CaseData.load(RunFolder(run_dir, "07_case_study"))
    shown = []
    box = explorer(data, render=shown.append)
    dropdown = box.children[0]
    assert shown == [data.patients()[0]] and len(dropdown.options) == len(data.patients()) >= 2
    dropdown.value = data.patients()[1]
    assert shown[-1] == data.patients()[1]
    assert "[-" in data.marked_prompt(shown[-1]) and len(data.answers(shown[-1])) > 0


def _notebook(cells, path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('run_dir = "."', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_failure_names_notebook_and_cell_and_resume_keeps_earlier_outputs(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(__import__("conftest").REPO / "notebooks" / "01_data_filtering.ipynb", notebooks)
    broken = notebooks / "02_step.ipynb"
    _notebook(["import pandas as pd", "raise ValueError('the threshold is off')"], broken)
    reports = tmp_path / "reports"
    with pytest.raises(PipelineError) as info:
        run_report(profile="smoke", run="r", notebooks_dir=notebooks, reports_dir=reports)
    message = str(info.value)
    assert "02_step.ipynb failed in cell [4] of the executed notebook" in message and "ValueError: the threshold is off" in message
    assert "--from 02_step" in message
    kept = reports / "r" / "notebooks" / "02_step.ipynb"
    assert kept.exists() and "the threshold is off" in kept.read_text()
    record = json.loads((reports / "r" / "run.json").read_text())
    assert record["status"] == "failed" and (reports / "r" / "index.html").exists()

    _notebook(["import pandas as pd, pathlib", "n = len(pd.read_csv(pathlib.Path(run_dir) / 'split.csv'))", "assert n > 100"], broken)
    run_report(profile="smoke", run="r", notebooks_dir=notebooks, reports_dir=reports, start_from="02")
    record = json.loads((reports / "r" / "run.json").read_text())
    assert record["status"] == "ok"
    assert [n["status"] for n in record["notebooks"]] == ["ok (earlier run)", "ok"]


def test_profile_typos_are_errors_not_silence(tmp_path):
    with pytest.raises(PipelineError, match="min_patient.*does not declare"):
        run_report(profile="smoke", run="x", reports_dir=tmp_path, overrides=parse_overrides(["01_data_filtering.min_patient=3"]))
    with pytest.raises(PipelineError, match="unknown profile"):
        run_report(profile="nope", reports_dir=tmp_path)


@pytest.mark.parametrize("source", ["pbcseq", "mimic_demo"])
def test_data_notebook_runs_on_the_public_sets(tmp_path, source):
    from conftest import PUBLIC

    if not PUBLIC.exists():
        pytest.skip(f"public data not found at {PUBLIC}")
    # the data and predictor notebooks run on real public data (the later steps need doctors' replies)
    run_dir = run_report(profile="smoke", run=source, data=source, reports_dir=tmp_path,
                         only=["01", "02"] if source == "pbcseq" else ["01"],
                         overrides=parse_overrides(["01_data_filtering.min_patients=5"]))
    result = json.loads((run_dir / "results" / "data_filtering.json").read_text())
    assert result["data_source"] == source and result["split_method"] == "stratified"
    assert result["has_replies"] is False
    assert sum(result["split_counts"].values()) == result["summary"]["patients"] > 50
    header = (run_dir / "tables" / "cohort_summary.csv").read_text().splitlines()[0]
    assert "paper" not in header  # the paper's counts describe its own cohort, not a public set
    if source == "pbcseq":
        predictions = pd.read_csv(run_dir / "predictions.csv")
        assert len(predictions) == result["summary"]["patients"]
        assert set(predictions["predicted"]) <= {"stage 1", "stage 2", "stage 3", "stage 4"}


def test_a_run_against_an_endpoint_keeps_the_key_out_of_every_file(smoke_run, tmp_path, monkeypatch):
    """Notebook 04 answers through an OpenAI-compatible endpoint (a real llama.cpp server on
    127.0.0.1) with a key from the environment; no file of the run or the cache holds the key."""
    from pmlm_lib.models import cache_dir
    from pmlm_lib.responders.llamacpp import LlamaCppResponder

    reports, run_dir = smoke_run
    secret = "sk-pmlm-scan-4b1d9e77a2"
    monkeypatch.setenv("PMLM_SCAN_KEY", secret)
    server = LlamaCppResponder(n_parallel=2, ctx_per_slot=2048, use_cache=False)
    spec = {"backend": "openai", "base_url": server.base_url, "model": "smollm2", "api_key_env": "PMLM_SCAN_KEY"}
    run_report(profile="smoke", run="smoke", reports_dir=reports, start_from="04", only=["04", "05"],
               overrides={"04_rl_refinement": {"responder": spec}, "05_evaluation": {"responders": {"endpoint": spec}}})
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok"
    result = json.loads((run_dir / "results" / "rl_refinement.json").read_text())
    assert result["responder"]["backend"] == "openai-compatible"
    assert "endpoint" in set(pd.read_parquet(run_dir / "answers_scored.parquet")["responder"])
    files = [p for p in run_dir.rglob("*") if p.is_file()] + [p for p in cache_dir().glob("answers.sqlite*") if p.is_file()]
    assert len(files) > 20
    leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert leaks == []
    server.close()
