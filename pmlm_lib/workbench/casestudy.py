"""The patient explorer (notebook 07): everything the workbench knows about one patient, in one view.

The patient's indicators over time against the reference ranges, the predictor's probabilities, the peers with
their diagnoses and similarities, the coarse prompt and the refined prompt with the edits marked, and
each responder's answers before and after beside the doctor's reply, with each answer's scores. In
JupyterLab a dropdown picks the patient (ipywidgets); under papermill the same view is rendered
statically for the chosen cases and saved into the run folder.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from pmlm_lib.data.indicators import SALIENT
from pmlm_lib.data.quality import label_key
from pmlm_lib.evaluation import personalization, plots
from pmlm_lib.evaluation.metrics import COLUMNS
from pmlm_lib.evaluation.personalization import profile
from pmlm_lib.evaluation.systems import PMLM, WITHOUT_PR
from pmlm_lib.method.refine import word_edits
from pmlm_lib.workbench.case_export import answers_html, prompt_html
from pmlm_lib.workbench.inputs import RunInputs

TRAJECTORY_INDICATORS = SALIENT[:8]  # the panels of the case view until she chooses others
GAIN = "PMLM − s_0"  # BERTScore-F1 points, the main responder, matched decoding
PREDICTION = {"all": None, "right": True, "wrong": False}
SORTS = {
    "patient id": ("patient", True),
    "visits (most first)": ("visits", False),
    f"{GAIN} (largest first)": (GAIN, False),
    f"{GAIN} (smallest first)": (GAIN, True),
    "confidence (lowest first)": ("confidence", True),
}


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
    # whose edits each evaluated patient got in notebook 05's shuffled control
    shuffled_donors: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))

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
            shuffled_donors=_shuffled_donors(run.root / "tables" / "shuffled_edit.csv"),
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
        return word_edits.mark_edits(row["coarse_prompt"], *word_edits.row_edits(row))

    @cached_property
    def edit_profile(self) -> pd.DataFrame:
        """Every refined test prompt's edit set and clinical cuts (computed once per explorer)."""

        return profile(self.refined)

    def edit_note(self, pid: str) -> str:
        """This patient's edits beside the two personalization controls (the consensus template, and the edits of
        the patient the shuffled control gave her), and whether they cut clinical content."""

        prof = self.edit_profile
        mine = prof.loc[pid, "edit_set"]
        n = max(len(e) for e in prof["edit_set"])  # the policy's number of edits, as notebook 05's consensus
        consensus = personalization.consensus_template(prof["edit_set"], n)
        parts = [
            f"This patient's edits: {personalization.describe(mine)}.",
            f"The consensus template, applied to every patient: {personalization.describe(consensus)} "
            f"({len(mine & consensus)} of her {len(mine)} edits are in it).",
        ]
        donor = self.shuffled_donors.get(pid)
        if donor is not None and donor in prof.index:
            parts.append(
                f"The shuffled control gave her the edits of patient {donor}: "
                f"{personalization.describe(prof.loc[donor, 'edit_set'])}."
            )
        cut = int(prof.loc[pid, "prediction_words_cut"]), int(prof.loc[pid, "peer_words_cut"])
        parts.append(
            f"Her edits cut {cut[0]} word(s) of the predicted condition and {cut[1]} of the peers' diagnoses."
            if any(cut)
            else "Her edits cut no word of the predicted condition or of the peers' diagnoses."
        )
        return " ".join(parts)

    def answers(self, pid: str) -> pd.DataFrame:
        """Each responder's answer per system for this patient with its scores: the matched decoding
        (the one the prompts were refined for), else the first seed of the sampled one. Empty when the
        patient was not in notebook 05's sample."""
        if self.scored is None:
            return pd.DataFrame()
        mine = self.scored[self.scored["patient_id"] == pid]
        if mine.empty:
            return pd.DataFrame()
        return _one_setting(mine).set_index(["responder", "system"])[["answer"] + COLUMNS].round(1)

    def default_indicators(self) -> list[str]:
        return [i for i in TRAJECTORY_INDICATORS if i in self.cohort.indicators] or list(self.cohort.indicators)[:8]

    def figure(self, pid: str, indicators: list[str] | None = None, trimester: int = 3):
        return plots.patient_trajectories(
            self.cohort, pid, list(indicators or self.default_indicators()), trimester=trimester
        )

    # ---- the patient list -------------------------------------------------------------------------
    @cached_property
    def patient_table(self) -> pd.DataFrame:
        """One row per test patient, what the explorer filters and sorts on: the doctor's diagnosis, the
        prediction and whether it is right, the number of examinations, and PMLM − s_0 in BERTScore-F1 (the main
        responder, matched decoding) where notebook 05 answered her."""
        ids = self.patients()
        visits = self.cohort.exams.groupby("patient_id").size()
        predicted = self.predictions.loc[ids, "predicted"]
        diagnosis = self.labels.reindex(ids)
        table = pd.DataFrame(
            {
                "diagnosis": diagnosis,
                "predicted": predicted,
                "prediction right": [label_key(a) == label_key(b) for a, b in zip(predicted, diagnosis)],
                "confidence": self.predictions.loc[ids, "confidence"].astype(float),
                "visits": visits.reindex(ids).fillna(0).astype(int),
                GAIN: self._gains().reindex(ids),
            },
            index=pd.Index(ids, name="patient"),
        )
        return table

    def _gains(self) -> pd.Series:
        if self.scored is None or self.scored.empty:
            return pd.Series(dtype=float)
        main = _one_setting(self.scored)
        main = main[main["responder"] == main["responder"].iloc[0]]  # notebook 05 answers the main responder first
        wide = main.pivot_table(index="patient_id", columns="system", values="BERTScore-F1", aggfunc="first")
        if PMLM not in wide or WITHOUT_PR not in wide:
            return pd.Series(dtype=float)
        return (wide[PMLM] - wide[WITHOUT_PR]).round(1)

    # ---- a peer -----------------------------------------------------------------------------------
    def peer_ids(self, pid: str) -> list[str]:
        return list(self.peer_table(pid)["peer_id"])

    def peer_summary(self, peer: str, of: str) -> str:
        row = self.peers[(self.peers["patient_id"] == of) & (self.peers["peer_id"] == peer)].iloc[0]
        visits = int((self.cohort.exams["patient_id"] == peer).sum())
        return (
            f"**Peer {peer}** of {of} (rank {int(row['rank'])}, similarity {float(row['similarity']):.3f}; "
            f"{self.split.get(peer, '?')} split): {visits} examinations; doctor's diagnosis **{self.labels[peer]}**."
        )

    def history(self, pid: str) -> pd.DataFrame:
        """Her examinations, one row per date, the indicators she has values for (in the data's units)."""
        exams = self.cohort.exams[self.cohort.exams["patient_id"] == pid].sort_values("exam_date")
        shown = [i for i in self.cohort.indicators if exams[i].notna().any()]
        table = exams.set_index(exams["exam_date"].dt.strftime("%Y-%m-%d").rename("date"))[shown]
        return table.rename(columns=lambda c: f"{c} ({self.cohort.units[c]})" if self.cohort.units.get(c) else c)


