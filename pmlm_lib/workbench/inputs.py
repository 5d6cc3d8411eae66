"""What notebooks 04-07 read from the run folder, loaded in one place.

    inputs = RunInputs.load(run)          # cohort, split, predictions, peers, coarse prompts, encoder
    inputs.refined, inputs.editor()       # notebook 04's refined test prompts and trained policy
    inputs.decoding, inputs.inference     # the responder's decoding and the inference mode chosen in 04
    inputs.for_responder("gemma3")        # another responder's refinement (notebook 04 run for it: files NAME@gemma3)

Each file is read where it was written, with patient ids as text (a hospital's numeric ids keep their
leading zeros), and a missing file names the notebook that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pmlm_lib.data.representation import Standardizer, concatenated
from pmlm_lib.data.sources import filtered_cohort
from pmlm_lib.evaluation.systems import refinement_label, responder_label
from pmlm_lib.llm.responders import Decoding, Responder, make_responder
from pmlm_lib.method import retrieval
from pmlm_lib.method.refine.editor import load_editor
from pmlm_lib.workbench.artifacts import with_variant

SAME_LLM = ("backend", "model", "sha256", "lora_sha256", "base_url")  # what makes two responders one LLM


class ResponderMismatch(ValueError):
    """A notebook asked to answer prompts refined for one LLM with another."""


@dataclass
class RunInputs:
    run: object
    cohort: object
    split: pd.Series
    predictions: pd.DataFrame
    peers: pd.DataFrame
    coarse: pd.Series
    k: int
    encoder: retrieval.PatientEncoder
    standardizer: Standardizer
    max_visits: int
    encoder_mode: str
    refinement: dict | None = None  # notebook 04's record (decoding, inference mode, ...)
    refined: pd.DataFrame | None = None  # notebook 04's refined test prompts
    device: str = "auto"  # where the trained policy runs ("auto": CUDA when present)
    variant: str = ""  # "" : the run's main refinement; a responder's name: the refinement made for it
    _editor: object = field(default=None, repr=False)

    @classmethod
    def load(cls, run, refinement: bool = True, device: str = "auto") -> RunInputs:
        """The outputs of notebooks 01-03, and of 04 when `refinement` (a missing one is an error)."""
        cohort, split = filtered_cohort(run)
        encoder, standardizer, meta = retrieval.load_encoder(run.require("encoder.pt", made_by="03_peer_retrieval"))
        inputs = cls(
            run=run,
            cohort=cohort,
            split=split,
            predictions=pd.read_parquet(run.require("predictions.parquet", made_by="02_predictor_study")),
            peers=pd.read_parquet(run.require("peers.parquet", made_by="03_peer_retrieval")),
            coarse=pd.read_parquet(run.require("coarse_prompts.parquet", made_by="03_peer_retrieval"))["prompt"],
            k=run.read_record("peer_retrieval", made_by="03_peer_retrieval")["k"],
            encoder=encoder,
            standardizer=standardizer,
            max_visits=meta["max_visits"],
            encoder_mode=meta["mode"],
            device=device,
        )
        if refinement:
            inputs._load_refinement()
        return inputs

    def _load_refinement(self) -> None:
        made_by = with_variant("04_rl_refinement", self.variant)
        self.refinement = self.run.read_record(with_variant("rl_refinement", self.variant), made_by=made_by)
        self.refined = pd.read_parquet(
            self.run.require(with_variant("refined_prompts.parquet", self.variant), made_by=made_by)
        )

    def for_responder(self, name: str) -> RunInputs:
        """The same inputs with the refinement notebook 04 made for another responder of the profile (`name`)."""
        record = with_variant("rl_refinement.json", name)
        if not self.run.exists("results", record):
            raise FileNotFoundError(
                f"this run has no refinement for the responder {name!r} (results/{record}): "
                "name it in the profile's `responders`, so that `pmlm report` runs notebook 04 for it"
            )
        other = replace(self, variant=name, refinement=None, refined=None, _editor=None)
        other._load_refinement()
        return other

    # ---- views ----------------------------------------------------------------------------------
    @property
    def labels(self) -> pd.Series:
        return self.cohort.by_patient("label")

    @property
    def replies(self) -> pd.Series:
        return self.cohort.by_patient("reference_reply")

    def ids(self, part: str, with_reply: bool = False) -> list[str]:
        """The patients of one split ("train", "validation" or "test"); `with_reply`: only those with a doctor's
        reply (whose answers can be scored)."""
        ids = list(self.split[self.split == part].index)
        return self.cohort.with_reply(ids) if with_reply else ids

    def x_prime(self, patient_ids: list[str]) -> np.ndarray:
        """x' of these patients (the encoder's input), rows in their order."""
        return concatenated(self.cohort, patient_ids, self.max_visits, self.standardizer)

    # ---- what notebook 04 decided -----------------------------------------------------------------
    @property
    def decoding(self) -> Decoding:
        """The decoding the prompts were refined for (notebook 04's)."""
        return Decoding(**self.refinement["decoding"])

    @property
    def refined_for(self) -> dict:
        """The identity of the responder notebook 04 refined the prompts for (its reward's LLM_r)."""
        return self.refinement["responder"]

    @property
    def responder_label(self) -> str:
        """How the tables name the responder the prompts were refined for (its name in the profile, if any)."""
        return refinement_label(self.refinement)

    def responder(self, spec=None, n_parallel: int = 4, raw_names=()) -> Responder:
        """The responder that answers the refined prompts: the one notebook 04 refined them for (spec None), or
        `spec`, which must be the same LLM; another one stops with a sentence that names both."""
        chosen = spec if spec is not None else self.refinement.get("responder_spec", "bundled")
        if chosen == "bundled" or (isinstance(chosen, dict) and chosen.get("backend") == "llamacpp"):
            chosen = {**({} if chosen == "bundled" else chosen), "backend": "llamacpp", "n_parallel": n_parallel}
        answering = make_responder(chosen, raw_names=raw_names)
        ours, theirs = ({k: i.get(k) for k in SAME_LLM} for i in (self.refined_for, answering.identity))
        if ours != theirs:
            answering.close()
            raise ResponderMismatch(
                f"notebook 04 refined these prompts for {self.responder_label}, and this notebook was "
                f"asked to answer them with {responder_label(answering.identity)}: leave its `responder` at None (the "
                "refinement's LLM), or refine for that LLM too: name both in the profile's `responders` (notebook 04 "
                "then runs once for each; see profiles/examples/two-responders.yaml), or refine for it alone with "
                "pmlm report --from 04 --set 04_rl_refinement.responder=..."
            )
        return answering

    @property
    def inference(self) -> dict:
        """The inference mode chosen in notebook 04, with its seed and samples."""
        return self.refinement["inference"]

    def editor(self):
        """The trained policy (notebook 04's checkpoint), loaded once."""
        if self._editor is None:
            self._editor = load_editor(
                self.run.require(
                    with_variant("policy.pt", self.variant), made_by=with_variant("04_rl_refinement", self.variant)
                ),
                self.encoder,
                device=self.device,
            )
        return self._editor

    def edit(self, patient_ids: list[str], prompts, n_steps: int | None = None) -> pd.Series:
        """Other prompts of these patients edited by the trained policy in the chosen mode (ablations, sweeps)."""
        mode = self.inference
        return self.editor().edit_prompts(
            patient_ids, prompts, self.x_prime(patient_ids), mode["mode"], mode["seed"], mode["samples"], n_steps
        )
