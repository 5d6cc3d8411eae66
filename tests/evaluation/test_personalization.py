"""How personal the refinement's edits are, what clinical content they cut, and the options that learn
and protect: the group baseline (RLOO) and protected clinical spans, on the real word embedder."""

import numpy as np
import pandas as pd
import pytest
import torch

from pmlm_lib.data.prompts import clinical_kinds, coarse_prompt, join, segment
from pmlm_lib.evaluation import personalization
from pmlm_lib.llm.responders import Decoding
from pmlm_lib.method.refine.editor import EditTask, PromptEditor
from pmlm_lib.method.refine.refiner import Episode, RefineConfig, Refiner, leave_one_out
from pmlm_lib.method.refine.reward import AnswerReward
from pmlm_lib.method.retrieval import PatientEncoder

PEERS = [("uterine rupture", 0.91), ("acute fetal distress", 0.88), ("normal", 0.80)]


@pytest.fixture(scope="module")
def embedder():
    from pmlm_lib.method.refine.embedding import WordEmbedder

    return WordEmbedder(device="cpu")


def _words_of(prompt, kind):
    return [w.strip(" .,") for w, k in zip(segment(prompt), clinical_kinds(prompt)) if k == kind]


def test_clinical_words_are_found_where_the_templates_put_them():
    prompt = coarse_prompt("premature rupture of membranes", PEERS)
    assert _words_of(prompt, "prediction") == ["premature", "rupture", "of", "membranes"]
    assert _words_of(prompt, "peers") == ["uterine", "rupture", "acute", "fetal", "distress", "normal"]
    assert _words_of(coarse_prompt(None, PEERS), "prediction") == []  # the ablation without the prediction
    assert _words_of(coarse_prompt("normal", []), "peers") == []


def _deleting(prompt, targets):
    """Positions (in the state at each step) that delete these s_0 word indices in this order."""
    alive, positions = list(range(len(segment(prompt)))), []
    for t in targets:
        positions.append(alive.index(t))
        alive.remove(t)
    return positions


def test_the_same_edit_of_two_patients_is_one_edit_set_and_the_consensus_reproduces_it():
    a, b = coarse_prompt("gestational diabetes", PEERS), coarse_prompt("thalassemia minor", PEERS[:2])
    sim = lambda p: [i for i, w in enumerate(segment(p)) if "similarity" in w]  # noqa: E731
    med = lambda p: [i for i, w in enumerate(segment(p)) if w.startswith("medical")]  # noqa: E731
    rows = {}
    for pid, p in (("A", a), ("B", b)):
        targets = [sim(p)[1], med(p)[0], sim(p)[0]]  # the 2nd "similarity", "medical", the 1st "similarity"
        rows[pid] = {"coarse_prompt": p, "positions": _deleting(p, targets), "operations": None, "words": None}
    refined = pd.DataFrame.from_dict(rows, orient="index")
    prof = personalization.profile(refined)
    assert prof.loc["A", "edit_set"] == prof.loc["B", "edit_set"]
    template = personalization.consensus_template(prof["edit_set"], 3)
    for p in (a, b):
        words = segment(p)
        expected = join([w for i, w in enumerate(words) if i not in {sim(p)[1], med(p)[0], sim(p)[0]}])
        assert personalization.apply_edit_set(p, template) == expected
    # a prompt without peers keeps what the template cannot name (no "similarity"), and loses the rest
    no_peers = coarse_prompt("normal", [])
    assert personalization.apply_edit_set(no_peers, template) == no_peers.replace("medical ", "", 1)
    summary = personalization.summary(prof)
    assert summary["distinct_edit_sets"] == 1 and summary["share_most_common"] == 1.0
    assert "'similarity' (1st, 2nd)" in summary["most_common"] and summary["share_prediction_cut"] == 0.0


def test_cuts_into_the_prediction_and_the_peers_diagnoses_are_counted():
    p = coarse_prompt("premature rupture of membranes", PEERS)
    kinds = clinical_kinds(p)
    first_prediction = kinds.index("prediction")
    first_peer = kinds.index("peers")
    refined = pd.DataFrame.from_dict(
        {
            "cuts both": {"coarse_prompt": p, "positions": _deleting(p, [first_peer, first_prediction])},
            "cuts none": {"coarse_prompt": p, "positions": _deleting(p, [0, 1])},
        },
        orient="index",
    )
    prof = personalization.profile(refined)
    assert prof.loc["cuts both", ["prediction_words_cut", "peer_words_cut"]].tolist() == [1, 1]
    assert prof.loc["cuts none", ["prediction_words_cut", "peer_words_cut"]].tolist() == [0, 0]
    s = personalization.summary(prof)
    assert s["share_prediction_cut"] == 0.5 and s["share_peer_diagnosis_cut"] == 0.5 and s["distinct_edit_sets"] == 2
    assert "50%" in personalization.sentence(s)