def _shuffled_donors(path) -> pd.Series:
    """Whose edits each evaluated patient got in notebook 05's shuffled-edit control (empty for older runs)."""
    if not path.exists():
        return pd.Series(dtype=object)
    return pd.read_csv(path, dtype=str).set_index("patient_id")["edits of patient"]


def _one_setting(scored: pd.DataFrame) -> pd.DataFrame:
    """The answers of one decoding: the matched one (the prompts were refined for it), else the first seed of the
    sampled one."""
    if "setting" in scored:
        setting = "matched" if (scored["setting"] == "matched").any() else scored["setting"].iloc[0]
        scored = scored[scored["setting"] == setting]
    return scored[scored["seed"] == scored["seed"].min()]


def filter_patients(
    table: pd.DataFrame,
    diagnosis: str | None = None,
    prediction: str = "all",
    min_visits: int = 0,
    answered_only: bool = False,
    sort: str = "patient id",
) -> list[str]:
    """The explorer's patient list: `table` (CaseData.patient_table) filtered by diagnosis (None: all), by
    whether the prediction is right ("all", "right", "wrong"), by a least number of visits and by having answers,
    then sorted (a key of SORTS; patients without answers last when sorting by the gain)."""
    rows = table
    if diagnosis is not None:
        rows = rows[rows["diagnosis"] == diagnosis]
    if PREDICTION[prediction] is not None:
        rows = rows[rows["prediction right"] == PREDICTION[prediction]]
    rows = rows[rows["visits"] >= min_visits]
    if answered_only:
        rows = rows[rows[GAIN].notna()]
    column, ascending = SORTS[sort]
    if column == "patient":
        return sorted(rows.index)
    return list(rows.sort_values([column], ascending=ascending, na_position="last", kind="stable").index)


