"""How personal the refinement's edits are, whether they fit the patient they were made for, and what
clinical content they cut.

The policy reads the patient (x̂) and every word in context, yet a trained policy can edit most patients
alike, or differently only by the luck of its samples. This module says, for a set of refined prompts:

- each prompt's **edit set**: what was edited, named by the s_0 word's type and its occurrence among the
  words of that type (("similarity", 3): the third "similarity" of the prompt), so that the same edit of
  two patients' prompts is the same set although their prompts differ; `apply_edit_set` applies a set to
  any patient's s_0;
- how many **distinct edit sets** the prompts got, and the share of the most common one;
- two controls that mean the same whatever the edits look like (notebook 05's Table 3):
  the **consensus template** (`consensus_template`: the n word occurrences the policy edits most often over
  all refined prompts, applied to everyone: the best the policy's frequencies can do without the patient),
  and the **shuffled edit** (`shuffled_edit_sets`: each evaluated patient's s_0 gets another evaluated
  patient's edit set, a seeded derangement). PMLM − shuffled > 0 is the direct test that a patient's own
  edits fit her; PMLM − consensus, that editing each patient differently beats one edit for all. ("The most
  common edit set" is no such control: it is a template when edits concentrate, and one patient's random
  draw when they do not.)
- how often the edits **cut clinical content**: a word of the predicted condition, or of a peer's diagnosis
  ("uterine rupture" made "rupture"), which `prompts.clinical_kinds` locates.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from pmlm_lib.data.prompts import clinical_kinds
from pmlm_lib.evaluation.systems import CONSENSUS, SHUFFLED
from pmlm_lib.method.refine.edit_sets import (
    apply_edit_set,
    consensus_template,
    describe,
    edit_set,
    shuffled_edit_sets,
)
from pmlm_lib.method.refine.word_edits import row_edits

__all__ = ["apply_edit_set", "consensus_template", "describe", "edit_set", "shuffled_edit_sets"]  # read from here too

if TYPE_CHECKING:
    import pandas as pd


def profile(refined: pd.DataFrame) -> pd.DataFrame:
    """One row per refined prompt (notebook 04's table: coarse_prompt, positions, operations, words): its
    edit set, and how many words of the predicted condition and of the peers' diagnoses it cut."""
    import pandas as pd

    rows = {}
    for pid, r in refined.iterrows():
        edits, touched = edit_set(r["coarse_prompt"], *row_edits(r))
        kinds = clinical_kinds(r["coarse_prompt"])
        rows[pid] = {
            "edit_set": edits,
            "prediction_words_cut": sum(kinds[i] == "prediction" for i in touched),
            "peer_words_cut": sum(kinds[i] == "peers" for i in touched),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("patient_id")


def top_edit_sets(edits: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The `top` most common edit sets of a profile: what each edits, on how many prompts, which share."""
    import pandas as pd

    counts = Counter(edits["edit_set"]).most_common(top)
    return pd.DataFrame(
        [{"edits": describe(e), "prompts": n, "share": n / len(edits)} for e, n in counts],
        index=pd.RangeIndex(1, len(counts) + 1, name="rank"),
    )


def summary(edits: pd.DataFrame, consensus_size: int | None = None) -> dict:
    """How personal the edits are and what they cut, over the prompts of a profile; with `consensus_size`, the
    consensus template of that many edits, and the share of all edits it covers."""
    counts = Counter(edits["edit_set"])
    top, top_n = counts.most_common(1)[0]
    two = sum(n for _, n in counts.most_common(2))
    return {
        "prompts": len(edits),
        "distinct_edit_sets": len(counts),
        "share_most_common": round(top_n / len(edits), 3),
        "share_two_most_common": round(two / len(edits), 3),
        "most_common": describe(top),
        "share_prediction_cut": round(float((edits["prediction_words_cut"] > 0).mean()), 3),
        "share_peer_diagnosis_cut": round(float((edits["peer_words_cut"] > 0).mean()), 3),
        "clinical_words_cut_per_prompt": round(
            float((edits["prediction_words_cut"] + edits["peer_words_cut"]).mean()), 2
        ),
    } | (_consensus_summary(edits, consensus_size) if consensus_size else {})


def _consensus_summary(edits: pd.DataFrame, n: int) -> dict:
    consensus = consensus_template(edits["edit_set"], n)
    total = sum(len(s) for s in edits["edit_set"])
    covered = sum(len(s & consensus) for s in edits["edit_set"])
    return {"consensus_template": describe(consensus), "share_edits_in_consensus": round(covered / max(total, 1), 3)}


def sentence(s: dict) -> str:
    """The summary as one sentence for the Findings."""
    return (
        f"Of {s['prompts']} refined prompts, {s['distinct_edit_sets']} distinct edit sets; the most common one "
        f"({s['most_common']}) edits {100 * s['share_most_common']:.0f}% of them. The edits cut a word of the "
        f"predicted condition in {100 * s['share_prediction_cut']:.0f}% of the prompts and of some peer's diagnosis in "
        f"{100 * s['share_peer_diagnosis_cut']:.0f}%."
        + (
            f" The consensus template ({s['consensus_template']}) holds {100 * s['share_edits_in_consensus']:.0f}% of "
            "all their edits."
            if "consensus_template" in s
            else ""
        )
    )


def controls(
    refined: pd.DataFrame, patient_ids: list[str], n: int, seed: int, protect: tuple[str, ...] = ()
) -> tuple[dict, pd.Series]:
    """Notebook 05's two personalization controls for the evaluated patients: ({system name: prompts}, donors).
    The consensus template of all refined prompts (`n` edits, the policy's own number) on each s_0, and each
    patient's s_0 with another evaluated patient's edit set (`shuffled_edit_sets`, seeded); `donors` names, for
    each patient, whose edits the shuffled control gave her. Words of the protected clinical content are never
    cut, as the policy could not cut them."""
    import pandas as pd

    edits = profile(refined)
    coarse = refined["coarse_prompt"]
    consensus = consensus_template(edits["edit_set"], n)
    given = shuffled_edit_sets(edits.loc[list(patient_ids), "edit_set"], seed)
    prompts = {
        CONSENSUS: pd.Series({p: apply_edit_set(coarse[p], consensus, protect) for p in patient_ids}, dtype=object),
        SHUFFLED: pd.Series({p: apply_edit_set(coarse[p], e, protect) for p, (_, e) in given.items()}, dtype=object),
    }
    donors = pd.Series({p: donor for p, (donor, _) in given.items()}, dtype=object, name="edits of patient")
    return prompts, donors.rename_axis("patient_id")
