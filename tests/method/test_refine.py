"""RL refinement: the policy, embeddings, reward and REINFORCE loop on the real small models."""

import copy

import numpy as np
import pytest
import torch

from pmlm_lib.data.prompts import coarse_prompt, join, segment
from pmlm_lib.llm.responders import AnswerCache, Decoding
from pmlm_lib.method.refine.controls import greedy_deletion, random_deletion
from pmlm_lib.method.refine.editor import PromptEditor
from pmlm_lib.method.refine.refiner import Episode, RefineConfig, Refiner
from pmlm_lib.method.refine.reward import AnswerReward, RewardResult
from pmlm_lib.method.refine.word_edits import apply_edit, edited_words_by_epoch, mark_edits
from pmlm_lib.method.retrieval import PatientEncoder

PROMPTS = [
    coarse_prompt(label, [(label, 0.9), ("normal", 0.8)]) for label in ("gestational diabetes", "thalassemia", "normal")
]
REPLIES = [
    "Follow a low-sugar diet and monitor your blood glucose.",
    "Take folic acid; iron only if ferritin is low.",
    "Keep attending your prenatal check-ups and count fetal movements.",
]


@pytest.fixture(scope="module")
def embedder():
    from pmlm_lib.method.refine.embedding import WordEmbedder

    return WordEmbedder(device="cpu")


@pytest.fixture(scope="module")
def reward():
    from pmlm_lib.method.refine.reward import BERTScoreReward

    return BERTScoreReward(device="cpu")


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    from pmlm_lib.llm.responders.llamacpp import LlamaCppResponder

    r = LlamaCppResponder(n_parallel=2, ctx_per_slot=1024, cache=AnswerCache(tmp_path_factory.mktemp("a") / "a.sqlite"))
    yield r
    r.close()


def test_policy_has_the_papers_shape_and_normalizes():
    from pmlm_lib.method.refine.policy import WordPolicy

    policy = WordPolicy()
    linears = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(896, 256), (256, 256), (256, 1)]
    assert all(m.p == 0.4 for m in policy.modules() if isinstance(m, torch.nn.Dropout))
    logp = policy(torch.randn(7, 384), torch.randn(128))
    assert logp.shape == (7,) and torch.isclose(logp.exp().sum(), torch.tensor(1.0))


def test_word_embeddings_one_per_word_even_beyond_the_encoder_limit(embedder):
    words = segment(PROMPTS[0])
    long = words * 8  # well over 512 tokens
    short_e, long_e = embedder.embed([words, long])
    assert short_e.shape == (len(words), 384) and long_e.shape == (len(long), 384)
    before = embedder.encoded
    embedder.embed([words])
    assert embedder.encoded == before  # the same state is never encoded twice


def test_reward_matches_bert_score_and_guards_empty_answers(reward):
    from bert_score import score

    from pmlm_lib.common.weights import minilm_path

    got = reward(["Eat less sugar and check your glucose.", ""], REPLIES[:2])
    _, _, f = score(
        ["Eat less sugar and check your glucose."], REPLIES[:1], model_type=str(minilm_path()), num_layers=6
    )
    assert np.isclose(got[0], float(f[0]), atol=1e-5) and got[1] == 0.0
    encoded = reward.encoded
    again = reward(["Eat less sugar and check your glucose.", "Rest."], REPLIES[:2])
    assert (
        reward.encoded == encoded + 2 and again[0] == got[0]
    )  # only "Rest." and the reply it meets first were encoded


def test_controls_delete_n_words_and_keep_a_minimum():
    rng = np.random.default_rng(0)
    text, deleted = random_deletion(PROMPTS[0], 10, rng)
    assert len(deleted) == 10 and len(segment(text)) == len(segment(PROMPTS[0])) - 10
    text, deleted = random_deletion("one two three four five six", 10, rng)
    assert len(segment(text)) == 5 and len(deleted) == 1