def show(data: CaseData, pid: str, indicators: list[str] | None = None, trimester: int = 3) -> None:
    """The interactive view of one patient (displayed, nothing saved)."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML, Markdown, display

    display(Markdown(data.summary(pid)))
    fig = data.figure(pid, indicators, trimester)
    display(fig)
    plt.close(fig)
    display(Markdown("**Prediction** (top probabilities)"), data.probabilities(pid))
    display(Markdown(f"**Peers** (top {data.k} training patients; open one below)"), data.peer_table(pid))
    display(
        Markdown(
            "**Coarse prompt with the policy's edits** (deleted struck through, inserted underlined, with the step)"
        ),
        HTML(prompt_html(data.marked_prompt(pid))),
        Markdown(data.edit_note(pid)),
    )
    answers = data.answers(pid)
    if len(answers):
        display(Markdown("**Answers** beside the doctor's reply"), HTML(answers_html(answers, data.reply(pid))))
    else:
        display(
            Markdown(
                "*This patient was not in the evaluation's sample: no answers were generated "
                f"({len(data.evaluated())} of {len(data.patients())} test patients were).*"
            )
        )


def show_peer(data: CaseData, peer: str, of: str, indicators: list[str] | None = None, trimester: int = 3) -> None:
    """A peer opened from a patient's view: her summary, indicators, examinations and the doctor's reply."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    display(Markdown(data.peer_summary(peer, of)))
    fig = data.figure(peer, indicators, trimester)
    display(fig)
    plt.close(fig)
    display(Markdown("**Her examinations**"), data.history(peer))
    display(Markdown(f"**Doctor's reply**: {data.reply(peer)}"))


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


def _case_tools(data: CaseData, pid: str, lab, chosen):
    """Below a patient's view: open one of her peers, and export the case as one HTML file."""
    import ipywidgets as widgets

    from pmlm_lib.workbench.case_export import export_case

    peer = widgets.Dropdown(
        options=[("(choose a peer)", "")] + [(f"{p} · {data.labels[p]}", p) for p in data.peer_ids(pid)],
        description="open peer",
        layout=widgets.Layout(width="420px"),
    )
    peer.add_class("pmlm-peer")
    peer_out = widgets.Output()
    export = widgets.Button(description="Export case", tooltip="one HTML file that opens without Jupyter")
    exported = widgets.HTML()

    def on_peer(change):
        peer_out.clear_output(wait=True)
        if change["new"]:
            with peer_out:
                show_peer(data, change["new"], pid, *chosen())

    def on_export(_):
        tries = lab.tries_table() if lab is not None else None
        path = export_case(data, pid, tries, *chosen())
        exported.value = f"written: <code>{html.escape(str(path))}</code> (opens in any browser)"

    peer.observe(on_peer, names="value")
    export.on_click(on_export)
    return widgets.VBox([peer, peer_out, widgets.HBox([export, exported])])


