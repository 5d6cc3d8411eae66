"""The clinician's playground (notebook 07): see what the policy would delete, edit a prompt, ask the model.

For any test patient: the coarse prompt s_0 with π(e | s_0) on each word (a heat: how likely the trained policy is
to delete it first), the refined prompt, and a prompt of her own; "Ask" answers it with a responder of the run (the
one the prompts were refined for, by default, with the refinement's decoding) and scores the answer against the
doctor's reply (BERTScore-F1 and ROUGE-L), beside the answers to s_0 and to PMLM's prompt for the same patient.
Answers go through the answer cache: a patient outside notebook 05's sample is answered on demand, once. Every try
since the playground opened is kept, so that she can compare her edits.
"""

from __future__ import annotations

import html
import time

import pandas as pd

from pmlm_lib.evaluation.systems import PMLM, WITHOUT_PR
from pmlm_lib.method.refine.walkthrough import heat_html
from pmlm_lib.workbench.case_export import answers_html
from pmlm_lib.workbench.inputs import RunInputs

YOURS = "your prompt"
SCORES = ["BERTScore-F1", "ROUGE-L"]


class Playground:
    def __init__(self, inputs: RunInputs, n_parallel: int = 2, device: str = "auto"):
        self.inputs = inputs
        self.n_parallel, self.device = n_parallel, device
        self.tries: list[dict] = []
        self._responders: dict[str, object] = {}
        self._metrics = None

    # ---- what the run offers ----------------------------------------------------------------------
    def responders(self) -> list[str]:
        """The responders this run refined prompts for (the main one first)."""
        names = [self.inputs.responder_label]
        for path in sorted(self.inputs.run.root.glob("results/rl_refinement@*.json")):
            names.append(path.stem.split("@", 1)[1])
        return names

    def _inputs_for(self, responder: str) -> RunInputs:
        return self.inputs if responder == self.inputs.responder_label else self.inputs.for_responder(responder)

    def coarse(self, pid: str) -> str:
        return self.inputs.coarse[pid]

    def refined(self, pid: str, responder: str | None = None) -> str:
        return self._inputs_for(responder or self.inputs.responder_label).refined.loc[pid, "refined_prompt"]

    def heat(self, pid: str, responder: str | None = None) -> pd.DataFrame:
        """π(e | s_0) on each word of the patient's coarse prompt, under the policy trained for `responder`."""
        inputs = self._inputs_for(responder or self.inputs.responder_label)
        return inputs.editor().word_probabilities(self.coarse(pid), inputs.x_prime([pid])[0])

    # ---- asking ---------------------------------------------------------------------------------------
    def _responder(self, name: str):
        if name not in self._responders:
            self._responders[name] = self._inputs_for(name).responder(None, self.n_parallel)
        return self._responders[name]

    def ask(self, pid: str, prompt: str, responder: str | None = None, progress: bool = False) -> pd.DataFrame:
        """Her prompt, s_0 and PMLM's prompt answered for this patient (cached), each scored against the doctor's
        reply; the try is kept in `tries`. Rows: prompt kind; columns: answer, scores, seconds. `progress`: a bar of
        the answers still to come (where they are not in the cache)."""
        from pmlm_lib.evaluation.metrics import Metrics

        if not self.inputs.cohort.with_reply([pid]):  # before any answer is spent on her
            raise ValueError(f"patient {pid} has no doctor's reply: her answers cannot be scored")
        name = responder or self.inputs.responder_label
        inputs = self._inputs_for(name)
        kinds = {YOURS: prompt, WITHOUT_PR: self.coarse(pid), PMLM: self.refined(pid, name)}
        started = time.perf_counter()
        answers = self._responder(name).answer(list(kinds.values()), inputs.decoding, progress=progress)
        seconds = time.perf_counter() - started
        if self._metrics is None:
            self._metrics = Metrics(device=self.device)
        reply = str(self.inputs.replies[pid])
        scores = self._metrics.per_answer(answers, [reply] * len(answers))[SCORES]
        table = pd.DataFrame({"prompt": list(kinds.values()), "answer": answers}, index=list(kinds)).join(
            scores.set_index(pd.Index(list(kinds)))
        )
        table.index.name = "prompt kind"
        self.tries.append(
            {
                "try": len(self.tries) + 1,
                "patient": pid,
                "responder": name,
                "words": len(prompt.split()),
                **{f"{m}": float(table.loc[YOURS, m]) for m in SCORES},
                **{f"{m} − s_0": float(table.loc[YOURS, m] - table.loc[WITHOUT_PR, m]) for m in SCORES},
                "seconds": round(seconds, 1),
                "prompt": prompt,
            }
        )
        return table

    def tries_table(self) -> pd.DataFrame:
        return pd.DataFrame(self.tries).set_index("try") if self.tries else pd.DataFrame()

    def close(self) -> None:
        for responder in self._responders.values():
            responder.close()
        self._responders.clear()


