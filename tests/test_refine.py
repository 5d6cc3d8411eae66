"""RL refinement: the policy, embeddings, reward and REINFORCE loop on the real small models."""

import numpy as np
import pytest
import torch

from pmlm_lib.prompts import coarse_prompt, join, segment
from pmlm_lib.refine import Episode, RefineConfig, Refiner, apply_edit, greedy_deletion, mark_edits, random_deletion
from pmlm_lib.responders import AnswerCache, Decoding
from pmlm_lib.retrieval import PatientEncoder

PROMPTS = [coarse_prompt(label, [(label, 0.9), ("normal", 0.8)]) for label in ("gestational diabetes", "thalassemia", "normal")]
REPLIES = ["Follow a low-sugar diet and monitor your blood glucose.", "Take folic acid; iron only if ferritin is low.",
           "Keep attending your prenatal check-ups and count fetal movements."]


@pytest.fixture(scope="module")
def embedder():
    from pmlm_lib.embedding import WordEmbedder

    return WordEmbedder()


@pytest.fixture(scope="module")
def reward():
    from pmlm_lib.reward import BERTScoreReward

    return BERTScoreReward()


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    from pmlm_lib.responders.llamacpp import LlamaCppResponder

    r = LlamaCppResponder(n_parallel=2, ctx_per_slot=1024, cache=AnswerCache(tmp_path_factory.mktemp("a") / "a.sqlite"))
    yield r
    r.close()


def test_policy_has_the_papers_shape_and_normalizes():
    from pmlm_lib.policy import WordPolicy

    policy = WordPolicy()
    linears = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(896, 256), (256, 256), (256, 1)]
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

    from pmlm_lib.models import minilm_path

    got = reward(["Eat less sugar and check your glucose.", ""], REPLIES[:2])
    _, _, f = score(["Eat less sugar and check your glucose."], REPLIES[:1], model_type=str(minilm_path()), num_layers=6)
    assert np.isclose(got[0], float(f[0]), atol=1e-5) and got[1] == 0.0
    encoded = reward.encoded
    again = reward(["Eat less sugar and check your glucose.", "Rest."], REPLIES[:2])
    assert reward.encoded == encoded + 2 and again[0] == got[0]  # only "Rest." and the reply it meets first were encoded


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
    from pmlm_lib.policy import WordPolicy

    policy = WordPolicy(operations=("delete", "replace", "insert"))
    logp, h = policy.position_and_hidden(torch.randn(7, 384), torch.randn(128))
    ops, new = policy.operation_logp(h[2]), policy.word_logp(h[2], torch.randn(11, 384))
    assert ops.shape == (3,) and new.shape == (11,)
    assert all(torch.isclose(x.exp().sum(), torch.tensor(1.0)) for x in (logp, ops, new))
    with pytest.raises(ValueError, match="operations"):
        WordPolicy(operations=("swap",))


def _refiner(embedder, responder, reward, epochs, seed=0, operations=("delete",), batch_size=None, baseline="mean"):
    torch.manual_seed(seed)
    from pmlm_lib.policy import WordPolicy

    policy, encoder = WordPolicy(operations=operations), PatientEncoder(30)
    config = RefineConfig(n_steps=2, epochs=epochs, operations=operations, batch_size=batch_size, baseline=baseline,
                          decoding={"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0})
    vocabulary = ["diet", "glucose", "rest"] if operations != ("delete",) else None
    return Refiner(embedder, policy, encoder, responder, reward, config, vocabulary=vocabulary)


def test_s0_score_baseline_predicts_each_patients_reward_from_its_s0_score(embedder):
    """Patients whose s_0 answer scored low gain more from any edit: the baseline follows the line
    fitted on earlier episodes; "mean" is the running mean; "none" is zero (the paper)."""
    refiner = _refiner(embedder, None, None, epochs=1, baseline="s0_score")
    assert refiner.reward_baseline(np.array([0.5])) == 0.0  # no earlier episodes yet
    refiner.log = [{"score_before": x, "reward": 0.3 - 0.5 * x} for x in (0.1, 0.3, 0.5, 0.7)]
    assert np.allclose(refiner.reward_baseline(np.array([0.2, 0.6])), [0.2, 0.0])
    assert _refiner(embedder, None, None, epochs=1, baseline="none").reward_baseline(np.array([0.2])) == 0.0
    mean = _refiner(embedder, None, None, epochs=1, baseline="mean")
    mean.baseline_value = 0.04
    assert mean.reward_baseline(np.array([0.2])) == 0.04
    with pytest.raises(ValueError, match="s0_score"):
        RefineConfig(baseline="median")


@pytest.mark.slow
def test_training_logs_episodes_and_resumes_to_the_same_policy(tmp_path, embedder, responder, reward):
    rng = np.random.default_rng(1)
    episodes = [Episode(f"P{i}", p, r, rng.normal(size=30).astype(np.float32)) for i, (p, r) in enumerate(zip(PROMPTS, REPLIES))]
    whole = _refiner(embedder, responder, reward, epochs=2, batch_size=2, baseline="s0_score")
    history = whole.train(episodes, checkpoint=tmp_path / "a.pt", progress=lambda *_: None)
    assert [h["epoch"] for h in history] == [0, 1] and all(np.isfinite(h["mean_reward"]) for h in history)
    assert [h["updates"] for h in history] == [2, 2]  # batches of 2 over 3 episodes
    assert len(whole.log) == 6 and all(len(row["positions"]) == 2 for row in whole.log)
    split = whole.time_split()
    assert split["answers"] > 0 and 0 < split["share_outside_answers"] < 1

    first = _refiner(embedder, responder, reward, epochs=1, batch_size=2, baseline="s0_score")
    first.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)  # "interrupted" after epoch 0
    resumed = _refiner(embedder, responder, reward, epochs=2, batch_size=2, baseline="s0_score")
    resumed.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values()):
        assert torch.allclose(a, b)
    (rollout,) = resumed.refine(episodes[:1])
    assert len(rollout.positions) == 2 and len(segment(rollout.final)) == len(segment(PROMPTS[0])) - 2

    other = _refiner(embedder, responder, reward, epochs=1, batch_size=3)  # another configuration: not resumed
    messages = []
    other.train(episodes, checkpoint=tmp_path / "b.pt", progress=messages.append)
    assert "another configuration" in messages[0] and (tmp_path / "b.pt.previous").exists()


