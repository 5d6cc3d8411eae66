"""A causal LM fine-tuned with LoRA (peft) on the paper's Figure 3 prompt; it predicts by scoring.

The model never writes free text that could fail to parse: for each patient the prompt is encoded
once, and the log-likelihood of every label's tokens after "Your current condition is" is read
from the cached prompt (one batched pass over the labels). The probabilities are the softmax of
those log-likelihoods. By default the model is the bundled SmolLM2-135M-Instruct; any local
transformers folder (a 7B model on a GPU) is a parameter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..cohort import Cohort
from ..models import device as pick_device
from ..models import smollm2_transformers_path
from ..prompts import predictor_prompt
from ..serialize import serialize_all, short_name
from .base import Predictor, labels_of, stratified_sample


def resolve_model_path(model: str) -> str:
    """'bundled' is the converted SmolLM2; anything else is a local transformers folder."""
    if model == "bundled":
        return str(smollm2_transformers_path())
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model folder {path} not found: give a local transformers folder (no hub downloads)")
    return str(path)


class LoraLMPredictor(Predictor):
    family = "lora_lm"

    def __init__(self, seed: int = 0, model: str = "bundled", max_tokens: int = 384, epochs: int = 1,
                 train_patients: int | None = None, lr: float = 1e-3, lora_r: int = 8, lora_alpha: int = 16,
                 batch_size: int = 4, device: str = "auto"):
        super().__init__(seed=seed, model=model, max_tokens=max_tokens, epochs=epochs, train_patients=train_patients,
                         lr=lr, lora_r=lora_r, lora_alpha=lora_alpha, batch_size=batch_size, device=device)
        self.device = pick_device(device)
        self.model = None
        self.tokenizer = None
        self.indicator_names = ""
        self.train_log: list[dict] = []

    # ---- model -----------------------------------------------------------------------------
    def _base(self):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(self.options["model"])
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device)
        return model, tokenizer

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
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(self.seed)
        self.classes_ = list(cohort.labels)
        base, self.tokenizer = self._base()
        config = LoraConfig(r=self.options["lora_r"], lora_alpha=self.options["lora_alpha"], lora_dropout=0.05,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
        self.model = get_peft_model(base, config)
        ids = stratified_sample(cohort, list(patient_ids), self.options["train_patients"], self.seed)
        prompts = self._prompts(cohort, ids)
        labels = labels_of(cohort, ids).tolist()
        examples = []
        for prompt, label in zip(prompts, labels):
            p = self.tokenizer(prompt)["input_ids"]
            target = self.tokenizer(" " + label + "." + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            examples.append((p + target, [-100] * len(p) + target))
        opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=self.options["lr"])
        bs = self.options["batch_size"]
        steps = self.options["epochs"] * math.ceil(len(examples) / bs)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps))
        rng = np.random.default_rng(self.seed)
        self.model.train()
        bar = tqdm(total=steps, desc="LoRA fine-tuning", mininterval=5)
        for epoch in range(self.options["epochs"]):
            for batch in np.array_split(rng.permutation(len(examples)), math.ceil(len(examples) / bs)):
                # on a CPU, one example at a time with accumulated gradients: the same update as the
                # whole batch, with a quarter of the activation memory and no padding
                micro = 1 if self.device == "cpu" else len(batch)
                opt.zero_grad()
                loss = 0.0
                for start in range(0, len(batch), micro):
                    part = self._batch_loss([examples[i] for i in batch[start:start + micro]]) * (len(batch[start:start + micro]) / len(batch))
                    part.backward()
                    loss += float(part.detach())
                opt.step()
                sched.step()
                self.train_log.append({"epoch": epoch, "loss": loss})
                bar.update(1)
        bar.close()
        self.model.eval()
        return self

    def _batch_loss(self, batch: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        """Cross-entropy on the label tokens only. Sequences are left-padded so that every label
        sits at the end, and the LM head runs on those last positions only (logits_to_keep):
        computing 49k-way logits for every prompt token would cost memory and time for nothing."""
        width = max(len(ids) for ids, _ in batch)
        pad = self.tokenizer.pad_token_id
        inp = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in batch], device=self.device)
        tgt = torch.tensor([[-100] * (width - len(t)) + t for _, t in batch], device=self.device)
        att = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in batch], device=self.device)
        keep = max(sum(1 for x in t if x != -100) for _, t in batch) + 1
        positions = (att.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=inp, attention_mask=att, position_ids=positions, logits_to_keep=keep).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                 tgt[:, width - keep + 1:].reshape(-1), ignore_index=-100)

    # ---- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def label_loglik(self, prompt: str) -> np.ndarray:
        """Sum of log-probabilities of each label's tokens after the prompt."""
        label_ids = self._label_ids()
        enc = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        out = self.model(**enc, use_cache=True, logits_to_keep=1)
        last_logp = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        width = max(len(l) for l in label_ids)
        n = len(label_ids)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        pad = self.tokenizer.pad_token_id
        cont = torch.tensor([l + [pad] * (width - len(l)) for l in label_ids], device=self.device)
        prompt_len = enc["input_ids"].shape[1]
        att = torch.cat([torch.ones(n, prompt_len, dtype=torch.long, device=self.device),
                         torch.tensor([[1] * len(l) + [0] * (width - len(l)) for l in label_ids], device=self.device)], dim=1)
        logits = self.model(input_ids=cont, attention_mask=att, past_key_values=cache, use_cache=False).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        scores = np.zeros(n)
        for j, l in enumerate(label_ids):
            total = float(last_logp[l[0]])
            for k in range(1, len(l)):
                total += float(logp[j, k - 1, l[k]])
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
