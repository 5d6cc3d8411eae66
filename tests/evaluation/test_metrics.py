"""The seven metrics against the libraries called directly, Chinese handling, and the paired test."""

import numpy as np
import pytest

from pmlm_lib.common.stats import paired_test
from pmlm_lib.evaluation.metrics import CJKTokenizer, Metrics, language_of

ANSWERS = [
    "Eat a balanced diet, limit sugar and check your blood glucose every week.",
    "Your hemoglobin is low; take iron and folic acid and come back in two weeks.",
    "",
]
REPLIES = [
    "Follow a low-sugar diet and monitor your blood glucose weekly.",
    "Hemoglobin is below range: take iron supplements with folic acid and recheck in two weeks.",
    "Keep attending your prenatal check-ups.",
]


@pytest.fixture(scope="module")
def metrics():
    return Metrics(device="cpu")


def test_each_figure_is_what_the_library_gives(metrics):
    import sacrebleu
    from bert_score import score
    from rouge_score import rouge_scorer

    from pmlm_lib.common.weights import minilm_path

    table = metrics.per_answer(ANSWERS, REPLIES)
    rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    for i, (a, r) in enumerate(zip(ANSWERS, REPLIES)):
        expected = rouge.score(r, a)
        assert table.loc[i, "ROUGE-1"] == pytest.approx(100 * expected["rouge1"].fmeasure)
        assert table.loc[i, "ROUGE-2"] == pytest.approx(100 * expected["rouge2"].fmeasure)
        assert table.loc[i, "ROUGE-L"] == pytest.approx(100 * expected["rougeL"].fmeasure)
        assert table.loc[i, "BLEU-4"] == pytest.approx(sacrebleu.sentence_bleu(a, [r]).score)
    p, r, f = score(ANSWERS[:2], REPLIES[:2], model_type=str(minilm_path()), num_layers=6)
    assert np.allclose(
        table.loc[:1, ["BERTScore-P", "BERTScore-R", "BERTScore-F1"]].to_numpy(),
        100 * np.stack([p.numpy(), r.numpy(), f.numpy()], axis=1),
        atol=1e-3,
    )
    assert (table.loc[2] == 0).all()  # an empty answer scores zero everywhere, not NaN

    corpus, signature = metrics.corpus_bleu(ANSWERS, REPLIES)
    assert corpus == pytest.approx(sacrebleu.corpus_bleu(ANSWERS, [REPLIES]).score)
    assert "tok:13a" in signature and "smooth:exp" in signature
    # corpus BLEU pools n-grams: it is not the mean of sentence BLEU
    assert corpus != pytest.approx(table["BLEU-4"].mean())


def test_chinese_is_scored_not_silently_zero(metrics):
    import sacrebleu
    from rouge_score import rouge_scorer

    answer, reply = ["建议低糖饮食，每周监测血糖。"], ["请低糖饮食并每周监测血糖。"]
    assert language_of(reply) == "zh"
    assert rouge_scorer.RougeScorer(["rouge1"]).score(reply[0], answer[0])["rouge1"].fmeasure == 0.0  # the pitfall
    table = metrics.per_answer(answer, reply)
    assert table.loc[0, "ROUGE-1"] > 50
    assert table.loc[0, "BLEU-4"] == pytest.approx(sacrebleu.sentence_bleu(answer[0], reply, tokenize="zh").score)
    assert CJKTokenizer().tokenize("血糖 HbA1c 5.6") == ["血", "糖", "hba1c", "5", "6"]
    assert "tok:zh" in metrics.corpus_bleu(answer, reply)[1]


def test_paired_test_sees_a_consistent_gain_and_no_gain():
    rng = np.random.default_rng(0)
    before = rng.normal(60, 5, size=40)
    better = paired_test(before + 2 + rng.normal(0, 1, size=40), before)
    assert better["wilcoxon_p"] < 0.001 and better["cohens_dz"] > 1 and better["ci95_low"] > 0
    same = paired_test(before + rng.normal(0, 1, size=40), before)
    assert same["wilcoxon_p"] > 0.01 and same["ci95_low"] < 0 < same["ci95_high"]
    # differences with sd 1 on 40 patients: (t_0.975 + t_0.8) / sqrt(40), about 0.45
    assert 0.35 < same["min_detectable_80"] < 0.6
    with pytest.raises(ValueError):
        paired_test(np.array([1.0]), np.array([0.5]))
    # no spread (equal scores, up to rounding, on every patient): no detectable difference can be stated
    tied = paired_test(np.array([0.1 + 0.2, 0.3, 0.3, 0.3, 0.3]) / 3, np.full(5, 0.1))
    assert np.isnan(tied["min_detectable_80"]) and tied["mean_difference"] == 0 and tied["wilcoxon_p"] == 1.0


def test_a_finding_tells_the_winners_lead_with_the_interval_of_that_lead():
    """When the other system wins, the sentence names it and gives its lead and the interval of its lead,
    never the loser's negative interval beside a positive lead (a reader would take it for a contradiction)."""
    from pmlm_lib.evaluation.systems import finding

    rng = np.random.default_rng(0)
    consensus = rng.normal(45, 5, 60)
    pmlm = consensus - 1.7 + rng.normal(0, 1, 60)
    test = paired_test(pmlm, consensus)
    sentence = finding(test, "PMLM", "consensus template")
    low, high = test["ci95_low"], test["ci95_high"]
    assert high < 0
    assert (
        sentence.startswith("The consensus template (the policy's most frequent edits")
        and " beats PMLM by +1." in sentence
    )
    assert f"95% CI {-high:+.1f} to {-low:+.1f}, n = 60 patients" in sentence
    ahead = finding(paired_test(consensus, pmlm), "consensus template", "PMLM")
    assert f"95% CI {-high:+.1f} to {-low:+.1f}" in ahead and "beats PMLM" in ahead
