"""The patient explorer (notebook 07): everything the workbench knows about one patient, in one view.

The patient's indicators over time against the reference ranges, the predictor's probabilities, the peers with
their diagnoses and similarities, the coarse prompt and the refined prompt with the edits marked, and
each responder's answers before and after beside the doctor's reply, with each answer's scores. In
JupyterLab a dropdown picks the patient (ipywidgets); under papermill the same view is rendered
statically for the chosen cases and saved into the run folder.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from pmlm_lib.data.indicators import SALIENT
from pmlm_lib.data.quality import label_key
from pmlm_lib.evaluation import personalization, plots
from pmlm_lib.evaluation.metrics import COLUMNS
from pmlm_lib.evaluation.personalization import profile
from pmlm_lib.method.refine import word_edits
from pmlm_lib.workbench.inputs import RunInputs

TRAJECTORY_INDICATORS = SALIENT[:8]  # the panels of the case view


@dataclass
class CaseData:
    cohort: object
    split: pd.Series
    predictions: pd.DataFrame
    peers: pd.DataFrame
    coarse: pd.Series
    refined: pd.DataFrame
    scored: pd.DataFrame | None
    k: int
    inputs: RunInputs | None = None  # what the run holds (the playground's policy, encoder and responders)

    @classmethod
    def load(cls, run) -> CaseData:
        inputs = RunInputs.load(run)
        scored_path = run.root / "answers_scored.parquet"
        return cls(
            cohort=inputs.cohort,
            split=inputs.split,
            predictions=inputs.predictions,
            peers=inputs.peers,
            coarse=inputs.coarse,
            refined=inputs.refined,
            k=inputs.k,
            scored=pd.read_parquet(scored_path) if scored_path.exists() else None,
            inputs=inputs,
        )

    @property
    def labels(self) -> pd.Series:
        return self.cohort.by_patient("label")

    def reply(self, pid: str) -> str:
        reply = self.cohort.by_patient("reference_reply")[pid] if self.cohort.has_replies else None
        return "(no reply recorded for this patient)" if reply is None or pd.isna(reply) else str(reply)

    def patients(self) -> list[str]:
        """Every test patient the policy edited (prediction, peers and marked prompt for all)."""
        return sorted(self.refined.index)

    def evaluated(self) -> list[str]:
        """The patients with answers and scores (notebook 05's sample)."""
        return sorted(self.scored["patient_id"].unique()) if self.scored is not None else []

    def pick_cases(self) -> list[str]:
        """One normal patient and one with a condition (the paper's case study shows both); the
        condition case prefers a patient whose condition the predictor got right."""
        ids = self.evaluated() or self.patients()
        labels = self.labels
        # a normal patient from the evaluated ones (they have answers), else any refined test patient
        # spellings compare as the loader merged them ("Normal", "normal ")
        normal = [p for p in ids if label_key(labels[p]) == "normal"] or [
            p for p in self.refined.index if label_key(labels[p]) == "normal"
        ]
        sick = [p for p in ids if label_key(labels[p]) != "normal"]
        right = [p for p in sick if self.predictions.loc[p, "predicted"] == labels[p]]
        return list(dict.fromkeys((normal or ids)[:1] + (right or sick or ids)[:1]))

    # ---- the parts of the view ------------------------------------------------------------------
    def summary(self, pid: str) -> str:
        visits = int((self.cohort.exams["patient_id"] == pid).sum())
        row = self.predictions.loc[pid]
        return (
            f"**Patient {pid}** ({self.split.get(pid, '?')} split): {visits} examinations; doctor's diagnosis "
            f"**{self.labels[pid]}**; predicted **{row['predicted']}** (p = {row['confidence']:.2f}, {row['how']})."
        )

    def probabilities(self, pid: str, top: int = 5) -> pd.DataFrame:
        row = self.predictions.loc[pid, [c for c in self.predictions.columns if c.startswith("p: ")]].astype(float)
        out = row.sort_values(ascending=False).head(top).rename(lambda c: c[3:]).to_frame("probability")
        out.index.name = "label"
        return out.round(3)

    def peer_table(self, pid: str) -> pd.DataFrame:
        mine = self.peers[(self.peers["patient_id"] == pid) & (self.peers["rank"] <= self.k)]
        return mine.drop(columns="patient_id").set_index("rank").round(3)

    def marked_prompt(self, pid: str) -> str:
        row = self.refined.loc[pid]
        ops = list(row["operations"]) if "operations" in row else None
        words = list(row["words"]) if "words" in row else None
        return word_edits.mark_edits(row["coarse_prompt"], list(row["positions"]), ops, words)

    @cached_property
    def edit_profile(self) -> pd.DataFrame:
        """Every refined test prompt's edit set and clinical cuts (computed once per explorer)."""

        return profile(self.refined)

    def edit_note(self, pid: str) -> str:
        """How this patient's edits compare with the template edit (the policy's most common edit set), and
        whether they cut clinical content."""

        prof = self.edit_profile
        mine, template = prof.loc[pid, "edit_set"], personalization.template_edit(prof)
        share = float((prof["edit_set"] == template).mean())
        same = (
            f"the same as the template edit, which {100 * share:.0f}% of the test prompts got"
            if mine == template
            else f"not the template edit ({personalization.describe(template)}, on {100 * share:.0f}% of the "
            "test prompts)"
        )
        cut = int(prof.loc[pid, "prediction_words_cut"]), int(prof.loc[pid, "peer_words_cut"])
        clinical = (
            f" They cut {cut[0]} word(s) of the predicted condition and {cut[1]} of the peers' diagnoses."
            if any(cut)
            else " They cut no word of the predicted condition or of the peers' diagnoses."
        )
        return f"This patient's edits ({personalization.describe(mine)}) are {same}.{clinical}"

    def answers(self, pid: str) -> pd.DataFrame:
        """Each responder's answer per system for this patient with its scores: the matched decoding
        (the one the prompts were refined for), else the first seed of the sampled one. Empty when the
        patient was not in notebook 05's sample."""
        if self.scored is None:
            return pd.DataFrame()
        mine = self.scored[self.scored["patient_id"] == pid]
        if mine.empty:
            return pd.DataFrame()
        if "setting" in mine:
            setting = "matched" if (mine["setting"] == "matched").any() else mine["setting"].iloc[0]
            mine = mine[mine["setting"] == setting]
        mine = mine[mine["seed"] == mine["seed"].min()]
        return mine.set_index(["responder", "system"])[["answer"] + COLUMNS].round(1)

    def figure(self, pid: str):
        return plots.patient_trajectories(
            self.cohort,
            pid,
            [i for i in TRAJECTORY_INDICATORS if i in self.cohort.indicators] or list(self.cohort.indicators)[:8],
        )


def _answers_html(answers: pd.DataFrame, reply: str) -> str:
    cells = [f"<tr><th style='text-align:left'>doctor's reply</th><td colspan=2>{html.escape(reply)}</td></tr>"]
    for (responder, system), row in answers.iterrows():
        scores = ", ".join(f"{c} {row[c]:.1f}" for c in ("BERTScore-F1", "ROUGE-L", "BLEU-4"))
        cells.append(
            f"<tr><th style='text-align:left'>{html.escape(system)}<br><small>{html.escape(responder)}</small></th>"
            f"<td>{html.escape(row['answer'])}</td><td><small>{scores}</small></td></tr>"
        )
    return "<table>" + "".join(cells) + "</table>"


def _prompt_html(marked: str) -> str:
    import re

    text = html.escape(marked)
    text = re.sub(r"\[-(.+?)-\](\d+)", r"<del style='color:#C44E52'>\1</del><sup>\2</sup>", text)
    text = re.sub(r"\{\+(.+?)\+\}(\d+)", r"<ins style='color:#55A868'>\1</ins><sup>\2</sup>", text)
    return f"<div style='white-space:pre-wrap;font-family:monospace;font-size:90%'>{text}</div>"


def show(data: CaseData, pid: str) -> None:
    """The interactive view of one patient (displayed, nothing saved)."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML, Markdown, display

    display(Markdown(data.summary(pid)))
    fig = data.figure(pid)
    display(fig)
    plt.close(fig)
    display(Markdown("**Prediction** (top probabilities)"), data.probabilities(pid))
    display(Markdown(f"**Peers** (top {data.k} training patients)"), data.peer_table(pid))
    display(
        Markdown(
            "**Coarse prompt with the policy's edits** (deleted struck through, inserted underlined, with the step)"
        ),
        HTML(_prompt_html(data.marked_prompt(pid))),
        Markdown(data.edit_note(pid)),
    )
    answers = data.answers(pid)
    if len(answers):
        display(Markdown("**Answers** beside the doctor's reply"), HTML(_answers_html(answers, data.reply(pid))))
    else:
        display(
            Markdown(
                "*This patient was not in the evaluation's sample: no answers were generated "
                f"({len(data.evaluated())} of {len(data.patients())} test patients were).*"
            )
        )


def save(run, data: CaseData, pid: str, name: str) -> None:
    """The static view of one case, saved into the run folder (and shown) for the report."""
    from IPython.display import Markdown, display

    display(Markdown(data.summary(pid)))
    run.figure(
        data.figure(pid),
        f"{name}_indicators",
        f"Case {pid}: indicators over time; green band: third-trimester reference range, red: outside it.",
    )
    display(
        run.table(
            data.probabilities(pid),
            f"{name}_prediction",
            f"Case {pid}: the predictor's top probabilities (doctor's diagnosis: {data.labels[pid]}).",
        )
    )
    display(
        run.table(data.peer_table(pid), f"{name}_peers", f"Case {pid}: the top-{data.k} peers with their diagnoses.")
    )
    print(
        run.text(
            f"{name}_prompt",
            f"Case {pid}: the coarse prompt with the policy's edits ([-deleted-] / {{+inserted+}}, step number).",
            data.marked_prompt(pid),
        )
    )
    print(data.edit_note(pid))
    answers = data.answers(pid)
    if len(answers):
        reply = pd.DataFrame(
            [{"responder": "doctor", "system": "reference reply", "answer": data.reply(pid)}]
        ).set_index(["responder", "system"])
        display(
            run.table(
                pd.concat([reply, answers]),
                f"{name}_answers",
                f"Case {pid}: the doctor's reply and each answer "
                "(the decoding the prompts were refined for) with its scores.",
            )
        )


def explorer(data: CaseData, render=None, playground: bool = True):
    """A dropdown of patients and the view of the chosen one (JupyterLab). `render(pid)` is called
    on every choice (default: `show` into the widget's output area, then the playground of that patient, where
    she edits the prompt and asks the model)."""
    import ipywidgets as widgets
    from IPython.display import display

    from pmlm_lib.workbench.playground import Playground
    from pmlm_lib.workbench.playground import widget as playground_widget

    lab = Playground(data.inputs) if playground and data.inputs is not None else None

    def view(pid: str) -> None:
        show(data, pid)
        if lab is not None:
            display(playground_widget(lab, pid))

    ids = data.patients()
    labels = data.labels
    evaluated = set(data.evaluated())
    options = [(f"{p} · {labels[p]}" + (" · answers" if p in evaluated else ""), p) for p in ids]
    dropdown = widgets.Dropdown(
        options=options,
        value=(data.evaluated() or ids)[0] if ids else None,
        description="patient",
        layout=widgets.Layout(width="480px"),
    )
    output = widgets.Output()

    def on_change(change):
        output.clear_output(wait=True)
        with output:
            (render or view)(change["new"])

    dropdown.observe(on_change, names="value")
    box = widgets.VBox([dropdown, output])
    if ids:
        on_change({"new": dropdown.value})
    return box