def test_leave_one_out_compares_each_rollout_with_the_patients_others():
    out = leave_one_out(["a", "a", "a", "b", "b", "c"], np.array([1.0, 2.0, 3.0, 10.0, 20.0, 5.0]))
    assert np.allclose(out, [2.5, 2.0, 1.5, 20.0, 10.0, 0.0])
    with pytest.raises(ValueError, match="group_size"):
        RefineConfig(baseline="group")
    with pytest.raises(ValueError, match="multiple of group_size"):
        RefineConfig(baseline="group", group_size=4, batch_size=6)


def _editor(embedder, protect=(), n_steps=3):
    from pmlm_lib.method.refine.policy import WordPolicy

    torch.manual_seed(0)
    return PromptEditor(
        embedder, WordPolicy(), PatientEncoder(30), n_steps=n_steps, embed="once", device="cpu", protect=protect
    )


def test_protected_clinical_words_are_never_edited_even_by_a_policy_that_favours_them(embedder):
    prompt = coarse_prompt("uterine rupture", PEERS)
    tasks = [EditTask(patient_id="A", prompt=prompt, x_prime=np.zeros(30, dtype=np.float32))]
    editor = _editor(embedder, ("prediction", "peers"), n_steps=12)
    favourite = embedder.embed([["rupture"]])[0][0]
    original = editor.policy.position_and_hidden

    def likes_rupture(E, x, allowed=None):  # the scores of a policy that wants "rupture" gone, masked as the real one
        scores = 20 * torch.nn.functional.cosine_similarity(E, favourite[None])
        scores = scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))
        return torch.log_softmax(scores, 0), original(E, x, allowed)[1]

    editor.policy.position_and_hidden = likes_rupture
    for mode in ("greedy", "sampled", "greedy_distinct"):
        r = editor.edit(tasks, mode, seed=1)[0]
        assert r.final.count("rupture") == prompt.count("rupture") and "uterine rupture" in r.final, mode
        assert len(r.positions) == 12 and torch.isfinite(r.entropy)
    unprotected = _editor(embedder, (), n_steps=12)
    unprotected.policy.position_and_hidden = likes_rupture
    assert unprotected.edit(tasks, "greedy")[0].final.count("rupture") < prompt.count("rupture")
    assert unprotected.settings()["protect"] == [] and editor.settings()["protect"] == ["prediction", "peers"]
    with pytest.raises(ValueError, match="protect"):
        _editor(embedder, ("labs",))


class EchoResponder:
    def answer(self, prompts, decoding=None, progress=False):
        return list(prompts)


def test_group_baseline_trains_on_each_patients_rollouts_side_by_side_and_learns(embedder):
    """Reward 1 for an answer without "zebra": with 4 rollouts of each of 2 patients per update and the
    leave-one-out baseline, the policy learns to delete it, and the protected prediction is never cut."""
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            patient_id=f"P{i}",
            prompt=f"Please advise me about zebra and my diet, since week {20 + i} of my pregnancy. "
            + coarse_prompt("gestational diabetes", PEERS[:1]),
            x_prime=rng.normal(size=30).astype(np.float32),
            reference="",
        )
        for i in range(8)
    ]
    scorer = lambda answers, references: np.array([0.0 if "zebra" in a else 1.0 for a in answers])  # noqa: E731
    editor = _editor(embedder, ("prediction",), n_steps=2)
    refiner = Refiner(
        editor,
        AnswerReward(EchoResponder(), scorer, Decoding()),
        RefineConfig(lr=0.01, epochs=8, patients_per_epoch=2, group_size=4, baseline="group", random_control=False),
    )
    refiner.train(episodes, progress=lambda *_: None)
    first = [row["patient_id"] for row in refiner.log if row["epoch"] == 0]
    assert len(first) == 8 and len(set(first)) == 2 and first[:4] == [first[0]] * 4  # a patient's rollouts together
    assert {row["update"] for row in refiner.log} == set(range(1, 9))  # one update per epoch
    last = [row["score_after"] for row in refiner.log if row["epoch"] >= 6]
    assert np.mean(last) > 0.7, np.mean(last)
    refined = editor.edit_table(episodes, "greedy")
    assert personalization.profile(refined)["prediction_words_cut"].sum() == 0


