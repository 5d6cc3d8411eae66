"""Choices made on validation patients (never test): whether a training is kept or the policy is trained
again (`RestartJudge`), and how a trained policy edits new prompts (its inference mode).

Each comparison answers the candidates' edited prompts of the same validation patients with the
refinement's responder and decoding in one batch, scores them against the doctors' replies, and pairs
them patient by patient (BERTScore points x100, mean and 95% CI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pmlm_lib.common.stats import paired_test
from pmlm_lib.method.refine.controls import random_deletion_prompts
from pmlm_lib.method.refine.edit_sets import apply_edit_set, edit_set, shuffled_edit_sets
from pmlm_lib.method.refine.editor import INFERENCE_MODES, PromptEditor
from pmlm_lib.method.refine.refiner import Episode
from pmlm_lib.method.refine.reward import AnswerReward
from pmlm_lib.method.refine.word_edits import row_edits

if TYPE_CHECKING:  # pandas is imported where tables are made, not at import time
    import pandas as pd


def scored(reward: AnswerReward, episodes: list[Episode], systems: dict[str, dict[str, str]]) -> dict[str, np.ndarray]:
    """Each system's BERTScore (x100) per patient: its prompts (by patient) answered in one batch."""
    references = [e.reference for e in episodes]
    reward.prepare([p for prompts in systems.values() for p in prompts.values()])
    return {
        name: 100 * reward.scores([prompts[e.patient_id] for e in episodes], references)
        for name, prompts in systems.items()
    }


def gain(scores: dict[str, np.ndarray], name: str, against: str) -> dict:
    """`name` − `against` over the same patients: "− against", its CI low and high."""
    test = paired_test(scores[name], scores[against])
    return {
        f"− {against}": test["mean_difference"],
        f"− {against} CI low": test["ci95_low"],
        f"− {against} CI high": test["ci95_high"],
    }


SHUFFLED, CONSENSUS = "shuffled", "consensus template"  # the personalization controls of each mode's edits


def compare_inference_modes(
    editor: PromptEditor, reward: AnswerReward, episodes: list[Episode], modes=None, seed: int = 0, samples: int = 8
) -> pd.DataFrame:
    """How each inference mode of the trained policy does on patients with replies: every mode's edited
    prompts, s_0 and random deletion of n words answered and scored; one row per mode with its mean score
    and its paired gains over s_0, over random deletion (and over greedy), and over the two personalization
    controls: its own edit sets shuffled among these patients (a seeded derangement: − shuffled > 0 says the
    edits fit the patient they were made for) and the policy's consensus template applied to everyone."""
    import pandas as pd

    modes = list(modes or INFERENCE_MODES)
    initial = {e.patient_id: e.prompt for e in episodes}
    tables = {mode: editor.edit_table(episodes, mode, seed, samples) for mode in modes}
    systems = {mode: table["refined_prompt"].to_dict() for mode, table in tables.items()}
    systems["s_0"] = initial
    systems["random deletion"] = random_deletion_prompts(initial, editor.n_steps, seed, editor.min_words)
    if editor.consensus is not None:
        systems[CONSENSUS] = editor.edit_table(episodes, "consensus")["refined_prompt"].to_dict()
    for mode, table in tables.items():
        if mode != "consensus":
            systems[f"{SHUFFLED} ({mode})"] = shuffled_prompts(table, seed, editor.protect)
    scores = scored(reward, episodes, systems)
    rows = []
    for mode in modes:
        row = {"mode": mode, "patients": len(episodes), "BERTScore-F1": scores[mode].mean()}
        if "greedy" in systems:
            row["share unlike greedy"] = float(np.mean([systems[mode][p] != systems["greedy"][p] for p in initial]))
        for against in ("s_0", "random deletion", *(("greedy",) if "greedy" in systems and mode != "greedy" else ())):
            row.update(gain(scores, mode, against))
        if f"{SHUFFLED} ({mode})" in scores:
            row.update(gain({**scores, SHUFFLED: scores[f"{SHUFFLED} ({mode})"]}, mode, SHUFFLED))
        if CONSENSUS in scores:
            row.update(gain(scores, mode, CONSENSUS))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("mode")
    table.attrs["controls"] = {name: float(scores[name].mean()) for name in ("s_0", "random deletion")}
    # every system's score per patient, for statistics across trainings (`pmlm tune`)
    table.attrs["scores"] = pd.DataFrame(scores, index=pd.Index([e.patient_id for e in episodes], name="patient_id"))
    return table