def test_edits_keep_the_text_readable_and_marked():
    words = segment("Eat less sugar daily")
    assert join(apply_edit(words, 1, "delete", None)) == "Eat sugar daily"
    assert join(apply_edit(words, 1, "replace", "more")) == "Eat more sugar daily"
    assert join(apply_edit(words, 3, "insert", "please")) == "Eat less sugar daily please"
    assert join(apply_edit(segment("多吃水果"), 1, "insert", "蔬")) == "多吃蔬水果"
    marked = mark_edits("Eat less sugar daily", [1, 0], ["replace", "insert"], ["more", "always"])
    assert marked == "Eat {+always+}2 [-less-]1 {+more+}1 sugar daily"


def test_policy_with_edit_operations_normalizes_each_choice():
    from pmlm_lib.method.refine.policy import WordPolicy

    policy = WordPolicy(operations=("delete", "replace", "insert"))
    logp, h = policy.position_and_hidden(torch.randn(7, 384), torch.randn(128))
    ops, new = policy.operation_logp(h[2]), policy.word_logp(h[2], torch.randn(11, 384))
    assert ops.shape == (3,) and new.shape == (11,)
    assert all(torch.isclose(x.exp().sum(), torch.tensor(1.0)) for x in (logp, ops, new))
    with pytest.raises(ValueError, match="operations"):
        WordPolicy(operations=("swap",))


def _refiner(
    embedder,
    responder,
    scorer,
    epochs,
    seed=0,
    operations=("delete",),
    batch_size=None,
    baseline="mean",
    embed="every_step",
    random_control=True,
):
    torch.manual_seed(seed)
    from pmlm_lib.method.refine.policy import WordPolicy

    policy, encoder = WordPolicy(operations=operations), PatientEncoder(30)
    vocabulary = ["diet", "glucose", "rest"] if operations != ("delete",) else None
    editor = PromptEditor(embedder, policy, encoder, n_steps=2, embed=embed, vocabulary=vocabulary, device="cpu")
    reward = AnswerReward(responder, scorer, Decoding(max_tokens=8, temperature=0.0, top_p=1.0, seed=0))
    config = RefineConfig(epochs=epochs, batch_size=batch_size, baseline=baseline, random_control=random_control)
    return Refiner(editor, reward, config)


def _episodes(seed, prompts=PROMPTS):
    rng = np.random.default_rng(seed)
    return [
        Episode(patient_id=f"P{i}", prompt=p, x_prime=rng.normal(size=30).astype(np.float32), reference=r)
        for i, (p, r) in enumerate(zip(prompts, REPLIES))
    ]


def test_baselines_compare_each_reward_with_the_right_expectation(embedder):
    """s0_score: patients whose s_0 answer scored low gain more from any edit, so the baseline follows
    the line fitted on earlier episodes; "mean" is the running mean; "random" is the patient's own
    random-deletion reward; "none" is zero (the paper)."""
    episodes = _episodes(0)[:2]
    result = RewardResult(reward=np.array([0.1, 0.0]), after=np.array([0.3, 0.6]), before=np.array([0.2, 0.6]))
    refiner = _refiner(embedder, None, None, epochs=1, baseline="s0_score")
    assert list(refiner.baseline(result, episodes, [], {})) == [0.0, 0.0]  # no earlier episodes yet
    log = [{"score_before": x, "reward": 0.3 - 0.5 * x} for x in (0.1, 0.3, 0.5, 0.7)]
    assert np.allclose(refiner.baseline(result, episodes, log, {}), [0.2, 0.0])
    assert list(_refiner(embedder, None, None, epochs=1, baseline="none").baseline(result, episodes, log, {})) == [
        0.0,
        0.0,
    ]
    mean = _refiner(embedder, None, None, epochs=1, baseline="mean")
    mean.baseline.update(result)
    assert np.allclose(mean.baseline(result, episodes, log, {}), [0.05, 0.05])
    randoms = _refiner(embedder, None, None, epochs=1, baseline="random")
    assert list(randoms.baseline(result, episodes, log, {"P0": 0.02, "P1": -0.01})) == [0.02, -0.01]
    with pytest.raises(ValueError, match="s0_score"):
        RefineConfig(baseline="median")
    with pytest.raises(ValueError, match="random_control"):
        RefineConfig(baseline="random", random_control=False)


