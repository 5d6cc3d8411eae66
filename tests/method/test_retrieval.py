"""Peer retrieval: exact cosine top-k, never herself, never a validation or test patient."""

import numpy as np
import pytest
import torch

from pmlm_lib.data import filtering, synthetic
from pmlm_lib.method import retrieval


def test_top_k_matches_brute_force_and_excludes_self():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(500, 16))
    queries = pool[:20] + 0.01 * rng.normal(size=(20, 16))
    idx, sims = retrieval.top_k(queries, pool, 5, exclude=np.arange(20), chunk=7)
    cos = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        pool / np.linalg.norm(pool, axis=1, keepdims=True)
    ).T
    cos[np.arange(20), np.arange(20)] = -np.inf
    expected = np.argsort(-cos, axis=1)[:, :5]
    assert (idx == expected).all()
    assert np.allclose(sims, np.take_along_axis(cos, expected, axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()


def test_encoder_has_the_papers_shape():
    enc = retrieval.PatientEncoder(45 * 35)
    linears = [m for m in enc.modules() if isinstance(m, torch.nn.Linear)]
    drops = [m for m in enc.modules() if isinstance(m, torch.nn.Dropout)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(1575, 256), (256, 128)]
    assert drops[0].p == 0.4


@pytest.fixture(scope="module")
def built():
    result = filtering.filter_and_split(synthetic.generate(n_patients=500, seed=4), min_patients=10)
    reps, encoders, standardizer, losses = retrieval.build_representations(
        result.cohort, result.split, epochs=15, device="cpu"
    )
    return result.cohort, result.split, reps, encoders, standardizer


def test_no_self_match_and_no_leakage(built):
    cohort, split, reps, _, _ = built
    train = set(split[split == "train"].index)
    for rep in reps:
        peers = retrieval.peer_table(rep, cohort, split, 10)
        assert not (peers["patient_id"] == peers["peer_id"]).any()
        assert peers["peer_id"].isin(train).all()
        assert peers.groupby("patient_id").size().eq(10).all() and set(peers["patient_id"]) == set(cohort.patient_ids)


def test_pretrained_encoders_find_peers_with_the_same_label(built):
    cohort, split, reps, _, _ = built
    table = retrieval.agreement_table(reps, cohort, split, [5, 10])
    chance = table.loc["chance (random training patients)", "k=10"]
    assert table.loc["encoder (contrastive)", "k=10"] > chance + 0.05
    assert table.loc["encoder (supervised)", "k=10"] > chance + 0.05


def test_encoder_save_load_gives_the_same_vectors(tmp_path, built):
    cohort, split, reps, encoders, standardizer = built
    retrieval.save_encoder(tmp_path / "e.pt", encoders["contrastive"], standardizer, "contrastive", 45)
    enc, std, meta = retrieval.load_encoder(tmp_path / "e.pt")
    from pmlm_lib.data.representation import concatenated

    x = concatenated(cohort, cohort.patient_ids[:5], meta["max_visits"], std)
    rep = next(r for r in reps if r.name == "encoder (contrastive)")
    assert np.allclose(retrieval.encode(enc, x), rep.vectors[:5], atol=1e-5)


def test_bench_writes_its_figures_and_checks_the_targets(tmp_path):
    import json
    import os

    import psutil

    from pmlm_lib.workbench.bench import _earlier_parts, run_bench, targets

    # an earlier bench on this machine measured BERTScore: measuring retrieval now keeps it, with its date
    machine = {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}
    bertscore = {
        "bertscore_pairs_per_second": 23.6,
        "encoder_forward_pairs_per_second": 20.7,
        "bertscore_vs_forward": 1.14,
    }
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text(
        json.dumps({"started": "2026-11-20T10:00:00", "machine": machine, "bertscore": bertscore})
    )
    out = run_bench(["retrieval"], out_dir=tmp_path / "bench", reports_dir=tmp_path)
    result = json.loads((out / "bench.json").read_text())
    assert [r["pool"] for r in result["retrieval"]] == [1_000, 10_000, 100_000, 1_000_000]
    page = (out / "bench.md").read_text()
    assert all(r["seconds_per_query"] > 0 for r in result["retrieval"]) and "Retrieval" in page
    assert result["bertscore"] == bertscore and "## BERTScore — measured 2026-11-20T10:00:00" in page
    assert result["measured"]["retrieval"] > "2026-11-20T10:00:00"
    # figures from another machine are never kept beside this one's
    assert _earlier_parts(out / "bench.json", {**machine, "cpus": machine["cpus"] + 1}, ["retrieval"]) == {}
    report = {
        "first": {"wall_seconds": 1500.0, "peak_memory_mb": 4000},
        "second": {"wall_seconds": 100.0, "peak_memory_mb": 3000},
        "second_run_speedup": 15.0,
        "refinement_time_split": {"share_outside_answers": 0.12},
    }
    met = {t["target"]: t["met"] for t in targets({"report": report})}
    assert met == {
        "whole report (first run) under 20 minutes": False,
        "peak memory under 6 GiB": True,
        "refinement under 10% of its time outside answer generation": False,
        "second run at least 5x faster": True,
    }


def test_peer_drift_says_which_peers_an_encoder_trained_further_would_change(built):
    """Algorithm 1's lines 7-9 measured: the same encoder keeps every peer; one whose weights moved keeps fewer,
    and the table says so for the validation and test patients with their label agreement beside chance."""
    cohort, split, reps, encoders, standardizer = built
    from pmlm_lib.data.representation import concatenated

    ids = list(cohort.patient_ids)
    x = concatenated(cohort, ids, 45, standardizer)
    encoder = encoders["paper"]
    before = retrieval.Representation("as retrieved", ids, retrieval.encode(encoder, x))
    again = retrieval.Representation("again", ids, retrieval.encode(encoder, x))
    same = retrieval.peer_drift(before, again, cohort, split, 10)
    assert list(same.index) == ["validation", "test"]
    assert (same["share of peers kept"] == 1).all() and (same["patients keeping all peers"] == 1).all()
    assert (same["label agreement at k=10, as retrieved"] == same["label agreement at k=10, encoded again"]).all()
    assert (same["patients"] == split.value_counts()[["validation", "test"]].to_numpy()).all()

    torch.manual_seed(1)
    moved = retrieval.PatientEncoder(x.shape[1])  # other weights: another encoder's peers
    other = retrieval.Representation("moved", ids, retrieval.encode(moved, x))
    drift = retrieval.peer_drift(before, other, cohort, split, 10)
    assert (drift["share of peers kept"] < 0.9).all() and (drift["patients keeping all peers"] < 0.5).all()
    assert drift["chance"].between(0, 1).all() and (drift["chance"] == same["chance"]).all()
