"""RL refinement: the policy, embeddings, reward and REINFORCE loop on the real small models."""

import numpy as np
import pytest
import torch

from pmlm_lib.prompts import coarse_prompt, join, segment
from pmlm_lib.refine import Episode, RefineConfig, Refiner, greedy_deletion, random_deletion
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


def test_controls_delete_n_words_and_keep_a_minimum():
    rng = np.random.default_rng(0)
    text, deleted = random_deletion(PROMPTS[0], 10, rng)
    assert len(deleted) == 10 and len(segment(text)) == len(segment(PROMPTS[0])) - 10
    text, deleted = random_deletion("one two three four five six", 10, rng)
    assert len(segment(text)) == 5 and len(deleted) == 1


def _refiner(embedder, responder, reward, epochs, seed=0):
    torch.manual_seed(seed)
    from pmlm_lib.policy import WordPolicy

    policy, encoder = WordPolicy(), PatientEncoder(30)
    config = RefineConfig(n_steps=2, epochs=epochs, decoding={"max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0})
    return Refiner(embedder, policy, encoder, responder, reward, config)


@pytest.mark.slow
def test_training_logs_episodes_and_resumes_to_the_same_policy(tmp_path, embedder, responder, reward):
    rng = np.random.default_rng(1)
    episodes = [Episode(f"P{i}", p, r, rng.normal(size=30).astype(np.float32)) for i, (p, r) in enumerate(zip(PROMPTS, REPLIES))]
    whole = _refiner(embedder, responder, reward, epochs=2)
    history = whole.train(episodes, checkpoint=tmp_path / "a.pt", progress=lambda *_: None)
    assert [h["epoch"] for h in history] == [0, 1] and all(np.isfinite(h["mean_reward"]) for h in history)
    assert len(whole.log) == 6 and all(len(row["deleted"]) == 2 for row in whole.log)

    first = _refiner(embedder, responder, reward, epochs=1)
    first.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)  # "interrupted" after epoch 0
    resumed = _refiner(embedder, responder, reward, epochs=2)
    resumed.train(episodes, checkpoint=tmp_path / "b.pt", progress=lambda *_: None)
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values()):
        assert torch.allclose(a, b)
    final, deleted = resumed.refine(PROMPTS[0], episodes[0].x_prime)
    assert len(deleted) == 2 and len(segment(final)) == len(segment(PROMPTS[0])) - 2


@pytest.mark.slow
def test_greedy_control_spends_its_budget(embedder, responder, reward):
    text, deleted = greedy_deletion(PROMPTS[0], REPLIES[0], responder, reward, n=2, budget=3, decoding=Decoding(max_tokens=8))
    assert len(deleted) == 2 and join(segment(text)) == text