@pytest.mark.slow
def test_training_logs_episodes_and_resumes_to_the_same_policy(tmp_path, embedder, responder, reward):
    episodes = _episodes(1)
    whole = _refiner(embedder, responder, reward, epochs=2, batch_size=2, baseline="s0_score")
    history = whole.train(episodes, checkpoint=tmp_path / "a.pt", progress=lambda *_: None)
    assert [h["epoch"] for h in history] == [0, 1] and all(np.isfinite(h["mean_reward"]) for h in history)
    assert [h["updates"] for h in history] == [2, 2]  # batches of 2 over 3 episodes
    assert len(whole.log) == 6 and all(len(row["positions"]) == 2 for row in whole.log)
    # the random control: one draw per patient, scored once; each epoch reports the policy's gain over it
    assert set(whole.random_reward) == {"P0", "P1", "P2"}
    assert all(
        np.isclose(
            h["minus_random"],
            h["mean_reward"] - np.mean([r["random_reward"] for r in whole.log if r["epoch"] == h["epoch"]]),
        )
        for h in history
    )
    split = whole.time_split()
    assert split["answers"] > 0 and 0 < split["share_outside_answers"] < 1

    first = _refiner(embedder, responder, reward, epochs=1, batch_size=2, baseline="s0_score")
    first.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)  # "interrupted" after epoch 0
    resumed = _refiner(embedder, responder, reward, epochs=2, batch_size=2, baseline="s0_score")
    resumed.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)
    for a, b in zip(whole.editor.parameters(), resumed.editor.parameters()):
        assert torch.allclose(a, b)
    assert resumed.random_reward == whole.random_reward and resumed.log == whole.log
    (rollout,) = resumed.editor.edit(episodes[:1])
    assert len(rollout.positions) == 2 and len(segment(rollout.final)) == len(segment(PROMPTS[0])) - 2

    other = _refiner(embedder, responder, reward, epochs=1, batch_size=3)  # another configuration: not resumed
    messages = []
    other.train(episodes, checkpoint=tmp_path / "b.pt", progress=messages.append)
    assert "another configuration" in messages[0] and (tmp_path / "b.pt.previous").exists()


@pytest.mark.slow
def test_replace_and_insert_train_through_the_same_loop(embedder, responder, reward):
    episodes = _episodes(2)
    refiner = _refiner(embedder, responder, reward, epochs=1, operations=("delete", "replace", "insert"))
    refiner.train(episodes, progress=lambda *_: None)
    ops = [op for row in refiner.log for op in row["operations"]]
    assert set(ops) <= {"delete", "replace", "insert"} and len(ops) == 6
    for row, e in zip(refiner.log, episodes):
        n_words = len(segment(e.prompt)) - row["operations"].count("delete") + row["operations"].count("insert")
        new = [w for w in row["words"] if w is not None]
        assert all(w in refiner.editor.vocabulary for w in new) and n_words > 0


@pytest.mark.slow
def test_greedy_control_spends_its_budget(embedder, responder, reward):
    decoding = Decoding(max_tokens=8)
    before = responder.stats["answered"] + responder.stats["from_cache"]
    results = greedy_deletion(PROMPTS[:2], REPLIES[:2], responder, reward, n=2, budget=6, decoding=decoding)
    assert (
        responder.stats["answered"] + responder.stats["from_cache"] - before == 2 * 6
    )  # 3 candidates x 2 steps x 2 prompts
    for (text, deleted), prompt in zip(results, PROMPTS):
        assert len(deleted) == 2 and len(segment(text)) == len(segment(prompt)) - 2
    # with a budget that covers every word, one step keeps the deletion whose answer scores best
    short = "Please give me advice about my diet and sleep"
    [(text, [j])] = greedy_deletion(
        [short], REPLIES[:1], responder, reward, n=1, budget=20, decoding=decoding, min_words=2
    )
    words = segment(short)
    options = [join(apply_edit(words, k, "delete", None)) for k in range(len(words))]
    scores = reward(responder.answer(options, decoding), REPLIES[:1] * len(options))
    assert scores[j] == scores.max() and text == options[j]


