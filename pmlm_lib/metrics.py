"""Step 7: the paper's seven metrics of an answer against the doctor's reply, named precisely.

- BLEU-4 (sacrebleu): `bleu_corpus` is corpus BLEU (n-gram counts pooled over all answers, one
  brevity penalty); `bleu_sentence` is the mean of sentence BLEU with sacrebleu's default
  exponential smoothing. They differ; the table says which, and the signature is kept.
  Tokenizer 13a for English, zh for Chinese.
- ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score). ROUGE-L here is `rougeL` (longest common
  subsequence over the whole text), not `rougeLsum`. rouge-score's default tokenizer keeps only
  [a-z0-9] and turns Chinese into nothing; Chinese text gets a tokenizer that makes each CJK
  character a token.
- BERTScore precision, recall and F1 (bert-score) with one reused scorer (the bundled MiniLM by
  default, any model by parameter), idf off, no baseline rescaling; the hash is recorded.

All figures are percentages (x100), as in the paper's tables.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .paper import TABLE_COLUMNS

COLUMNS = TABLE_COLUMNS  # the paper's order
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def language_of(texts: list[str]) -> str:
    """'zh' when Chinese characters make up a tenth of the characters or more, else 'en'."""
    joined = "".join(texts)
    return "zh" if joined and len(_CJK.findall(joined)) >= 0.1 * len(joined) else "en"


class CJKTokenizer:
    """rouge-score tokenizer that keeps Chinese: one token per CJK character, lower-cased latin words and
    numbers as the default tokenizer has them."""

    _TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[a-z0-9]+")

    def tokenize(self, text: str) -> list[str]:
        return self._TOKEN.findall(text.lower())


class Metrics:
    """Scores answers against references with the three libraries; build once, call many times."""

    def __init__(self, bertscore=None, lang: str = "auto", device: str = "auto"):
        from .reward import BERTScoreReward

        self.bertscore = bertscore if bertscore is not None else BERTScoreReward(device=device)
        self.lang = lang
        self._rouge: dict[str, object] = {}

    def _language(self, texts: list[str]) -> str:
        return language_of(texts) if self.lang == "auto" else self.lang

    def _rouge_scorer(self, lang: str):
        from rouge_score import rouge_scorer

        if lang not in self._rouge:
            self._rouge[lang] = rouge_scorer.RougeScorer(
                ["rouge1", "rouge2", "rougeL"], use_stemmer=False, tokenizer=CJKTokenizer() if lang == "zh" else None
            )
        return self._rouge[lang]

    def per_answer(self, answers: list[str], references: list[str]) -> pd.DataFrame:
        """One row per answer: sentence BLEU-4, ROUGE F-measures and BERTScore P/R/F1 (x100)."""
        import sacrebleu

        if len(answers) != len(references):
            raise ValueError(f"{len(answers)} answers but {len(references)} references")
        lang = self._language(references)
        tokenize = "zh" if lang == "zh" else "13a"
        rouge = self._rouge_scorer(lang)
        rows = []
        for a, r in zip(answers, references):
            scores = rouge.score(r, a)  # rouge-score's order: (target, prediction)
            rows.append(
                {
                    "BLEU-4": sacrebleu.sentence_bleu(a, [r], tokenize=tokenize).score,
                    "ROUGE-L": 100 * scores["rougeL"].fmeasure,
                    "ROUGE-1": 100 * scores["rouge1"].fmeasure,
                    "ROUGE-2": 100 * scores["rouge2"].fmeasure,
                }
            )
        out = pd.DataFrame(rows, columns=COLUMNS[:4])
        out[COLUMNS[4:]] = 100 * self.bertscore.all_scores(answers, references)
        return out

    def corpus_bleu(self, answers: list[str], references: list[str]) -> tuple[float, str]:
        """Corpus BLEU-4 and sacrebleu's signature (which says tokenizer, smoothing and version)."""
        import sacrebleu

        tokenize = "zh" if self._language(references) == "zh" else "13a"
        bleu = sacrebleu.BLEU(tokenize=tokenize)
        return bleu.corpus_score(answers, [references]).score, str(bleu.get_signature())

    def bleu_signature(self, references: list[str] | None = None) -> str:
        """sacrebleu's signature of the corpus BLEU figures (tokenizer, smoothing, version) for these
        references' language. sacrebleu signs only after it has seen the number of references, so a
        one-word corpus is scored first."""
        return self.corpus_bleu(["-"], ["-"] if references is None else references[:1])[1]

    def describe(self) -> dict:
        """What produced the figures, for the run record."""
        return {
            "bleu": {"corpus": self.bleu_signature(), "sentence": "mean of sacrebleu.sentence_bleu (exp smoothing)"},
            "rouge": "rouge-score rouge1/rouge2/rougeL F-measure, no stemming; CJK characters as tokens for Chinese",
            "bertscore": self.bertscore.hash,
        }


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.80) -> float:
    """The smallest true mean difference a paired t-test on n patients detects with the given power
    (two-sided alpha), for differences with standard deviation sd: (t_{1-α/2} + t_{power}) · sd / √n,
    with n − 1 degrees of freedom. Unknown (NaN) where the differences showed no spread at all (every
    patient's difference the same, such as BLEU 0 for both systems): zero would read as "any difference
    shows", which n such patients cannot tell."""
    from scipy import stats

    if n < 2 or not np.isfinite(sd) or sd == 0:
        return float("nan")
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / np.sqrt(n))


def paired_test(after: np.ndarray, before: np.ndarray) -> dict:
    """Patient-by-patient comparison of two systems on the same patients: mean difference, its 95%
    confidence interval, the Wilcoxon signed-rank p-value, the paired t-test p-value, the effect size
    (Cohen's d_z = mean difference / sd of the differences), the share of patients improved, and the
    minimum difference detectable at 80% power (alpha 0.05) given the observed spread."""
    from scipy import stats

    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    n = len(diff)
    if n < 2:
        raise ValueError("a paired test needs at least two patients")
    # equal differences (BLEU 0 for both systems on every patient, averaged over seeds) can leave a
    # rounding-sized spread: that is no spread
    if np.ptp(diff) <= 1e-9 * max(1.0, float(np.abs(diff).max())):
        diff = np.full(n, round(float(diff.mean()), 9))
    sd = diff.std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if sd > 0 else 0.0
    nonzero = diff[diff != 0]
    wilcoxon = stats.wilcoxon(nonzero).pvalue if len(nonzero) >= 1 else 1.0
    t = stats.ttest_1samp(diff, 0.0).pvalue if sd > 0 else (1.0 if diff.mean() == 0 else 0.0)
    return {
        "n": n,
        "mean_difference": float(diff.mean()),
        "ci95_low": float(diff.mean() - half),
        "ci95_high": float(diff.mean() + half),
        "t_test_p": float(t),
        "wilcoxon_p": float(wilcoxon),
        "cohens_dz": float(diff.mean() / sd) if sd > 0 else float("nan"),
        "share_improved": float((diff > 0).mean()),
        "min_detectable_80": min_detectable_difference(sd, n),
    }
