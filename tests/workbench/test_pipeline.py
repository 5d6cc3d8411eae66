"""`pmlm report` end to end with papermill, on the real notebooks and the smoke profile."""

import io
import json
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from pmlm_lib.evaluation import systems as ev
from pmlm_lib.workbench.pipeline import PipelineError, run_report
from pmlm_lib.workbench.profiles import parse_overrides

pytestmark = pytest.mark.slow


def test_the_console_gets_one_line_per_notebook_and_the_logs_the_rest(smoke_run):
    _, run_dir, console = smoke_run
    lines = console.strip().splitlines()
    assert len(lines) <= 40 and sum(line.startswith("[pmlm] 0") for line in lines) == 7
    assert all("s, peak" in line for line in lines if line.startswith("[pmlm] 0"))
    log = (run_dir / "logs" / "04_rl_refinement.log").read_text()
    assert "Executing Cell" in log and "epoch 0:" in log  # papermill's cell log and the kernel's output


def test_report_page_shows_findings_first_contents_and_what_the_notebooks_produced(smoke_run):
    reports, run_dir, _ = smoke_run
    page = (run_dir / "index.html").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok" and record["profile"] == "smoke"
    assert (
        page.index("id='findings'")
        < page.index("id='contents'")
        < page.index("id='notebooks'")
        < page.index("<h2 id='01_data_filtering'>")
    )
    assert "PMLM beats" in page or "do not differ by more than" in page
    # what one training is worth: no `pmlm trainings` of the smoke profile beside this run yet
    worth = page[page.index("What one training is worth") : page.index("id='contents'")]
    assert "is not measured yet" in worth and "make trainings" in worth
    # and which of the smoke run's judged trainings the intervals are about (restarts: 2, 3 judging patients)
    assert "this run trained" in worth or "this run kept" in worth
    assert "on 3 validation patients" in worth
    assert "&lt;NA&gt;" not in page and "<NA>" not in page and ">nan<" not in page
    manifest = json.loads((run_dir / "artifacts" / "01_data_filtering.json").read_text())["artifacts"]
    assert {a["name"] for a in manifest} >= {"cohort_summary", "filter_log", "label_counts_by_split", "missingness"}
    for artifact in manifest:
        assert artifact["caption"] in page or artifact["caption"].replace("'", "&#x27;") in page
        assert f"href='#{artifact['name']}'" in page  # in the table of contents
    every = [
        a
        for nb in record["notebooks"]
        for a in json.loads((run_dir / "artifacts" / f"{nb['notebook']}.json").read_text())["artifacts"]
    ]
    assert page.count("data:image/png;base64,") == sum(a["kind"] == "figure" for a in every)
    assert all(nb["status"] == "ok" and nb["wall_seconds"] > 0 for nb in record["notebooks"])
    # the run's record: timings, memory, versions, model checksums, seeds, the plan beside what happened
    nb = record["notebooks"][0]
    assert nb["wall_seconds"] > 0 and nb["peak_memory_mb"] > 50
    assert record["environment"]["packages"]["papermill"] and record["seeds"]["01_data_filtering"] == 0
    assert all(len(m["sha256"]) == 64 for m in record["models"]) and record["models"][0]["sha256"] in page
    assert (run_dir / nb["html"]).exists() and nb["html"] in page
    assert record["plan"]["04_rl_refinement"]["answers"] > 0 and "planned minutes" in page
    from pmlm_lib.workbench.plan import actual

    asked = actual(run_dir)
    assert asked["04_rl_refinement"]["requested"] >= record["plan"]["04_rl_refinement"]["answers"] * 0.5
    assert (reports / "latest").resolve() == run_dir
    assert (run_dir / "cohort" / "exams.parquet").exists() and (run_dir / "split.csv").exists()