def test_embedding_once_follows_the_edits_without_encoding_again(embedder):
    episodes = _episodes(3, [p + " Thank you." for p in PROMPTS])
    once = _refiner(embedder, None, None, epochs=1, embed="once").editor
    before = embedder.encoded
    rollouts = once.edit(episodes)
    assert embedder.encoded - before == len(episodes)  # s_0 only, in one batch
    every = _refiner(embedder, None, None, epochs=1).editor
    every.policy.load_state_dict(once.policy.state_dict())
    every.encoder.load_state_dict(once.encoder.state_dict())
    # the first edit is chosen from BERT(s_0) in both modes
    assert [r.positions[0] for r in every.edit(episodes)] == [r.positions[0] for r in rollouts]


def test_inference_modes_need_no_responder_and_differ_as_documented(embedder):
    """greedy repeats the favourite word type; greedy_distinct never deletes a type twice; best_of keeps
    the most likely of its samples; all edit n words of prompts without replies."""
    from pmlm_lib.method.refine.editor import EditTask

    editor = _refiner(embedder, None, None, epochs=1, embed="once").editor
    editor.n_steps = 4
    prompt = "Note the similarity: similarity, similarity, similarity and more similarity in this long prompt here."
    tasks = [EditTask(patient_id="A", prompt=prompt, x_prime=np.zeros(30, dtype=np.float32))]
    with torch.no_grad():  # make "similarity" the policy's favourite word, whatever the state
        editor.policy.net[0].weight.zero_()
        editor.policy.net[0].bias.zero_()
    favourite = embedder.embed([["similarity"]])[0][0]
    editor.policy.position_and_hidden = lambda E, x, allowed=None: (
        torch.log_softmax(10 * torch.nn.functional.cosine_similarity(E, favourite[None]), 0),
        torch.zeros(len(E), 256),
    )
    from pmlm_lib.method.refine.word_edits import edited_types

    greedy, distinct = editor.edit(tasks, "greedy")[0], editor.edit(tasks, "greedy_distinct")[0]
    assert edited_types(prompt, greedy.positions) <= {"similarity"} and len(greedy.positions) == 4
    assert len(edited_types(prompt, distinct.positions)) == 4
    samples = [editor.edit(tasks, "sampled", seed=s)[0] for s in range(6)]
    best = editor.edit(tasks, "best_of", seed=0, samples=6)[0]
    assert float(best.logp) >= max(float(r.logp) for r in samples[:1])
    with pytest.raises(ValueError, match="inference mode"):
        editor.edit(tasks, "beam")


def test_a_patients_sampled_edits_do_not_depend_on_who_is_edited_beside_her(embedder):
    """Sampled inference (the default profile's mode) draws each patient's edits from the seed and her id: the
    explorer editing her alone gets the refined prompt notebook 04 made for her among all test prompts."""
    from pmlm_lib.method.refine.editor import tasks_for

    editor = _refiner(embedder, None, None, epochs=1, embed="once").editor
    prompts = {f"P{i}": p for i, p in enumerate(PROMPTS * 2)}
    ids = list(prompts)
    x_prime = np.random.default_rng(0).normal(size=(len(ids), 30)).astype(np.float32)
    together = editor.edit_table(tasks_for(ids, prompts, x_prime), "sampled", seed=7)
    for i in (0, 4):
        alone = editor.edit_table(tasks_for([ids[i]], prompts, x_prime[i : i + 1]), "sampled", seed=7)
        assert alone.loc[ids[i], "positions"] == together.loc[ids[i], "positions"]
    # P0 and P3 have the same prompt and (here) their own patient vectors and draws: their own edits
    assert together["positions"].map(tuple).nunique() > 1
    other_seed = editor.edit_table(tasks_for(ids, prompts, x_prime), "sampled", seed=8)
    assert (other_seed["positions"] != together["positions"]).any()


