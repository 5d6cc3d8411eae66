"""A causal LM fine-tuned with LoRA (peft) on the paper's Figure 3 prompt; it predicts by scoring.

The model never writes free text that could fail to parse: for each patient the prompt is encoded
once, and the log-likelihood of every label's tokens after "Your current condition is" is read
from the cached prompt (one batched pass over the labels). The probabilities are the softmax of
those log-likelihoods. By default the model is the bundled SmolLM2-135M-Instruct; any local
transformers folder (a 7B model on a GPU) is a parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.data.cohort import Cohort
from pmlm_lib.data.prompts import predictor_prompt
from pmlm_lib.data.sampling import labels_of, stratified_sample
from pmlm_lib.data.serialize import serialize_all, short_name
from pmlm_lib.llm.lora import add_lora, example, load_causal_lm, train_lora
from pmlm_lib.method.predictors.base import Predictor


class LoraLMPredictor(Predictor):
    family = "lora_lm"

    def __init__(
        self,
        seed: int = 0,
        model: str = "bundled",
        max_tokens: int = 384,
        epochs: int = 1,
        train_patients: int | None = None,
        lr: float = 1e-3,
        lora_r: int = 8,
        lora_alpha: int = 16,
        batch_size: int = 4,
        device: str = "auto",
    ):
        super().__init__(
            seed=seed,
            model=model,
            max_tokens=max_tokens,
            epochs=epochs,
            train_patients=train_patients,
            lr=lr,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            batch_size=batch_size,
            device=device,
        )
        self.device = pick_device(device)
        self.model = None
        self.tokenizer = None
        self.indicator_names = ""
        self.train_log: list[dict] = []

    # ---- model -----------------------------------------------------------------------------
    def _base(self):
        return load_causal_lm(self.options["model"], self.device)

    def _prompts(self, cohort: Cohort, patient_ids) -> list[str]:
        self.indicator_names = ", ".join(short_name(i) for i in cohort.indicators)
        header = predictor_prompt(self.indicator_names, "")
        budget = max(32, self.options["max_tokens"] - len(self.tokenizer(header)["input_ids"]))
        count = lambda text: len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        histories = serialize_all(cohort, list(patient_ids), max_tokens=budget, count_tokens=count)
        return [predictor_prompt(self.indicator_names, histories[p]) for p in patient_ids]

    def _label_ids(self) -> list[list[int]]:
        return [self.tokenizer(" " + c + ".", add_special_tokens=False)["input_ids"] for c in self.classes_]

    # ---- training ----------------------------------------------------------------------------
    def fit(self, cohort: Cohort, patient_ids, validation_ids=None):
        torch.manual_seed(self.seed)
        self.classes_ = list(cohort.labels)
        base, self.tokenizer = self._base()
        self.model = add_lora(base, self.options["lora_r"], self.options["lora_alpha"])
        ids = stratified_sample(cohort, list(patient_ids), self.options["train_patients"], self.seed)
        examples = [
            example(self.tokenizer, self.tokenizer(prompt)["input_ids"], " " + label + "." + self.tokenizer.eos_token)
            for prompt, label in zip(self._prompts(cohort, ids), labels_of(cohort, ids).tolist())
        ]
        self.train_log = train_lora(
            self.model,
            self.tokenizer.pad_token_id,
            examples,
            self.options["epochs"],
            self.options["batch_size"],
            self.options["lr"],
            self.seed,
            self.device,
        )
        return self

    # ---- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def label_loglik(self, prompt: str) -> np.ndarray:
        """Sum of log-probabilities of each label's tokens after the prompt."""
        label_ids = self._label_ids()
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        out = self.model(**enc, use_cache=True, logits_to_keep=1)
        last_logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        width = max(len(ids) for ids in label_ids)
        n = len(label_ids)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        pad = self.tokenizer.pad_token_id
        cont = torch.tensor([ids + [pad] * (width - len(ids)) for ids in label_ids], device=self.device)
        prompt_len = enc["input_ids"].shape[1]
        att = torch.cat(
            [
                torch.ones(n, prompt_len, dtype=torch.long, device=self.device),
                torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in label_ids], device=self.device),
            ],
            dim=1,
        )
        logits = self.model(input_ids=cont, attention_mask=att, past_key_values=cache, use_cache=False).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        scores = np.zeros(n)
        for j, ids in enumerate(label_ids):
            total = float(last_logp[ids[0]])
            for k in range(1, len(ids)):
                total += float(logp[j, k - 1, ids[k]])
            scores[j] = total
        return scores

    def _predict_proba(self, cohort, patient_ids):
        prompts = self._prompts(cohort, patient_ids)
        scores = np.stack([self.label_loglik(p) for p in tqdm(prompts, desc="LM label scoring", mininterval=5)])
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        return probs / probs.sum(axis=1, keepdims=True)

    # ---- files ---------------------------------------------------------------------------------
    def _save_state(self, folder: Path):
        self.model.save_pretrained(folder / "adapter")
        (folder / "train_log.json").write_text(json.dumps(self.train_log))

    def _load_state(self, folder: Path):
        from peft import PeftModel

        base, self.tokenizer = self._base()
        self.model = PeftModel.from_pretrained(base, folder / "adapter").to(self.device)
        self.model.eval()
        log = folder / "train_log.json"
        self.train_log = json.loads(log.read_text()) if log.exists() else []
