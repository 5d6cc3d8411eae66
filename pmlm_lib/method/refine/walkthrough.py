"""One episode of Algorithm 1, every value shown: for teaching (notebook 04's worked episode).

The trained policy edits one training patient's s_0 step by step, choosing the most likely word each time (greedy,
as at inference): at each step the prompt's words with π(e | s_i) (Eqs. 5-8: E = BERT(s_i), Ē its mean over the
words, x̂ the patient encoder's output), the chosen word and log π of it. Then Eq. 9 and Eq. 11 with the run's
responder and reward: the answers to s_0 and to s_n, their BERTScores against the doctor's reply, the reward, the
episode's log-probability and its REINFORCE loss (the paper's, without a baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pmlm_lib.data.prompts import join, segment
from pmlm_lib.method.refine.word_edits import apply_edit, edit_rows


@dataclass
class WorkedEpisode:
    patient_id: str
    shapes: dict[str, tuple[int, ...]]  # E, Ē and x̂ at the first step
    steps: list[pd.DataFrame] = field(default_factory=list)  # per step: word, pi, editable, chosen
    chosen: list[str] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)  # log π of each chosen word
    s_0: str = ""
    s_n: str = ""
    answers: dict[str, str] = field(default_factory=dict)  # "s_0" and "s_n"
    scores: dict[str, float] = field(default_factory=dict)  # BS(LLM_r(.), r), on the reward's scale
    reward: float = 0.0
    loss: float = 0.0

    def text(self) -> str:
        """The episode in words and numbers: shapes, the deleted words, both answers and Eqs. 9 and 11."""
        shapes = ", ".join(f"{k} {list(v)}" for k, v in self.shapes.items())
        return "\n".join(
            [
                f"Patient {self.patient_id}. Shapes at step 1: {shapes}.",
                f"Deleted, in order: {', '.join(repr(w.strip()) for w in self.chosen)}.",
                f"s_n: {self.s_n}",
                f"LLM_r(s_0): {self.answers['s_0']}",
                f"LLM_r(s_n): {self.answers['s_n']}",
                f"BS(LLM_r(s_n), r) = {self.scores['s_n']:.4f}; BS(LLM_r(s_0), r) = {self.scores['s_0']:.4f}; "
                f"Reward (Eq. 9) = {self.reward:+.4f}",
                f"log π(episode) = Σ log π(e_j | s_i) = {sum(self.logp):.3f}; loss (Eq. 11, no baseline) = "
                f"−log π · Reward = {self.loss:+.4f}",
            ]
        )

    def summary(self) -> pd.DataFrame:
        """Per step: the chosen word, its π and log π, and the policy's entropy over the words."""
        rows = []
        for i, (table, word, lp) in enumerate(zip(self.steps, self.chosen, self.logp), start=1):
            p = table.loc[table["editable"], "pi"].to_numpy()
            rows.append(
                {
                    "step": i,
                    "words": len(table),
                    "deleted": word.strip(),
                    "π of it": float(table.loc[table["chosen"], "pi"].iloc[0]),
                    "log π": lp,
                    "largest π": float(p.max()),
                    "entropy": float(-(p * np.log(np.clip(p, 1e-12, None))).sum()),
                }
            )
        return pd.DataFrame(rows).set_index("step")


@torch.no_grad()
def worked_episode(editor, reward, patient_id: str, prompt: str, x_prime, reference: str) -> WorkedEpisode:
    """The trained `editor`'s greedy episode on one patient, scored by `reward` (the run's AnswerReward)."""
    editor.train(False)
    words = segment(prompt)
    x_hat = editor.patient_vector(x_prime)
    flags = editor.editable(words)
    E = editor.embedder.embed([words])[0].to(editor.device)
    out = WorkedEpisode(
        patient_id,
        {
            "E": tuple(E.shape),
            "Ē": (E.shape[1],),
            "x̂": tuple(x_hat.shape),
            "[e_i ‖ Ē ‖ x̂]": (E.shape[0], 2 * E.shape[1] + x_hat.shape[0]),
        },
        s_0=prompt,
    )
    for _ in range(editor.n_steps):
        if len(words) <= editor.min_words or (flags is not None and not any(flags)):
            break
        if editor.embed != "once":
            E = editor.embedder.embed([words])[0].to(editor.device)
        logp = editor.word_logp(E, x_hat, flags)
        j = int(torch.argmax(logp))
        pi = logp.exp().cpu().numpy()
        out.steps.append(
            pd.DataFrame(
                {
                    "word": words,
                    "pi": pi,
                    "editable": flags if flags is not None else [True] * len(words),
                    "chosen": [i == j for i in range(len(words))],
                }
            )
        )
        out.chosen.append(words[j])
        out.logp.append(float(logp[j]))
        words = apply_edit(words, j, "delete", None)
        if flags is not None:
            flags = flags[:j] + flags[j + 1 :]
        if editor.embed == "once":
            E = edit_rows(E, j, "delete", None)
    out.s_n = join(words)
    answers = reward.answer([prompt, out.s_n])  # LLM_r, with the refinement's decoding (s_0's from the cache)
    before, after = (float(v) for v in reward.scorer(answers, [reference, reference]))  # BS(., r), as the reward
    out.answers = {"s_0": answers[0], "s_n": answers[1]}
    out.scores = {"s_0": before, "s_n": after}
    out.reward = after - before  # Eq. 9
    out.loss = -sum(out.logp) * out.reward  # Eq. 11 for this one episode
    return out


def heat_html(heat: pd.DataFrame) -> str:
    """A prompt's words shaded by π (darker: more likely deleted first; a chosen word boxed); protected words grey."""
    import html

    top = float(heat["pi"].max()) or 1.0
    chosen = heat["chosen"] if "chosen" in heat else pd.Series(False, index=heat.index)
    spans = []
    for word, pi, editable, picked in zip(heat["word"], heat["pi"], heat["editable"], chosen):
        shade = f"rgba(196,78,82,{0.08 + 0.8 * pi / top:.2f})" if editable else "#e6e6e6"
        box = "outline:2px solid #222;" if picked else ""
        spans.append(
            f"<span title='π = {pi:.3f}' style='background:{shade};{box}padding:1px 0'>{html.escape(word)}</span>"
        )
    return (
        "<div class='pmlm-heat' style='font-family:monospace;font-size:90%;white-space:pre-wrap'>"
        + "".join(spans)
        + "</div>"
    )