class EchoResponder:
    """A toy LLM_r that answers with its prompt (no model), for testing that Algorithm 1 learns."""

    def __init__(self):
        self.calls = 0

    def answer(self, prompts, decoding=None, progress=False):
        self.calls += len(prompts)
        return list(prompts)


def _zebra_episodes(n=16, first=0):
    """Prompts with the marker word "zebra" among ~25 words; the reward below pays for answers without it."""
    rng = np.random.default_rng(first)
    topics = ["diet", "sleep", "iron", "walking", "glucose", "blood pressure", "fetal movements", "folic acid"]
    return [
        Episode(
            patient_id=f"P{i}",
            prompt=f"Please advise me about {topics[i % 8]} and zebra in my pregnancy, "
            f"since my tests from week {20 + i} showed values that my doctor wants me to watch closely.",
            x_prime=rng.normal(size=30).astype(np.float32),
            reference="",
        )
        for i in range(first, first + n)
    ]


def _no_zebra(answers, references):
    return np.array([0.0 if "zebra" in a else 1.0 for a in answers])


def _zebra_editor(embedder):
    from pmlm_lib.method.refine.policy import WordPolicy

    return PromptEditor(embedder, WordPolicy(), PatientEncoder(30), n_steps=2, embed="once", device="cpu")


def _zebra_refiner(embedder) -> Refiner:
    """Algorithm 1 paid for answers without "zebra": 8 epochs of updates of 8 episodes, a running-mean baseline."""
    torch.manual_seed(0)
    return Refiner(
        _zebra_editor(embedder),
        AnswerReward(EchoResponder(), _no_zebra, Decoding()),
        RefineConfig(lr=0.01, epochs=8, batch_size=8, baseline="mean", random_control=False),
    )


def test_algorithm_1_learns_to_delete_the_word_the_reward_pays_for(embedder):
    """A reward that pays 1 for an answer without the marker word "zebra": within a few epochs the share
    of episodes deleting it rises far above the random rate (one word among ~25, two edits per prompt)."""
    from pmlm_lib.method.refine.word_edits import edited_types

    episodes = _zebra_episodes()
    refiner = _zebra_refiner(embedder)
    refiner.train(episodes, progress=lambda *_: None)
    share = {
        e: np.mean(
            [
                "zebra"
                in edited_types(next(x.prompt for x in episodes if x.patient_id == row["patient_id"]), row["positions"])
                for row in refiner.log
                if row["epoch"] == e
            ]
        )
        for e in range(8)
    }
    words = len(segment(episodes[0].prompt))
    assert share[0] < 0.3 and 2 / words < 0.1  # about the random rate at the start
    assert np.mean([share[6], share[7]]) > 0.7, share