def widget(playground: Playground, pid: str):
    """The playground of one patient (ipywidgets): the heat, word buttons that delete or restore a word, a text
    box with the prompt, a responder choice, Ask, the answers with their scores, and her tries so far."""
    import ipywidgets as widgets
    from IPython.display import HTML, display

    from pmlm_lib.data.prompts import join, segment

    responder = widgets.Dropdown(options=playground.responders(), description="responder")
    heat_out = widgets.Output()
    words = segment(playground.refined(pid))
    toggles = [
        widgets.ToggleButton(value=False, description=w.strip() or "·", tooltip="delete / restore") for w in words
    ]
    for t in toggles:
        t.layout = widgets.Layout(width="auto", height="26px", margin="1px")
    text = widgets.Textarea(value=playground.refined(pid), layout=widgets.Layout(width="100%", height="120px"))
    ask = widgets.Button(description="Ask", button_style="primary")
    status = widgets.HTML()
    answer_out, tries_out = widgets.Output(), widgets.Output()

    def show_heat(*_):
        heat_out.clear_output(wait=True)
        with heat_out:
            display(HTML("<b>π(e | s_0)</b>: how likely the trained policy deletes each word first (hover for π)"))
            display(HTML(heat_html(playground.heat(pid, responder.value))))

    def on_toggle(_):
        kept = [w for w, t in zip(words, toggles) if not t.value]
        for t in toggles:
            t.button_style = "danger" if t.value else ""
        text.value = join(kept)

    def on_ask(_):
        status.value = f"<i>asking {html.escape(responder.value)} (three prompts; cached answers come at once) ...</i>"
        answer_out.clear_output()
        try:
            with answer_out:  # the bar of the answers still to come shows here while they come
                table = playground.ask(pid, text.value, responder.value, progress=True)
        except Exception as exc:  # an endpoint that fails must say so in the view, not in a log
            answer_out.clear_output()
            status.value = f"<b style='color:#C44E52'>The responder failed: {html.escape(str(exc)[:400])}</b>"
            return
        answer_out.clear_output()
        status.value = f"<b>answered</b> in {playground.tries[-1]['seconds']:.1f} s"
        with answer_out:  # each answer whole, beside the doctor's reply
            by = pd.MultiIndex.from_product([[responder.value], table.index])
            rows = table.drop(columns=["prompt"]).set_index(by)
            display(HTML(answers_html(rows, str(playground.inputs.replies[pid]))))
        tries_out.clear_output(wait=True)
        with tries_out:
            display(HTML("<b>Your tries since the explorer opened</b>"))
            display(playground.tries_table().drop(columns=["prompt"]).round(1))

    responder.observe(show_heat, names="value")
    for t in toggles:
        t.observe(on_toggle, names="value")
    ask.on_click(on_ask)
    show_heat()
    return widgets.VBox(
        [
            widgets.HTML("<h4>Playground: edit the prompt and ask the model</h4>"),
            responder,
            heat_out,
            widgets.HTML("Click a word to delete or restore it, or edit the text:"),
            widgets.Box(toggles, layout=widgets.Layout(display="flex", flex_flow="row wrap")),
            text,
            widgets.HBox([ask, status]),
            answer_out,
            tries_out,
        ]
    )
