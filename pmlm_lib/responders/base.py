"""The responder interface, decoding settings, the answer cache and the privacy guard."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models import cache_dir


@dataclass(frozen=True)
class Decoding:
    """Deterministic by default: greedy (temperature 0) with a fixed seed."""

    max_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class RawDataRefused(PermissionError):
    """A prompt with raw examination values was about to leave the machine without the user's opt-in."""


# A serialized examination line ("2022-05-03: HGB 112, PLT 158") or an indicator name followed by a
# number: what the Figure 5 prompt carries and the PMLM prompts do not.
_EXAM_LINE = re.compile(r"(?m)^\s*\d{4}-\d{2}-\d{2}:\s*\S+\s+-?\d")
_VALUE = re.compile(r"\b(?:HGB|PLT|WBC|RBC|HCT|MCV|MCH|MCHC|ALT|ALP|ALB|TBIL|TBA|NEUT[#%]?)\s+-?\d+(?:\.\d+)?\b")


def contains_raw_values(prompt: str) -> bool:
    """True when a prompt carries dated examination values (the raw-data prompt)."""
    return bool(_EXAM_LINE.search(prompt) or _VALUE.search(prompt))


class AnswerCache:
    """Answers on disk, keyed by backend identity, prompt and decoding settings.

    SQLite commits each answer as it arrives: an interrupted run loses no finished answer, and a
    second run answers from the cache. The cache holds prompts and answers, never credentials.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "answers.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, identity TEXT, prompt TEXT, "
                         "decoding TEXT, answer TEXT, seconds REAL, created REAL)")
        self._db.commit()

    @staticmethod
    def key(identity: dict, prompt: str, decoding: Decoding) -> str:
        blob = json.dumps([identity, prompt, decoding.as_dict()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        out = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = self._db.execute(f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(part))})", part)
                out.update(dict(rows.fetchall()))
        return out

    def put(self, key: str, identity: dict, prompt: str, decoding: Decoding, answer: str, seconds: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (key, json.dumps(identity, sort_keys=True), prompt, json.dumps(decoding.as_dict()), answer,
                              seconds, time.time()))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


class Responder(ABC):
    """answer(prompts) -> answers, in order; cached answers are not computed again."""

    remote: bool = False  # True when prompts leave the machine

    def __init__(self, cache: AnswerCache | None = None, allow_raw_data: bool = False, use_cache: bool = True):
        self.cache = (cache if cache is not None else AnswerCache()) if use_cache else None
        self.allow_raw_data = allow_raw_data
        self.stats = {"answered": 0, "from_cache": 0, "seconds_generating": 0.0}

    @property
    @abstractmethod
    def identity(self) -> dict:
        """What makes answers of this responder differ from another's: backend, model, checksum."""

    @abstractmethod
    def _generate(self, prompts: list[str], decoding: Decoding, on_answer) -> None:
        """Answer the prompts, calling on_answer(index, text, seconds) as each finishes."""

    def close(self) -> None:
        """Release the model or connections (a no-op where there is nothing to release)."""

    def answer(self, prompts: list[str], decoding: Decoding = Decoding(), progress: bool = False) -> list[str]:
        if self.remote and not self.allow_raw_data:
            raw = [i for i, p in enumerate(prompts) if contains_raw_values(p)]
            if raw:
                raise RawDataRefused(
                    f"{len(raw)} prompt(s) (the first at position {raw[0]}) carry raw examination values and would be sent "
                    f"to the remote endpoint {self.identity.get('base_url', '')}; pass allow_raw_data=True (responder option) "
                    "only if sending patient data there is allowed")
        identity = self.identity
        keys = [AnswerCache.key(identity, p, decoding) for p in prompts]
        known = self.cache.get_many(keys) if self.cache is not None else {}
        answers: list[str | None] = [known.get(k) for k in keys]
        todo = [i for i, a in enumerate(answers) if a is None]
        self.stats["from_cache"] += len(prompts) - len(todo)
        if todo:
            # identical prompts in one batch are generated once
            unique: dict[str, list[int]] = {}
            for i in todo:
                unique.setdefault(keys[i], []).append(i)
            order = [idxs[0] for idxs in unique.values()]
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(order), desc=f"answers ({identity.get('model', '')})", mininterval=5)

            def on_answer(j: int, text: str, seconds: float) -> None:
                i = order[j]
                if self.cache is not None:
                    self.cache.put(keys[i], identity, prompts[i], decoding, text, seconds)
                for same in unique[keys[i]]:
                    answers[same] = text
                self.stats["answered"] += 1
                self.stats["seconds_generating"] += seconds
                if bar is not None:
                    bar.update(1)

            try:
                self._generate([prompts[i] for i in order], decoding, on_answer)
            finally:
                if bar is not None:
                    bar.close()
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:
            raise RuntimeError(f"{len(missing)} prompt(s) got no answer from {identity.get('backend')}")
        return answers  # type: ignore[return-value]


def run_parallel(count: int, workers: int, one, on_answer) -> None:
    """Call one(j) -> (text, seconds) for j in range(count) on `workers` threads; hand each answer to
    on_answer as soon as it finishes (so that it is cached at once), and raise the first error only
    after every other request has finished and been saved."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    first_error = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(one, j): j for j in range(count)}
        for future in as_completed(futures):
            try:
                text, seconds = future.result()
            except Exception as exc:  # keep going: the others' answers are worth keeping
                first_error = first_error or exc
                continue
            on_answer(futures[future], text, seconds)
    if first_error is not None:
        raise first_error
