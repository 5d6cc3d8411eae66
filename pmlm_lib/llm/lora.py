"""LoRA fine-tuning of a causal LM on (prompt -> target) pairs, shared by the LM predictor (Figure 3
prompt -> label) and the lightweight fine-tuned responder of Table 2 (Figure 5 prompt -> reply).

The loss is the cross-entropy of the target tokens only. Sequences are left-padded so that every
target sits at the end, and the LM head runs on those last positions only (`logits_to_keep`):
49k-way logits for every prompt token would cost memory and time for nothing. On a CPU one example
runs at a time with accumulated gradients: the same update as the whole batch, with a fraction of
the activation memory and no padding.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pmlm_lib.common.weights import smollm2_transformers_path


def resolve_model_path(model: str) -> str:
    """'bundled' is the converted SmolLM2; anything else is a local transformers folder."""
    if model == "bundled":
        return str(smollm2_transformers_path())
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model folder {path} not found: give a local transformers folder (no hub downloads)")
    return str(path)


def load_causal_lm(model: str, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device), tokenizer


def add_lora(model, r: int = 8, alpha: int = 16):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=0.05,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def example(tokenizer, prompt_ids: list[int], target: str) -> tuple[list[int], list[int]]:
    """Input ids and labels (-100 on the prompt) for one pair."""
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def target_loss(model, pad_id: int, batch: list[tuple[list[int], list[int]]], device: str) -> torch.Tensor:
    width = max(len(ids) for ids, _ in batch)
    inp = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids, _ in batch], device=device)
    tgt = torch.tensor([[-100] * (width - len(t)) + t for _, t in batch], device=device)
    att = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, _ in batch], device=device)
    keep = max(sum(1 for x in t if x != -100) for _, t in batch) + 1
    positions = (att.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=inp, attention_mask=att, position_ids=positions, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), tgt[:, width - keep + 1 :].reshape(-1), ignore_index=-100
    )


def train_lora(
    model,
    pad_id: int,
    examples: list[tuple[list[int], list[int]]],
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str,
    desc: str = "LoRA fine-tuning",
) -> list[dict]:
    """AdamW with warm-up and linear decay; returns the loss per update."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps = epochs * math.ceil(len(examples) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps)
    )
    rng = np.random.default_rng(seed)
    log = []
    model.train()
    bar = tqdm(total=steps, desc=desc, mininterval=5)
    for epoch in range(epochs):
        for batch in np.array_split(rng.permutation(len(examples)), math.ceil(len(examples) / batch_size)):
            micro = 1 if device == "cpu" else len(batch)
            opt.zero_grad()
            loss = 0.0
            for start in range(0, len(batch), micro):
                part = batch[start : start + micro]
                value = target_loss(model, pad_id, [examples[i] for i in part], device) * (len(part) / len(batch))
                value.backward()
                loss += float(value.detach())
            opt.step()
            sched.step()
            log.append({"epoch": epoch, "loss": loss})
            bar.update(1)
    bar.close()
    model.eval()
    return log