def shuffled_prompts(table: pd.DataFrame, seed: int, protect: tuple[str, ...] = ()) -> dict[str, str]:
    """Each patient's s_0 with another patient's edit set of this edit table (a seeded derangement)."""
    import pandas as pd

    sets = pd.Series({pid: edit_set(r["coarse_prompt"], *row_edits(r))[0] for pid, r in table.iterrows()})
    given = shuffled_edit_sets(sets, seed)
    return {pid: apply_edit_set(table.loc[pid, "coarse_prompt"], e, protect) for pid, (_, e) in given.items()}


def choose_mode(table: pd.DataFrame, default: str = "greedy") -> str:
    """The inference mode to use: `default` unless another mode beats it on the validation patients with
    the 95% CI of the paired difference above zero (then the one that beats it most). A mode merely ahead
    on a few patients does not displace it: on ten patients that happens by chance."""
    if default not in table.index or "− greedy CI low" not in table:
        return str(table["BERTScore-F1"].idxmax())
    better = table[table["− greedy CI low"] > 0] if default == "greedy" else table.iloc[0:0]
    return str(better["− greedy"].idxmax()) if len(better) else default


class RestartJudge:
    """Judges each trained restart on validation patients that choose nothing else: it is accepted when its
    edits (in `mode`) beat random deletion of n words on these patients by at least `margin` BERTScore-F1
    points on average. The trainings measured with `pmlm tune` were either near random deletion (−2 to +2) or
    well above it (+4 to +6); on 24-32 patients a paired interval is about ±4 points wide, so asking for its
    lower end above zero turned good trainings down too. Random deletion is answered once, up front; each
    judged restart costs one answer per patient. Every judgement is kept for the table."""

    def __init__(
        self,
        reward: AnswerReward,
        episodes: list[Episode],
        mode: str,
        seed: int,
        samples: int,
        n_steps: int,
        min_words: int,
        margin: float = 2.0,
    ):
        if len(episodes) < 2:
            raise ValueError(
                f"judging restarts needs validation patients with replies outside notebook 04's `validation_patients` "
                f"({len(episodes)} left): lower `validation_patients` or set `restarts` to 1"
            )
        self.reward, self.episodes, self.mode, self.seed, self.samples = reward, episodes, mode, seed, samples
        self.margin = margin
        initial = {e.patient_id: e.prompt for e in episodes}
        randoms = {"random deletion": random_deletion_prompts(initial, n_steps, seed, min_words)}
        self.random = scored(reward, episodes, randoms)["random deletion"]
        self.rows: list[dict] = []

    def __call__(self, refiner) -> bool:
        edited = refiner.editor.edit_table(self.episodes, self.mode, self.seed, self.samples)["refined_prompt"]
        scores = {**scored(self.reward, self.episodes, {"policy": edited.to_dict()}), "random deletion": self.random}
        row = {
            "restart": len(self.rows),
            "seed": refiner.config.seed,
            "patients": len(self.episodes),
            "BERTScore-F1": scores["policy"].mean(),
            **gain(scores, "policy", "random deletion"),
            "last epoch − random (training episodes)": (refiner.history or [{}])[-1].get("minus_random"),
        }
        row["accepted"] = bool(row["− random deletion"] >= self.margin)
        self.rows.append(row)
        return row["accepted"]

    def table(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("restart")

    def chosen(self) -> int:
        """The accepted restart (the last one trained), or the best of those turned down when none was accepted."""
        accepted = [row["restart"] for row in self.rows if row["accepted"]]
        return accepted[0] if accepted else max(self.rows, key=lambda row: row["BERTScore-F1"])["restart"]

    def sentence(self) -> str:
        """What the judging found, in one sentence for the Findings."""
        chosen = self.chosen()
        parts = [
            f"restart {row['restart']} {row['− random deletion']:+.1f} [{row['− random deletion CI low']:+.1f}, "
            f"{row['− random deletion CI high']:+.1f}]{'' if row['accepted'] else ' (turned down)'}"
            for row in self.rows
        ]
        verdict = (
            f"restart {chosen} edits the test prompts"
            if self.rows[chosen]["accepted"]
            else f"none beat random deletion there by {self.margin:g} points, so the best of them, restart {chosen}, "
            "edits the test prompts"
        )
        return (
            f"{len(self.rows)} training{'s' if len(self.rows) > 1 else ''} of the policy judged on "
            f"{len(self.episodes)} validation patients "
            f"({self.mode} edits − random deletion, BERTScore-F1 points, 95% CI; kept from +{self.margin:g}): "
            f"{'; '.join(parts)}; {verdict}."
        )