def test_every_step_of_the_method_is_in_the_report(smoke_run):
    _, run_dir, _ = smoke_run
    record = json.loads((run_dir / "run.json").read_text())
    assert [nb["notebook"] for nb in record["notebooks"]] == [
        "01_data_filtering",
        "02_predictor_study",
        "03_peer_retrieval",
        "04_rl_refinement",
        "05_evaluation",
        "06_figures",
        "07_case_study",
    ]
    for name in (
        "refinement_curves",
        "edit_heatmap",
        "k_sweep",
        "n_sweep",
        "bertscore_by_system",
        "case1_indicators",
        "case2_indicators",
    ):
        for ext in ("png", "svg"):
            assert (run_dir / "figures" / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    for setting in ("matched", "sampled"):
        table3 = pd.read_csv(run_dir / "tables" / f"table3_{setting}.csv", index_col=0)
        expected = [
            *["without SP", "without PP", "without PR (s_0)", "random deletion", "consensus template", "shuffled edit"],
            "PMLM",
        ]
        assert list(table3.index) == expected
        assert all("±" in v for v in table3["BERTScore-F1"]) and set(table3["patients × seeds"]) == {
            "4 × 1" if setting == "matched" else "4 × 2"
        }
        paired = pd.read_csv(run_dir / "tables" / f"table3_paired_{setting}.csv", index_col=0)
        # the smallest detectable difference: never negative, empty where the differences showed no spread
        # (BLEU-4's are a few ten-thousandths of a point here, 0 once rounded; on 4 patients the refined
        # prompt's 16-token answers can equal a control's for all four), positive wherever they did spread
        assert (paired["n"] == 4).all() and paired["min_detectable_80"].dropna().ge(0).all()
        bert = paired.loc[[i for i in paired.index if "BERTScore" in i]]
        spread = bert["ci95_high"] > bert["ci95_low"]
        assert spread.any() and bert.loc[spread, "min_detectable_80"].gt(0).all()
        assert bert.loc[~spread, "min_detectable_80"].isna().all()
    oracle = pd.read_csv(run_dir / "tables" / "table3_oracle.csv", index_col=0)
    assert set(oracle["patients × seeds"]) == {"2 × 1"}  # the oracle's own sample, in its own table
    scored = pd.read_parquet(run_dir / "answers_scored.parquet")
    assert set(scored["setting"]) == {"matched", "sampled"} and set(
        scored.loc[scored["setting"] == "sampled", "seed"]
    ) == {0, 1}
    assert scored["BERTScore-F1"].between(0, 100).all() and "SmolLM2-135M + LoRA" in set(scored["responder"])
    # the refinement: time accounted for, policy minus random per epoch, the inference mode chosen on validation
    result = json.loads((run_dir / "results" / "rl_refinement.json").read_text())
    assert 0 < result["time_split"]["share_outside_answers"] < 1
    assert all("minus_random" in h for h in result["history"])
    modes = pd.read_csv(run_dir / "tables" / "inference_modes.csv", index_col=0)
    from pmlm_lib.method.refine.selection import choose_mode

    assert result["inference"]["mode"] == choose_mode(modes) and len(modes) == 5  # consensus among them
    # the smoke profile judges each training on 3 validation patients (restarts: 2): the one kept is policy.pt
    restarts = result["restarts"]
    judged = pd.read_csv(run_dir / "tables" / "restarts.csv", index_col=0)
    assert restarts["count"] == 2 and 1 <= len(judged) == len(restarts["selection"]) <= 2
    assert (judged["patients"] == 3).all() and (len(judged) == 1) == bool(judged["accepted"].iloc[0])
    kept = (run_dir / f"policy-restart{restarts['chosen']}.pt").read_bytes()
    assert (run_dir / "policy.pt").read_bytes() == kept
    assert "[-" in (run_dir / "texts" / "refined_prompt_example.txt").read_text()
    # how personal the edits are, what they cut (the smoke profile protects the clinical words: nothing), and the
    # two personalization controls of Table 3: the consensus template (the policy's n most frequent edits) and the
    # shuffled edit (each evaluated patient's s_0 with another evaluated patient's edit set, nobody her own)
    personal = result["personalization"]
    test_patients = int((pd.read_csv(run_dir / "split.csv")["split"] == "test").sum())
    assert personal["prompts"] == test_patients > 0
    assert 1 <= personal["distinct_edit_sets"] <= personal["prompts"] and 0 < personal["share_most_common"] <= 1
    assert personal["share_prediction_cut"] == 0 and personal["share_peer_diagnosis_cut"] == 0
    assert 0 < personal["share_edits_in_consensus"] <= 1
    assert result["protect"] == ["prediction", "peers"]
    from pmlm_lib.evaluation.personalization import apply_edit_set, consensus_template, profile

    refined = pd.read_parquet(run_dir / "refined_prompts.parquet")
    edits = profile(refined)
    consensus = frozenset(tuple(e) for e in result["consensus_template"])
    assert consensus == consensus_template(edits["edit_set"], len(refined.iloc[0]["positions"]))
    answered = scored[scored["setting"] == "matched"].set_index(["system", "patient_id"])["prompt"]
    donors = pd.read_csv(run_dir / "tables" / "shuffled_edit.csv", dtype=str).set_index("patient_id")[
        "edits of patient"
    ]
    assert len(donors) == 4 and (donors.index != donors).all() and set(donors) == set(donors.index)
    for pid, donor in donors.items():
        s0 = refined.loc[pid, "coarse_prompt"]
        assert answered["shuffled edit", pid] == apply_edit_set(
            s0, edits.loc[donor, "edit_set"], ("prediction", "peers")
        )
        assert answered["consensus template", pid] == apply_edit_set(s0, consensus, ("prediction", "peers"))
    assert (run_dir / "tables" / "edit_sets.csv").exists() and (run_dir / "tables" / "personalization.csv").exists()
    # the findings: one sentence per comparison, each with its interval and sample size
    findings = json.loads((run_dir / "artifacts" / "05_evaluation.json").read_text())["findings"]
    sentences = [s for f in findings for s in f["sentences"]]
    assert len(sentences) >= 10 and all("95% CI" in s and "n = " in s for s in sentences)
    # the two cases: one normal patient, one with a condition, each with the doctor's reply beside the answers
    cases = json.loads((run_dir / "results" / "case_study.json").read_text())
    assert cases["labels"][0] == "normal" and cases["labels"][1] != "normal"
    assert cases["cases"][1] in set(scored["patient_id"])


def _notebook(cells, path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('run_dir = "."', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_failure_names_notebook_and_cell_and_resume_keeps_data_and_overrides(tmp_path):
    from conftest import REPO

    from pmlm_lib.data.hospital_export import write_hospital_export

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(REPO / "notebooks" / "01_data_filtering.ipynb", notebooks)
    broken = notebooks / "02_step.ipynb"
    _notebook(["import pandas as pd", "raise ValueError('the threshold is off')"], broken)
    reports = tmp_path / "reports"
    data = write_hospital_export(tmp_path / "export", n_patients=120)
    console = io.StringIO()
    with pytest.raises(PipelineError) as info:
        run_report(
            profile="smoke",
            run="r",
            notebooks_dir=notebooks,
            reports_dir=reports,
            data=str(data),
            console=console,
            overrides=parse_overrides(["01_data_filtering.min_patients=3"]),
        )
    message = str(info.value)
    assert (
        "02_step.ipynb failed in cell [4] of the executed notebook" in message
        and "ValueError: the threshold is off" in message
    )
    assert "--from 02_step" in message and "02_step.log" in message
    kept = reports / "r" / "notebooks" / "02_step.ipynb"
    assert kept.exists() and "the threshold is off" in kept.read_text()
    record = json.loads((reports / "r" / "run.json").read_text())
    assert record["status"] == "failed" and (reports / "r" / "index.html").exists()

    _notebook(
        ["import pandas as pd, pathlib", "n = len(pd.read_csv(pathlib.Path(run_dir) / 'split.csv'))", "assert n > 100"],
        broken,
    )
    run_report(run="r", notebooks_dir=notebooks, reports_dir=reports, start_from="02", console=console)
    record = json.loads((reports / "r" / "run.json").read_text())
    assert record["status"] == "ok" and record["profile"] == "smoke" and record["data"] == str(data)
    assert record["parameters"]["01_data_filtering"]["min_patients"] == 3
    assert [n["status"] for n in record["notebooks"]] == ["ok (earlier run)", "ok"]


def test_data_paths_are_resolved_from_the_callers_directory(tmp_path, monkeypatch):
    from conftest import REPO

    monkeypatch.chdir(REPO)
    run_dir = run_report(
        profile="smoke",
        run="example",
        data="data/example",
        reports_dir=tmp_path,
        only=["01"],
        overrides=parse_overrides(["01_data_filtering.min_patients=2"]),
        console=io.StringIO(),
    )
    assert json.loads((run_dir / "results" / "data_filtering.json").read_text())["summary"]["patients"] > 10
    with pytest.raises(PipelineError, match="no such folder"):
        run_report(profile="smoke", run="x", data="data/nope", reports_dir=tmp_path, console=io.StringIO())


def test_profile_typos_are_errors_not_silence(tmp_path):
    with pytest.raises(PipelineError, match="min_patient.*does not declare"):
        run_report(
            profile="smoke",
            run="x",
            reports_dir=tmp_path,
            overrides=parse_overrides(["01_data_filtering.min_patient=3"]),
        )
    with pytest.raises(PipelineError, match="unknown profile"):
        run_report(profile="nope", reports_dir=tmp_path)


@pytest.mark.parametrize("source", ["pbcseq", "mimic_demo"])
def test_data_notebook_runs_on_the_public_sets(tmp_path, source):
    from conftest import PUBLIC

    if not PUBLIC.exists():
        pytest.skip(f"public data not found at {PUBLIC}")
    # the data, predictor and retrieval notebooks run on real public data (the later steps need doctors' replies)
    run_dir = run_report(
        profile="smoke",
        run=source,
        data=source,
        reports_dir=tmp_path,
        only=["01", "02", "03"],
        overrides=parse_overrides(["01_data_filtering.min_patients=5"]),
        console=io.StringIO(),
    )
    result = json.loads((run_dir / "results" / "data_filtering.json").read_text())
    assert result["data_source"] == source and result["split_method"] == "stratified"
    assert result["has_replies"] is False
    assert sum(result["split_counts"].values()) == result["summary"]["patients"] > 50
    header = (run_dir / "tables" / "cohort_summary.csv").read_text().splitlines()[0]
    assert "paper" not in header  # the paper's counts describe its own cohort, not a public set
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(predictions) == result["summary"]["patients"]
    assert (run_dir / "coarse_prompts.parquet").exists()
    if source == "pbcseq":
        assert set(predictions["predicted"]) <= {"stage 1", "stage 2", "stage 3", "stage 4"}


def test_a_hospital_export_runs_as_it_comes(tmp_path):
    """Numeric ids with leading zeros, hourly rows, day-first dates, GB18030 with Chinese labels,
    semicolons and a patient without examinations: notebooks 01-03 without replies, all seven with."""
    from pmlm_lib.data.hospital_export import CHINESE_LABELS, write_hospital_export

    bare = write_hospital_export(tmp_path / "bare", n_patients=260, seed=2)
    run_dir = run_report(
        profile="smoke",
        run="bare",
        data=str(bare),
        reports_dir=tmp_path / "reports",
        only=["01", "02", "03"],
        overrides={"02_predictor_study": {"predictors": ["summary_gbm"]}},  # the data, not the predictors, on trial
        console=io.StringIO(),
    )
    log = pd.read_csv(run_dir / "tables" / "filter_log.csv")
    assert log["reason"].str.contains("patients without examinations removed").any()
    assert log["reason"].str.contains("merged into one").any() and log["reason"].str.contains("day/month/year").any()
    coarse = pd.read_parquet(run_dir / "coarse_prompts.parquet")
    assert coarse.index.str.fullmatch(r"0\d{5}").all()  # ids keep their leading zeros through every file
    assert any(label in coarse["prompt"].iloc[0] for label in CHINESE_LABELS.values())
    with pytest.raises(PipelineError, match="reference replies"):
        run_report(run="bare", reports_dir=tmp_path / "reports", start_from="04", only=["04"], console=io.StringIO())

    profile = tmp_path / "hospital.yaml"
    profile.write_text(
        "extends: default\ndescription: a hospital export, smoke-sized\nparameters:\n"
        + "".join(
            f"  {nb}:\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in values.items())
            for nb, values in _smoke_sized().items()
        )
    )
    with_replies = write_hospital_export(tmp_path / "replies", n_patients=260, seed=2, replies=True)
    run_dir = run_report(
        profile=str(profile),
        run="full",
        data=str(with_replies),
        reports_dir=tmp_path / "reports",
        console=io.StringIO(),
    )
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok" and record["profile"] == str(profile) and len(record["notebooks"]) == 7
    assert record["parameters"]["04_rl_refinement"]["lr"] == 0.01  # from the default profile it extends
    scored = pd.read_parquet(run_dir / "answers_scored.parquet")
    assert scored["patient_id"].str.fullmatch(r"0\d{5}").all()


def _smoke_sized() -> dict:
    """The smoke profile's sizes, written over the default profile by a profile file; the parts the smoke
    run already covers (the LM predictor, the fine-tuned LM, the oracle, a second sampled seed) left out."""
    from pmlm_lib.workbench.profiles import load_profile

    smoke = load_profile("smoke")["parameters"]
    sized = {nb: {k: v for k, v in values.items() if k != "data_source"} for nb, values in smoke.items()}
    sized["02_predictor_study"]["predictors"] = ["summary_gbm"]
    sized["05_evaluation"].update({"finetune_patients": 0, "greedy_patients": 0, "sampled_seeds": [0]})
    return sized


def test_a_run_against_endpoints_keeps_the_key_out_of_every_file_and_raw_values_on_the_machine(
    smoke_run, tmp_path, monkeypatch
):
    """Notebook 04 answers through an OpenAI-compatible endpoint (a real llama.cpp server on 127.0.0.1)
    with a key from the environment; notebook 05 adds an endpoint that echoes the key in its 401 error: no file of
    the run or the cache holds the key, and nothing with raw examination values reached the remote endpoints."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from pmlm_lib.common.weights import cache_dir
    from pmlm_lib.llm.responders import RawValueGuard
    from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

    # on a copy of the smoke run: its notebooks 04 and 05 are run again here, and the other tests (the
    # pinned results, the browser) read the smoke run as the smoke profile made it
    reports = tmp_path / "reports"
    run_dir = Path(shutil.copytree(smoke_run[1], reports / "smoke", symlinks=True))
    secret = "sk-pmlm-scan-4b1d9e77a2"
    monkeypatch.setenv("PMLM_SCAN_KEY", secret)
    received = []

    class Faulty(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            kind = self.path.split("/")[1]
            if kind == "hang":
                threading.Event().wait(5)
                return
            auth = self.headers.get("Authorization")
            status, body = (
                (401, f"bad credentials: Authorization: {auth}") if kind == "echo" else (503, f"overloaded ({auth})")
            )
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

    faulty = ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    faulty.daemon_threads = True
    threading.Thread(target=faulty.serve_forever, daemon=True).start()
    server = LlamaCppResponder(n_parallel=2, ctx_per_slot=2048, use_cache=False)
    # as many requests at once as the server has slots: a request's deadline then counts its own answer,
    # not its wait in the server's queue (on a busy machine that wait alone can pass 90 s)
    spec = {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "smollm2",
        "api_key_env": "PMLM_SCAN_KEY",
        "concurrency": 2,
    }
    run_report(
        profile="smoke",
        run="smoke",
        reports_dir=reports,
        start_from="04",
        only=["04", "05"],
        # the inference mode named, as the default profile does: no validation answers spent on choosing it
        overrides={
            "04_rl_refinement": {"responder": spec, "inference": "greedy"},
            "05_evaluation": {"responders": {"endpoint": spec}},
        },
        console=io.StringIO(),
    )
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "ok"
    result = json.loads((run_dir / "results" / "rl_refinement.json").read_text())
    assert result["responder"]["backend"] == "openai-compatible"
    assert result["inference"]["mode"] == "greedy" and result["inference"]["validation"] == []
    # at most the episodes (2 epochs x 4) and the pool's s_0 and random deletion (2 x 6): no validation answers
    assert result["answers"]["answered"] + result["answers"]["from_cache"] <= 4 * 2 + 2 * 6
    assert "endpoint" in set(pd.read_parquet(run_dir / "answers_scored.parquet")["responder"])
    port = faulty.server_address[1]
    # through the whole pipeline (notebook, traceback, logs, record) the endpoint that echoes the key; the 5xx
    # with the key in its body and the one that hangs are the responder's own tests (tests/llm/test_responders.py)
    for kind in ("echo",):
        bad = {
            "backend": "openai",
            "base_url": f"http://localhost:{port}/{kind}/v1",
            "model": "m",
            "api_key_env": "PMLM_SCAN_KEY",
            "local": False,
            "timeout": 1.0,
            "backoff": 0.01,
            "max_retries": 1,
        }
        with pytest.raises(PipelineError, match="EndpointError"):
            run_report(
                run="smoke",
                reports_dir=reports,
                start_from="05",
                only=["05"],
                overrides={"05_evaluation": {"responders": {kind: bad}}},
                console=io.StringIO(),
            )
    files = [p for p in run_dir.rglob("*") if p.is_file()] + [
        p for p in cache_dir().glob("answers.sqlite*") if p.is_file()
    ]
    assert len(files) > 20
    assert [str(p) for p in files if secret.encode() in p.read_bytes()] == []
    guard = RawValueGuard().extend(pd.read_parquet(run_dir / "cohort" / "exams.parquet").columns[2:])
    assert received and not any(guard(json.loads(body)["messages"][0]["content"]) for body in received)
    server.close()
    faulty.shutdown()


def test_two_responders_each_get_their_own_refinement_table_1_rows_and_the_transfer_table(smoke_run, tmp_path):
    """A profile with two real LLMs (the bundled SmolLM2 and Gemma 3 270M): notebook 04 runs once for each, notebook
    05 answers each with the prompts refined for it (Table 1) and with the other's (the transfer table)."""
    import yaml

    reports = tmp_path / "reports"
    run_dir = Path(shutil.copytree(smoke_run[1], reports / "smoke", symlinks=True))
    profile = tmp_path / "two.yaml"
    responders = {"SmolLM2-135M": "bundled", "Gemma3-270M": {"backend": "llamacpp", "model": "gemma3-270m"}}
    lean = {"05_evaluation": {"finetune_patients": 0, "greedy_patients": 0, "sampled_seeds": [0]}}  # covered elsewhere
    profile.write_text(
        yaml.safe_dump({"extends": "smoke", "responders": responders, "parameters": lean}, sort_keys=False)
    )
    console = io.StringIO()
    run_report(
        profile=str(profile), run="smoke", reports_dir=reports, start_from="04", only=["04", "05"], console=console
    )
    record = json.loads((run_dir / "run.json").read_text())
    ran = {nb["notebook"]: nb for nb in record["notebooks"]}
    assert ran["04_rl_refinement"]["status"] == ran["04_rl_refinement@Gemma3-270M"]["status"] == "ok"
    assert "[pmlm] 04_rl_refinement@Gemma3-270M: ok in" in console.getvalue()
    main = json.loads((run_dir / "results" / "rl_refinement.json").read_text())
    gemma = json.loads((run_dir / "results" / "rl_refinement@Gemma3-270M.json").read_text())
    assert main["responder_name"] == "SmolLM2-135M" and main["responder"]["model"].startswith("smollm2")
    assert gemma["responder_name"] == "Gemma3-270M" and gemma["responder"]["model"].startswith("gemma-3-270m")
    # each refinement keeps its own policy, prompts and report section
    assert (run_dir / "policy.pt").exists() and (run_dir / "policy@Gemma3-270M.pt").exists()
    sections = {
        step: json.loads((run_dir / "artifacts" / f"{step}.json").read_text())
        for step in ("04_rl_refinement", "04_rl_refinement@Gemma3-270M")
    }
    assert sections["04_rl_refinement@Gemma3-270M"]["artifacts"][0]["name"].endswith("@Gemma3-270M")
    assert not any("@" in a["name"] for a in sections["04_rl_refinement"]["artifacts"])
    scored = pd.read_parquet(run_dir / "answers_scored.parquet")
    matched = scored[scored["setting"] == "matched"]
    patients = matched[matched["system"] == ev.PMLM]["patient_id"].nunique()
    for responder, refined in (
        ("SmolLM2-135M", "refined_prompts.parquet"),
        ("Gemma3-270M", "refined_prompts@Gemma3-270M.parquet"),
    ):
        own = matched[(matched["responder"] == responder) & (matched["system"] == ev.PMLM)].set_index("patient_id")[
            "prompt"
        ]
        assert own.to_dict() == pd.read_parquet(run_dir / refined)["refined_prompt"].loc[own.index].to_dict()
        assert {ev.BEFORE, ev.PMLM} <= set(matched[matched["responder"] == responder]["system"])
    table1 = pd.read_csv(run_dir / "tables" / "table1_matched.csv")
    assert {"SmolLM2-135M · PMLM", "Gemma3-270M · PMLM", "Gemma3-270M · before (Figure 5, raw data)"} <= set(
        table1.iloc[:, 0]
    )
    transfer = pd.read_csv(run_dir / "tables" / "table1_transfer.csv").set_index("answers · prompts refined for")
    assert set(transfer.index) == {"SmolLM2-135M · Gemma3-270M", "Gemma3-270M · SmolLM2-135M"}
    assert (transfer["patients"] == patients).all() and transfer["own − transferred"].notna().all()
    spent = pd.read_csv(run_dir / "tables" / "answers_by_responder.csv", index_col=0)
    assert list(spent.index) == ["SmolLM2-135M", "Gemma3-270M"] and (spent["answered"] + spent["from_cache"] > 0).all()
    findings = json.loads((run_dir / "artifacts" / "05_evaluation.json").read_text())["findings"]
    carried = [f for f in findings if f["heading"].startswith("Does a refinement carry over")]
    assert carried and carried[0]["sentences"][0].startswith("SmolLM2-135M: ")


# ---- recorded results: the smoke run's deterministic figures, pinned ---------------------------------------
PINNED = Path(__file__).resolve().parents[1] / "pinned" / "smoke.json"


def recorded_results(run_dir) -> dict:
    """The figures of a smoke run that do not depend on timing: what a change to the method would move."""
    from pmlm_lib.workbench.plan import actual

    data = json.loads((run_dir / "results" / "data_filtering.json").read_text())
    study = json.loads((run_dir / "results" / "predictor_study.json").read_text())
    chosen = next(row for row in study["table"] if row["predictor"] == study["chosen"])
    peers = json.loads((run_dir / "results" / "peer_retrieval.json").read_text())
    agreement = peers["agreement"][f"encoder ({peers['encoder_mode']})"]["k=10"]
    chance = peers["agreement"]["chance (random training patients)"]["k=10"]
    asked = actual(run_dir)
    return {
        "01 patients": data["summary"]["patients"],
        "01 records": data["summary"]["records"],
        "01 indicators": data["summary"]["indicators"],
        "01 labels": data["summary"]["labels"],
        **{f"01 {split} patients": n for split, n in sorted(data["split_counts"].items())},
        "02 chosen predictor": study["chosen"],
        "02 chosen validation macro-F1": round(chosen["macro-F1 (validation)"], 2),
        "03 peer agreement at k=10 over chance": round(agreement - chance, 3),
        **{f"{nb[:2]} answers requested": asked[nb]["requested"] for nb in sorted(asked)},
    }


TOLERANCE = {"02 chosen validation macro-F1": 2.0, "03 peer agreement at k=10 over chance": 0.02}


def test_the_smoke_runs_recorded_results_have_not_moved(smoke_run):
    """Pinned figures of the smoke run (tests/pinned/smoke.json): a change that moves one fails here, naming it.
    After an intended change, write the new figures with:
    python tests/workbench/test_pipeline.py reports/<smoke run>."""
    _, run_dir, _ = smoke_run
    pinned, now = json.loads(PINNED.read_text()), recorded_results(run_dir)
    moved = [
        f"{name}: pinned {pinned[name]!r}, now {now.get(name)!r}"
        for name in pinned
        if not (
            now.get(name) == pinned[name]
            or (name in TOLERANCE and now.get(name) is not None and abs(now[name] - pinned[name]) <= TOLERANCE[name])
        )
    ]
    assert not moved, "recorded results moved:\n" + "\n".join(moved)
    assert (
        now["03 peer agreement at k=10 over chance"] > 0
    )  # peers share the patient's condition more often than chance


if __name__ == "__main__":
    import sys

    PINNED.write_text(json.dumps(recorded_results(Path(sys.argv[1])), indent=1) + "\n")
    print(PINNED.read_text())