def explorer(data: CaseData, render=None, playground: bool = True):
    """The patient list with its filters and sorting, and the view of the chosen patient (JupyterLab, Voilà).
    `render(pid)` is called on every choice (default: `show` into the widget's output area with the chosen
    indicators and reference trimester, then the peer opener, "export case", and the playground of that
    patient, where she edits the prompt and asks the model)."""
    import ipywidgets as widgets
    from IPython.display import display

    from pmlm_lib.workbench.playground import Playground
    from pmlm_lib.workbench.playground import widget as playground_widget

    lab = Playground(data.inputs) if playground and data.inputs is not None else None
    table = data.patient_table
    wide, narrow = widgets.Layout(width="300px"), widgets.Layout(width="170px")
    diagnosis = widgets.Dropdown(
        options=[("all", "")] + [(d, d) for d in sorted(table["diagnosis"].unique())],  # None would show blank
        description="diagnosis",
        layout=wide,
    )
    prediction = widgets.Dropdown(options=list(PREDICTION), description="prediction", layout=wide)
    most = int(table["visits"].max() or 0)
    visits = widgets.BoundedIntText(value=0, min=0, max=most, description="visits ≥", layout=narrow)
    answered = widgets.Checkbox(value=False, description="with answers only", indent=False)
    answered.add_class("pmlm-answered")
    sort = widgets.Dropdown(options=list(SORTS), description="sort by", layout=widgets.Layout(width="340px"))
    count = widgets.HTML()
    indicators = widgets.SelectMultiple(
        options=list(data.cohort.indicators),
        value=data.default_indicators(),
        rows=6,
        description="indicators",
    )
    trimester = widgets.Dropdown(
        options=[("first", 1), ("second", 2), ("third", 3)],
        value=3,
        description="reference",
        tooltip="the trimester whose reference range the green band draws",
        layout=widgets.Layout(width="220px"),
    )

    def chosen():
        return list(indicators.value), trimester.value

    def view(pid: str) -> None:
        show(data, pid, *chosen())
        display(_case_tools(data, pid, lab, chosen))
        if lab is not None:
            display(playground_widget(lab, pid))

    def option(p):
        gain = table.loc[p, GAIN]
        answers = "" if pd.isna(gain) else f" · answers ({GAIN} {gain:+.1f})"
        return f"{p} · {table.loc[p, 'diagnosis']}{answers}", p

    def options(ids):
        return [option(p) for p in ids]

    ids = filter_patients(table)
    dropdown = widgets.Dropdown(
        options=options(ids),
        value=(data.evaluated() or ids)[0] if ids else None,
        description="patient",
        layout=widgets.Layout(width="480px"),
    )
    dropdown.add_class("pmlm-patient")
    output = widgets.Output()

    def draw(pid):
        output.clear_output(wait=True)
        with output:
            if pid is None:
                print("No test patient passes these filters.")
            else:
                (render or view)(pid)

    def on_change(change):
        draw(change["new"])

    def on_filter(_):
        chosen_diagnosis = diagnosis.value or None
        ids = filter_patients(table, chosen_diagnosis, prediction.value, visits.value, answered.value, sort.value)
        count.value = f"{len(ids)} of {len(table)} test patients"
        current = dropdown.value
        dropdown.unobserve(on_change, names="value")
        dropdown.options = options(ids)
        dropdown.value = current if current in ids else (ids[0] if ids else None)
        dropdown.observe(on_change, names="value")
        if dropdown.value != current:
            draw(dropdown.value)

    def on_display(_):
        draw(dropdown.value)

    for control in (diagnosis, prediction, visits, answered, sort):
        control.observe(on_filter, names="value")
    for control in (indicators, trimester):
        control.observe(on_display, names="value")
    dropdown.observe(on_change, names="value")
    on_filter(None)
    box = widgets.VBox(
        [
            widgets.HBox([diagnosis, prediction, visits, answered]),
            widgets.HBox([sort, count]),
            dropdown,
            widgets.HBox([indicators, trimester]),
            output,
        ]
    )
    if ids:
        draw(dropdown.value)
    return box
