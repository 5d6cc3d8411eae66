"""Choices made on validation patients (never test): which of a training's restarts edits the test
prompts, and how a trained policy edits them (its inference mode).

Each comparison answers every candidate's edited prompts of the same validation patients with the
refinement's responder and decoding in one batch, scores them against the doctors' replies, and pairs
them patient by patient (BERTScore points x100, mean and 95% CI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pmlm_lib.common.stats import paired_test
from pmlm_lib.method.refine.controls import random_deletion_prompts
from pmlm_lib.method.refine.editor import INFERENCE_MODES, PromptEditor
from pmlm_lib.method.refine.refiner import Episode
from pmlm_lib.method.refine.reward import AnswerReward

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


def compare_inference_modes(
    editor: PromptEditor, reward: AnswerReward, episodes: list[Episode], modes=None, seed: int = 0, samples: int = 8
) -> pd.DataFrame:
    """How each inference mode of the trained policy does on patients with replies: every mode's edited
    prompts, s_0 and random deletion of n words answered and scored; one row per mode with its mean score
    and its paired gains over s_0 and over random deletion (and over greedy)."""
    import pandas as pd

    modes = list(modes or INFERENCE_MODES)
    initial = {e.patient_id: e.prompt for e in episodes}
    systems = {mode: editor.edit_table(episodes, mode, seed, samples)["refined_prompt"].to_dict() for mode in modes}
    systems["s_0"] = initial
    systems["random deletion"] = random_deletion_prompts(initial, editor.n_steps, seed, editor.min_words)
    scores = scored(reward, episodes, systems)
    rows = []
    for mode in modes:
        row = {"mode": mode, "patients": len(episodes), "BERTScore-F1": scores[mode].mean()}
        if "greedy" in systems:
            row["share unlike greedy"] = float(np.mean([systems[mode][p] != systems["greedy"][p] for p in initial]))
        for against in ("s_0", "random deletion", *(("greedy",) if "greedy" in systems and mode != "greedy" else ())):
            row.update(gain(scores, mode, against))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("mode")
    table.attrs["controls"] = {name: float(scores[name].mean()) for name in ("s_0", "random deletion")}
    return table


def choose_mode(table: pd.DataFrame, default: str = "greedy") -> str:
    """The inference mode to use: `default` unless another mode beats it on the validation patients with
    the 95% CI of the paired difference above zero (then the one that beats it most). A mode merely ahead
    on a few patients does not displace it: on ten patients that happens by chance."""
    if default not in table.index or "− greedy CI low" not in table:
        return str(table["BERTScore-F1"].idxmax())
    better = table[table["− greedy CI low"] > 0] if default == "greedy" else table.iloc[0:0]
    return str(better["− greedy"].idxmax()) if len(better) else default


def compare_restarts(
    editors: list[PromptEditor],
    reward: AnswerReward,
    episodes: list[Episode],
    mode: str = "greedy",
    seed: int = 0,
    samples: int = 8,
) -> pd.DataFrame:
    """Each restart's edits (in `mode`) of the same validation patients, answered and scored: one row per
    restart with its mean score, how many prompts it edits unlike the restart that scores best, and its
    paired difference with that restart (no s_0 or random deletion: choosing needs only the restarts'
    answers, and notebook 05 compares the chosen one with them on test patients)."""
    import pandas as pd

    if len(episodes) < 2:
        raise ValueError(
            f"choosing among {len(editors)} restarts needs validation patients with replies outside notebook 04's "
            f"`validation_patients` ({len(episodes)} left): lower `validation_patients` or set `restarts` to 1"
        )
    systems = {
        f"restart {r}": editor.edit_table(episodes, mode, seed, samples)["refined_prompt"].to_dict()
        for r, editor in enumerate(editors)
    }
    scores = scored(reward, episodes, systems)
    best = max(scores, key=lambda name: scores[name].mean())
    rows = []
    for r, name in enumerate(systems):
        row = {"restart": r, "patients": len(episodes), "BERTScore-F1": scores[name].mean()}
        row["share unlike the best"] = float(
            np.mean([systems[name][e.patient_id] != systems[best][e.patient_id] for e in episodes])
        )
        if len(editors) > 1:
            row.update({k.replace(best, "the best"): v for k, v in gain(scores, name, best).items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("restart")


def choose_restart(table: pd.DataFrame) -> int:
    """The restart whose edits scored highest on the validation patients (a restart that edits them all
    alike with another ties with it, and the first is kept)."""
    return int(table["BERTScore-F1"].idxmax())


def restart_sentence(table: pd.DataFrame) -> str:
    """What the choice among restarts found, in one sentence for the Findings."""
    chosen = choose_restart(table)
    others = table.drop(index=chosen)
    n = int(table["patients"].iloc[0])
    parts = [
        f"restart {r} {row['− the best']:+.1f} [{row['− the best CI low']:+.1f}, {row['− the best CI high']:+.1f}]"
        for r, row in others.iterrows()
    ]
    return (
        f"Of {len(table)} trainings of the policy on the same episodes, restart {chosen} edits the test prompts: its "
        f"edits of {n} validation patients scored {table.loc[chosen, 'BERTScore-F1']:.1f} BERTScore-F1; the others, "
        f"paired with it (95% CI): {'; '.join(parts)}."
    )
