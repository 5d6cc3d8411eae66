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

import pandas as pd

from pmlm_lib.common.paper import TABLE_COLUMNS
from pmlm_lib.method.refine.reward import BERTScoreReward

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
