"""Table 2's baseline: a lightweight LM fine-tuned with LoRA on Figure 5 prompt -> the doctor's reply.

The bundled SmolLM2-135M (or any local transformers folder) is trained with LoRA (peft) on the
training split: the chat template's user turn is the patient's raw-data prompt, the assistant turn
her doctor's reply (loss on the reply only). The adapter is then written as a llama.cpp LoRA GGUF
(`adapter.gguf`) so that the fine-tuned model answers through the same fast responder as the
others (llama.cpp applies the adapter on top of the bundled GGUF), instead of transformers'
slower generation. Trained adapters are cached by content: a rerun loads them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pmlm_lib.common import disk_cache
from pmlm_lib.common.weights import device as pick_device
from pmlm_lib.llm import lora
from pmlm_lib.llm.lora import add_lora, example, load_causal_lm, resolve_model_path, train_lora


def chat_prompt_ids(tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _llama_permute(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """transformers -> llama.cpp row order of a q/k projection (the inverse of the permutation
    transformers undoes when it reads a llama GGUF)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def export_gguf_adapter(peft_model, path: str | Path) -> Path:
    """Write the LoRA adapter of a llama-architecture peft model as a llama.cpp adapter GGUF."""
    import gguf

    base = peft_model.get_base_model()
    config = base.config
    if config.model_type != "llama":
        raise ValueError(f"GGUF adapter export is written for llama-architecture models, not {config.model_type!r}")
    lora_config = peft_model.peft_config["default"]
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora_config.lora_alpha))
    for i, layer in enumerate(base.model.layers):
        for proj, short in names.items():
            module = getattr(layer.self_attn, proj)
            a = module.lora_A["default"].weight.detach().float().cpu()
            b = module.lora_B["default"].weight.detach().float().cpu()
            if proj in heads:
                b = _llama_permute(b, heads[proj])
            writer.add_tensor(f"blk.{i}.{short}.weight.lora_a", a.numpy().astype(np.float32))
            writer.add_tensor(f"blk.{i}.{short}.weight.lora_b", b.numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def fine_tune_reply_model(
    prompts: list[str],
    replies: list[str],
    model: str = "bundled",
    epochs: int = 1,
    lr: float = 1e-3,
    lora_r: int = 8,
    lora_alpha: int = 16,
    batch_size: int = 4,
    max_reply_tokens: int = 256,
    seed: int = 0,
    device: str = "auto",
) -> dict:
    """Train (or load from the cache) the reply model; returns its folder, adapter GGUF and log."""
    options = {
        "model": model if model != "bundled" else Path(resolve_model_path(model)).name,
        "epochs": epochs,
        "lr": lr,
        "lora_r": lora_r,
        "lora_alpha": lora_alpha,
        "batch_size": batch_size,
        "max_reply_tokens": max_reply_tokens,
    }
    key = disk_cache.key_of(
        "reply_lora", options, seed, disk_cache.code_fingerprint(sys.modules[__name__], lora), prompts, replies
    )
    entry = disk_cache.CacheEntry("reply_models", key)
    if not entry.ready:
        device = pick_device(device)
        torch.manual_seed(seed)
        base, tokenizer = load_causal_lm(model, device)
        peft_model = add_lora(base, lora_r, lora_alpha)
        examples = []
        for prompt, reply in zip(prompts, replies):
            reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"][:max_reply_tokens]
            examples.append(
                example(
                    tokenizer, chat_prompt_ids(tokenizer, prompt), tokenizer.decode(reply_ids) + tokenizer.eos_token
                )
            )
        log = train_lora(
            peft_model,
            tokenizer.pad_token_id,
            examples,
            epochs,
            batch_size,
            lr,
            seed,
            device,
            desc="LoRA fine-tuning on replies",
        )
        folder = entry.begin()
        peft_model.save_pretrained(folder / "adapter")
        export_gguf_adapter(peft_model, folder / "adapter.gguf")
        (folder / "train_log.json").write_text(json.dumps({"options": options, "patients": len(prompts), "log": log}))
        entry.commit()
    info = json.loads((entry.path / "train_log.json").read_text())
    return {"folder": entry.path, "gguf": entry.path / "adapter.gguf", **info}
