"""The answer log: one JSON line per answer call of a notebook (logs/NN_name.answers.jsonl in its run).

Responders write it when `pmlm report` names the file in $PMLM_ANSWER_LOG; `pmlm plan` and the report page
read it back (answers asked, from the cache, generated, tokens and wall time; the machine's measured rate).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ANSWER_LOG_ENV = "PMLM_ANSWER_LOG"  # set by `pmlm report` for each notebook: logs/NN_name.answers.jsonl


def log_answers(
    identity: dict,
    decoding,  # a responders.base.Decoding: its max_tokens and temperature
    keys: list[str],
    from_cache: int,
    generated: int,
    tokens: dict,
    wall_seconds: float,
) -> None:
    """One line per answer call in the notebook's answer log (when the pipeline set one): what was asked,
    what came from the cache, the tokens generated and the wall time. `pmlm plan` reads these back: the
    counts and rates of earlier runs on this machine."""
    path = os.environ.get(ANSWER_LOG_ENV)
    if not path:
        return
    row = {
        "backend": identity.get("backend"),
        "model": identity.get("model"),
        "max_tokens": decoding.max_tokens,
        "temperature": decoding.temperature,
        "requested": len(keys),
        "from_cache": from_cache,
        "generated": generated,
        "prompt_tokens": tokens["prompt"],
        "answer_tokens": tokens["answer"],
        "wall_seconds": round(wall_seconds, 3),
        "keys": sorted(set(keys)),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_answer_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