def test_restarts_train_until_validation_patients_accept_one(tmp_path, embedder):
    """A policy that learned what the reward pays for beats random deletion on validation patients and is
    accepted at once (restart 0, exactly the single training of its seed: no second training); an untrained one
    is turned down; while the judge turns trainings down, the next restart starts from other weights and keeps
    its own checkpoint; policy.pt becomes the chosen restart's."""
    from pmlm_lib.method.refine.policy import WordPolicy
    from pmlm_lib.method.refine.refiner import keep_restart, restart_checkpoint, train_restarts
    from pmlm_lib.method.refine.selection import RestartJudge

    episodes, validation = _zebra_episodes(), _zebra_episodes(8, first=16)
    reward = AnswerReward(EchoResponder(), _no_zebra, Decoding())
    config = RefineConfig(lr=0.01, epochs=6, batch_size=8, baseline="mean", random_control=False, seed=3)
    torch.manual_seed(99)
    untrained = _zebra_editor(embedder)
    start = [p.detach().clone() for p in untrained.parameters()]

    # answers score 0 or 100 here: a policy that learned to delete "zebra" beats random deletion by far more
    judge = RestartJudge(reward, validation, "greedy", 0, 8, n_steps=2, min_words=5, margin=50)
    checkpoint, messages = tmp_path / "policy.pt", []
    refiners = train_restarts(untrained, reward, config, episodes, 3, checkpoint, messages.append, accept=judge)
    assert len(refiners) == 1 and judge.chosen() == 0 and judge.rows[0]["accepted"]
    assert judge.rows[0]["− random deletion"] >= 50 and judge.rows[0]["patients"] == 8
    assert restart_checkpoint(checkpoint, 0, 3).exists() and not restart_checkpoint(checkpoint, 1, 3).exists()
    assert "restart 0 edits the test prompts" in judge.sentence()
    assert all(torch.equal(a, b) for a, b in zip(untrained.parameters(), start))  # the template is not trained

    def untimed(history):
        return [{k: v for k, v in h.items() if not k.startswith("seconds")} for h in history]

    torch.manual_seed(3)  # the single training of seed 3 (same patient encoder) is restart 0, edit for edit
    single_editor = PromptEditor(embedder, WordPolicy(), copy.deepcopy(untrained.encoder), n_steps=2, embed="once")
    single = Refiner(single_editor, reward, config)
    single.train(episodes, progress=lambda *_: None)
    assert single.log == refiners[0].log and untimed(single.history) == untimed(refiners[0].history)

    doubter = RestartJudge(reward, validation, "greedy", 0, 8, n_steps=2, min_words=5, margin=50)
    assert not doubter(Refiner(untrained, reward, config))  # the untrained policy leaves "zebra" in
    assert doubter.chosen() == 0 and "none beat random deletion" in doubter.sentence()

    turned_down = train_restarts(
        untrained, reward, config, episodes, 2, checkpoint, messages.append, accept=lambda refiner: False
    )
    assert [r.config.seed for r in turned_down] == [3, 4] and "restart 1 (seed 4), at most 2" in messages
    assert turned_down[0].log == refiners[0].log != turned_down[1].log  # another start, other edits
    assert all(restart_checkpoint(checkpoint, r, 2).exists() for r in (0, 1)) and not checkpoint.exists()
    keep_restart(checkpoint, 1, 2)
    assert checkpoint.read_bytes() == restart_checkpoint(checkpoint, 1, 2).read_bytes()
    resumed = train_restarts(untrained, reward, config, episodes, 2, checkpoint, messages.append, lambda r: False)
    # restart 0 resumed once before (the second call), both now
    assert [r.log for r in resumed] == [r.log for r in turned_down] and messages.count("resumed after epoch 5") == 3


def test_edited_words_by_epoch_counts_each_episodes_edits_once():
    prompts = {"A": "Your deep learning model says: rest, rest.", "B": "The deep model predicts normal."}
    log = [
        {"epoch": 0, "patient_id": "A", "positions": [1, 4]},  # "deep", then "rest," (index 4 after the deletion)
        {"epoch": 0, "patient_id": "B", "positions": [2]},  # "model"
        {"epoch": 1, "patient_id": "A", "positions": [1, 1], "operations": ["delete", "delete"], "words": [None, None]},
    ]
    table = edited_words_by_epoch(log, prompts)
    assert (
        table.loc["deep", "epoch 0"] == 0.5
        and table.loc["rest", "epoch 0"] == 0.5
        and table.loc["model", "epoch 0"] == 0.5
    )
    assert (
        table.loc["deep", "epoch 1"] == 1.0
        and table.loc["learning", "epoch 1"] == 1.0
        and table.loc["model", "epoch 1"] == 0.0
    )
    assert list(table.columns) == ["epoch 0", "epoch 1"]