@pytest.mark.slow
def test_replace_and_insert_train_through_the_same_loop(embedder, responder, reward):
    rng = np.random.default_rng(2)
    episodes = [Episode(f"P{i}", p, r, rng.normal(size=30).astype(np.float32)) for i, (p, r) in enumerate(zip(PROMPTS, REPLIES))]
    refiner = _refiner(embedder, responder, reward, epochs=1, operations=("delete", "replace", "insert"))
    refiner.train(episodes, progress=lambda *_: None)
    ops = [op for row in refiner.log for op in row["operations"]]
    assert set(ops) <= {"delete", "replace", "insert"} and len(ops) == 6
    for row, e in zip(refiner.log, episodes):
        n_words = len(segment(e.prompt)) - row["operations"].count("delete") + row["operations"].count("insert")
        new = [w for w in row["words"] if w is not None]
        assert all(w in refiner.vocabulary for w in new) and n_words > 0


@pytest.mark.slow
def test_greedy_control_spends_its_budget(embedder, responder, reward):
    decoding = Decoding(max_tokens=8)
    before = responder.stats["answered"] + responder.stats["from_cache"]
    results = greedy_deletion(PROMPTS[:2], REPLIES[:2], responder, reward, n=2, budget=6, decoding=decoding)
    assert responder.stats["answered"] + responder.stats["from_cache"] - before == 2 * 6  # 3 candidates x 2 steps x 2 prompts
    for (text, deleted), prompt in zip(results, PROMPTS):
        assert len(deleted) == 2 and len(segment(text)) == len(segment(prompt)) - 2
    # with a budget that covers every word, one step keeps the deletion whose answer scores best
    short = "Please give me advice about my diet and sleep"
    [(text, [j])] = greedy_deletion([short], REPLIES[:1], responder, reward, n=1, budget=20, decoding=decoding, min_words=2)
    words = segment(short)
    options = [join(apply_edit(words, k, "delete", None)) for k in range(len(words))]
    scores = reward(responder.answer(options, decoding), REPLIES[:1] * len(options))
    assert scores[j] == scores.max() and text == options[j]


def test_embedding_once_follows_the_edits_without_encoding_again(embedder, responder, reward):
    rng = np.random.default_rng(3)
    episodes = [Episode(f"P{i}", p + " Thank you.", r, rng.normal(size=30).astype(np.float32))
                for i, (p, r) in enumerate(zip(PROMPTS, REPLIES))]
    refiner = _refiner(embedder, responder, reward, epochs=1)
    refiner.config.embed = "once"
    before = embedder.encoded
    rollouts = refiner.refine(episodes)
    assert embedder.encoded - before == len(episodes)  # s_0 only, in one batch
    every = _refiner(embedder, responder, reward, epochs=1)
    every.policy.load_state_dict(refiner.policy.state_dict())
    every.encoder.load_state_dict(refiner.encoder.state_dict())
    # the first edit is chosen from BERT(s_0) in both modes
    assert [r.positions[0] for r in every.refine(episodes)] == [r.positions[0] for r in rollouts]


def test_edited_words_by_epoch_counts_each_episodes_edits_once():
    from pmlm_lib.refine import edited_words_by_epoch

    prompts = {"A": "Your deep learning model says: rest, rest.", "B": "The deep model predicts normal."}
    log = [{"epoch": 0, "patient_id": "A", "positions": [1, 4]},  # "deep", then "rest," (index 4 after the deletion)
           {"epoch": 0, "patient_id": "B", "positions": [2]},  # "model"
           {"epoch": 1, "patient_id": "A", "positions": [1, 1], "operations": ["delete", "delete"], "words": [None, None]}]
    table = edited_words_by_epoch(log, prompts)
    assert table.loc["deep", "epoch 0"] == 0.5 and table.loc["rest", "epoch 0"] == 0.5 and table.loc["model", "epoch 0"] == 0.5
    assert table.loc["deep", "epoch 1"] == 1.0 and table.loc["learning", "epoch 1"] == 1.0 and table.loc["model", "epoch 1"] == 0.0
    assert list(table.columns) == ["epoch 0", "epoch 1"]
