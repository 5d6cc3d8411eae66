"""Notebook 07's explorer on the smoke run: every test patient, the filters and sorting of the list, a peer
opened with her history and reply, any indicator with the chosen trimester's reference band, and a case exported
as one HTML file that opens without Jupyter."""

import html
import re
import shutil

import pandas as pd
import pytest

from pmlm_lib.data.indicators import INDICATOR_BY_NAME
from pmlm_lib.workbench.artifacts import RunFolder
from pmlm_lib.workbench.casestudy import GAIN, CaseData, explorer, filter_patients

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(smoke_run, tmp_path_factory):
    """The explorer's data on a copy of the smoke run (an export writes into the run folder)."""
    copy = shutil.copytree(smoke_run[1], tmp_path_factory.mktemp("explorer") / "smoke", symlinks=True)
    return CaseData.load(RunFolder(copy, "07_case_study"))


def _controls(box):
    filters, (sort, count), dropdown = box.children[0].children, box.children[1].children, box.children[2]
    return filters, sort, count, dropdown


def test_the_explorer_shows_every_test_patient_and_answers_where_evaluated(smoke_run, data):
    run_dir = smoke_run[1]
    shown = []
    _, _, count, dropdown = _controls(explorer(data, render=shown.append))
    split = pd.read_csv(run_dir / "split.csv", dtype={"patient_id": str}).set_index("patient_id")["split"]
    assert len(dropdown.options) == (split == "test").sum() > len(data.evaluated()) >= 2
    assert count.value == f"{len(dropdown.options)} of {len(dropdown.options)} test patients"
    assert shown == [data.evaluated()[0]]
    other = next(p for p in data.patients() if p not in data.evaluated())
    dropdown.value = other
    assert shown[-1] == other and data.answers(other).empty and "[-" in data.marked_prompt(other)
    assert len(data.answers(data.evaluated()[0])) > 0


def test_the_patient_list_filters_and_sorts_as_she_asks(data):
    table = data.patient_table
    assert sorted(table.index) == data.patients()
    assert sorted(table.index[table[GAIN].notna()]) == data.evaluated()
    assert filter_patients(table, answered_only=True) == data.evaluated()
    diagnosis = table["diagnosis"].value_counts().index[0]
    assert set(table.loc[filter_patients(table, diagnosis=diagnosis), "diagnosis"]) == {diagnosis}
    right, wrong = filter_patients(table, prediction="right"), filter_patients(table, prediction="wrong")
    assert sorted(right + wrong) == data.patients() and all(table.loc[right, "prediction right"])
    many = int(table["visits"].median())
    assert (table.loc[filter_patients(table, min_visits=many), "visits"] >= many).all()
    gains = table.loc[filter_patients(table, sort=f"{GAIN} (largest first)"), GAIN]
    assert gains.dropna().is_monotonic_decreasing and gains.iloc[: gains.notna().sum()].notna().all()

    # the widgets do the same: a diagnosis chosen, the list and its count follow, and the view shows one of them
    shown = []
    filters, _, count, dropdown = _controls(explorer(data, render=shown.append))
    filters[0].value = diagnosis
    expected = filter_patients(table, diagnosis=diagnosis)
    assert [value for _, value in dropdown.options] == expected
    assert count.value == f"{len(expected)} of {len(table)} test patients" and shown[-1] in expected


def test_a_peer_opens_with_her_history_and_reply(data):
    pid = data.patients()[0]
    peers = data.peer_ids(pid)
    assert len(peers) == data.k and pid not in peers
    peer = peers[0]
    history = data.history(peer)
    assert len(history) == int((data.cohort.exams["patient_id"] == peer).sum()) > 0
    assert history.notna().any().all()  # only the indicators she has values for
    summary = data.peer_summary(peer, pid)
    assert summary.startswith(f"**Peer {peer}** of {pid} (rank 1") and data.labels[peer] in summary


def test_any_indicator_is_plotted_against_the_chosen_trimesters_range(data):
    pid = data.patients()[0]
    chosen = [i for i in data.cohort.indicators if i not in data.default_indicators()][:2]
    for trimester, ordinal in ((1, "first"), (3, "third")):
        fig = data.figure(pid, chosen, trimester)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title().split(" (")[0] for ax in panels] == [INDICATOR_BY_NAME[i].label for i in chosen]
        assert f"the {ordinal}-trimester reference range" in fig._suptitle.get_text()
        patch = panels[0].patches[0]  # the band, in data units up the y axis
        band = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 1]
        assert (band.min(), band.max()) == pytest.approx(INDICATOR_BY_NAME[chosen[0]].range_for(trimester))


def test_an_exported_case_is_one_self_contained_page(data):
    pid = data.evaluated()[0]
    path = data.inputs.run.root / "cases" / f"{pid}.html"
    from pmlm_lib.workbench.case_export import export_case

    assert export_case(data, pid) == path
    page = path.read_text(encoding="utf-8")
    assert f"Case {pid}" in page and "data:image/png;base64," in page and "BERTScore-F1" in page
    # nothing to fetch and nothing to run: it opens anywhere, without Jupyter or a network
    assert "<script" not in page and not re.search(r"(src|href)=['\"]?(https?:|/|\.\.)", page)
    for part in (data.refined.loc[pid, "refined_prompt"], data.reply(pid)):
        assert html.escape(part) in page


def test_her_edits_are_shown_beside_the_consensus_and_the_shuffled_edit_and_every_answer_whole(data):
    """For an evaluated patient: the note names her edits, the consensus template, and whose edits the shuffled
    control gave her; her answers under those two controls are in the answers with their scores; and an answer of
    several hundred characters is shown whole (pandas' own table cut each at 50)."""
    from pmlm_lib.workbench.case_export import answers_html

    pid = data.evaluated()[0]
    note = data.edit_note(pid)
    donor = data.shuffled_donors[pid]
    assert donor != pid and f"the edits of patient {donor}" in note and "The consensus template" in note
    systems = set(data.answers(pid).index.get_level_values("system"))
    assert {"shuffled edit", "consensus template", "PMLM"} <= systems
    long = "Keep taking folic acid and iron; " * 12
    answers = pd.DataFrame(
        {"answer": [long], "BERTScore-F1": [51.23], "ROUGE-L": [20.0]},
        index=pd.MultiIndex.from_tuples([("SmolLM2", "your prompt")]),
    )
    page = answers_html(answers, "the doctor's reply")
    assert long.strip() in page and "BERTScore-F1 51.2, ROUGE-L 20.0" in page and "BLEU-4" not in page