def test_greedy_stays_unless_validation_proves_another_mode_better():
    import pandas as pd

    from pmlm_lib.method.refine.selection import choose_mode

    def table(low_sampled, low_distinct):
        return pd.DataFrame(
            {
                "BERTScore-F1": [40.0, 42.0, 41.0],
                "− greedy": [float("nan"), 2.0, 1.5],
                "− greedy CI low": [float("nan"), low_sampled, low_distinct],
            },
            index=["greedy", "sampled", "greedy_distinct"],
        )

    assert choose_mode(table(-1.0, -0.5)) == "greedy"  # ahead on average, within the noise: greedy stays
    assert choose_mode(table(0.3, -0.5)) == "sampled"
    assert choose_mode(table(0.3, 0.2)) == "sampled"  # of two proven better, the one ahead most


def test_the_consensus_mode_is_one_learned_edit_for_everyone_kept_with_the_checkpoint(tmp_path, embedder):
    """After Algorithm 1 learns to delete "zebra", the consensus mode's edit set (the training prompts' most frequent
    sampled edits) deletes it from every prompt, new ones too, alike whoever is edited beside whom; the checkpoint
    keeps it, and the editor loaded from the checkpoint applies the same edit."""
    from pmlm_lib.method.refine.editor import load_editor

    episodes = _zebra_episodes()
    refiner = _zebra_refiner(embedder)
    refiner.train(episodes, tmp_path / "policy.pt", progress=lambda *_: None)
    consensus = refiner.editor.consensus
    assert len(consensus) == 2 and ("delete", "zebra", 1, None) in consensus
    new = _zebra_episodes(4, first=40)
    table = refiner.editor.edit_table(new, "consensus")
    assert not table["refined_prompt"].str.contains("zebra").any()
    assert (table["refined_prompt"].map(lambda p: len(segment(p))) == [len(segment(e.prompt)) - 2 for e in new]).all()
    alone = refiner.editor.edit_table(new[1:2], "consensus")
    assert alone.loc[new[1].patient_id, "refined_prompt"] == table.loc[new[1].patient_id, "refined_prompt"]
    from pmlm_lib.method.refine.word_edits import mark_edits

    marked = mark_edits(new[0].prompt, table.iloc[0]["positions"])
    assert "[-zebra-]" in marked
    loaded = load_editor(tmp_path / "policy.pt", PatientEncoder(30), embedder, device="cpu")
    assert loaded.consensus == consensus


def test_each_mode_is_compared_with_its_own_edits_shuffled_and_with_the_consensus(embedder):
    """On validation patients, each mode's row says how it does against its edit sets given to other patients and
    against the consensus template; a policy that cut "zebra" from one patient in two and something else elsewhere
    is compared with exactly those prompts."""
    from pmlm_lib.method.refine.edit_sets import apply_edit_set, edit_set
    from pmlm_lib.method.refine.selection import compare_inference_modes, shuffled_prompts

    torch.manual_seed(0)
    episodes = _zebra_episodes(6, first=60)
    editor = _zebra_editor(embedder)
    editor.consensus = frozenset({("delete", "zebra", 1, None), ("delete", "please", 1, None)})
    reward = AnswerReward(EchoResponder(), _no_zebra, Decoding())
    modes = compare_inference_modes(editor, reward, episodes, ["sampled", "consensus"], seed=3)
    assert list(modes.index) == ["sampled", "consensus"]
    assert modes.loc["consensus", "BERTScore-F1"] == 100.0  # the echo of every consensus prompt lacks "zebra"
    assert modes.loc["consensus", "− consensus template"] == 0.0 and np.isnan(modes.loc["consensus", "− shuffled"])
    assert modes.loc["sampled", "− consensus template"] == pytest.approx(modes.loc["sampled", "BERTScore-F1"] - 100)
    sampled = editor.edit_table(episodes, "sampled", 3)
    shuffled = shuffled_prompts(sampled, 3)
    sets = {pid: edit_set(r["coarse_prompt"], r["positions"])[0] for pid, r in sampled.iterrows()}
    assert set(shuffled) == set(sets)
    assert all(
        any(shuffled[p] == apply_edit_set(sampled.loc[p, "coarse_prompt"], sets[q]) for q in sets if q != p)
        for p in sets
    )