def _refined(prompts_and_targets: dict) -> pd.DataFrame:
    rows = {
        pid: {"coarse_prompt": p, "positions": _deleting(p, t), "operations": None, "words": None}
        for pid, (p, t) in prompts_and_targets.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_the_consensus_template_is_the_policys_most_frequent_edits_even_when_every_prompt_differs():
    """Five prompts, five different edit sets (the "most common set" would be one patient's draw): the consensus of
    2 edits is the two word occurrences edited most often over all of them."""
    p = coarse_prompt("gestational diabetes", PEERS)
    words = [w.strip().lower() for w in segment(p)]
    at = {w: words.index(w) for w in ("assistant", "expertise", "medical", "knowledge.", "patient.")}
    sets = [
        ["assistant", "expertise", "medical"],
        ["assistant", "expertise", "knowledge."],
        ["assistant", "medical", "patient."],
        ["assistant", "expertise", "patient."],
        ["knowledge.", "medical", "expertise"],
    ]
    refined = _refined({f"P{i}": (p, [at[w] for w in s]) for i, s in enumerate(sets)})
    prof = personalization.profile(refined)
    assert prof["edit_set"].nunique() == 5
    consensus = personalization.consensus_template(prof["edit_set"], 2)
    assert {t for _, t, _, _ in consensus} == {"assistant", "expertise"}  # 4 and 4 of 5 prompts
    kept = personalization.apply_edit_set(p, consensus)
    assert "assistant" not in kept and "expertise" not in kept and "medical knowledge" in kept
    summary = personalization.summary(prof, consensus_size=2)
    assert summary["share_edits_in_consensus"] == round(8 / 15, 3)


def test_the_shuffled_control_gives_every_patient_someone_elses_edits_and_never_cuts_a_protected_word():
    ids = [f"P{i}" for i in range(7)]
    sets = pd.Series({p: frozenset({("delete", "the", i + 1, None)}) for i, p in enumerate(ids)})
    given = personalization.shuffled_edit_sets(sets, seed=3)
    donors = {p: d for p, (d, _) in given.items()}
    assert set(donors) == set(ids) == set(donors.values()) and all(p != d for p, d in donors.items())
    assert all(given[p][1] == sets[d] for p, d in donors.items())
    assert personalization.shuffled_edit_sets(sets, seed=3).equals(given)  # seeded
    assert personalization.shuffled_edit_sets(sets, seed=4).map(lambda g: g[0]).tolist() != [donors[p] for p in ids]
    assert personalization.shuffled_edit_sets(sets.iloc[:1], seed=0).empty  # nobody to swap with
    # another patient's edit of "uterine" (her template word) lands inside this patient's protected peer diagnosis
    mine = coarse_prompt("uterine scar", PEERS)
    edit = {("delete", "uterine", 1, None), ("delete", "assistant", 1, None)}
    assert "uterine scar" not in personalization.apply_edit_set(mine, edit)
    protected = personalization.apply_edit_set(mine, edit, ("prediction", "peers"))
    assert "uterine scar" in protected and "assistant" not in protected


def test_the_controls_of_notebook_05_name_their_systems_and_donors():
    from pmlm_lib.evaluation.systems import CONSENSUS, SHUFFLED

    p, q = coarse_prompt("gestational diabetes", PEERS), coarse_prompt("normal", PEERS[:2])
    refined = _refined({"A": (p, [1, 2]), "B": (q, [3, 4]), "C": (p, [1, 5])})
    prompts, donors = personalization.controls(refined, ["A", "B", "C"], n=2, seed=0)
    assert set(prompts) == {CONSENSUS, SHUFFLED} and donors.name == "edits of patient"
    prof = personalization.profile(refined)
    for pid, donor in donors.items():
        assert donor != pid
        assert prompts[SHUFFLED][pid] == personalization.apply_edit_set(
            refined.loc[pid, "coarse_prompt"], prof.loc[donor, "edit_set"]
        )
    assert prompts[CONSENSUS]["B"] == personalization.apply_edit_set(
        q, personalization.consensus_template(prof["edit_set"], 2)
    )
