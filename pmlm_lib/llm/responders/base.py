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

from pmlm_lib.common.weights import cache_dir
from pmlm_lib.data.indicators import ABBREVIATIONS, INDICATORS
from pmlm_lib.data.serialize import short_name
from pmlm_lib.llm.answer_log import log_answers


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


def is_local_url(url: str) -> bool:
    """True only for an endpoint on this machine: the host is `localhost` or a loopback IP literal
    (127.0.0.0/8, ::1). Decided on the parsed host, never on a substring: 127.0.0.1.nip.io,
    localhost.attacker.example and x.example/?u=http://127.0.0.1 are remote."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# A serialized examination line, with or without a time of day ("2022-05-03: HGB 112, PLT 158",
# "2022-05-03 08:30: ..."), as `serialize.exam_line` writes it.
_EXAM_LINE = re.compile(r"(?m)^\s*\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?:\s*\S+\s+-?\d")
# a number as the loaders read one: a colon or equals sign (ASCII or full-width), a comparison (a censored value), a
# sign, digits (full-width ones too: Python's \d is Unicode), a decimal point or comma, or only a fraction (".5"),
# an exponent ("1e2")
_NUMBER = r"\s*[:=：＝]?\s*[<>≤≥＜＞]?\s*[-+]?(?:\d+(?:[.,]\d+)?|[.,]\d+)(?:[eE][-+]?\d+)?"


class RawValueGuard:
    """Detects raw examination values in a prompt: any line in the serializer's examination format,
    and an indicator's name, label or abbreviation followed by a number ("HGB 112", "hemoglobin: 112",
    "Ferritin = 40"). The catalogue's indicators are always known; `extend(names)` adds a cohort's own
    (notebooks 04 and 05 add their cohort's indicators), so a hospital's names are seen too."""

    def __init__(self, names=()):
        self.names: set[str] = set()
        self.extend([i.name for i in INDICATORS] + [i.label for i in INDICATORS] + list(ABBREVIATIONS.values()))
        self.extend(names)

    def extend(self, names) -> RawValueGuard:
        for name in names:
            for form in {str(name), str(name).replace("_", " "), short_name(str(name))}:
                if form.strip():
                    self.names.add(form.strip())
        words = sorted(self.names, key=len, reverse=True)
        self._value = re.compile(
            r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")" + _NUMBER + r"(?![\w])", re.IGNORECASE
        )
        return self

    def __call__(self, prompt: str) -> bool:
        return bool(_EXAM_LINE.search(prompt) or self._value.search(prompt))


_DEFAULT_GUARD: RawValueGuard | None = None


def contains_raw_values(prompt: str, guard: RawValueGuard | None = None) -> bool:
    """True when a prompt carries raw examination values (the raw-data prompt)."""
    global _DEFAULT_GUARD
    if guard is None:
        _DEFAULT_GUARD = _DEFAULT_GUARD or RawValueGuard()
        guard = _DEFAULT_GUARD
    return guard(prompt)


class CacheWarning(UserWarning):
    """The answer cache could not be used as a file; the message says what happens instead."""


class AnswerCache:
    """Answers on disk, keyed by backend identity, prompt and decoding settings.

    SQLite commits each answer as it arrives: an interrupted run loses no finished answer, and a
    second run answers from the cache. The cache holds prompts and answers, never credentials.
    A damaged file is moved aside (answers.sqlite.damaged-TIME) and a fresh cache starts; a cache that
    cannot be written keeps this run's answers in memory, with a warning; both say so once, with the path.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "answers.sqlite"
        self._lock = threading.Lock()
        self.in_memory = False
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
            db.execute("PRAGMA journal_mode=WAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("the integrity check failed")
            db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, identity TEXT, prompt TEXT, "
                "decoding TEXT, answer TEXT, seconds REAL, created REAL)"
            )
            db.commit()
            return db
        except sqlite3.DatabaseError as exc:
            if self._unwritable(exc):
                return self._memory(f"the answer cache {self.path} cannot be written ({exc})")
            self._move_aside(exc)
            return self._open()
        except OSError as exc:
            return self._memory(f"the answer cache folder {self.path.parent} cannot be used ({exc})")

    @staticmethod
    def _unwritable(exc: Exception) -> bool:
        text = str(exc).lower()
        return any(w in text for w in ("readonly", "read-only", "unable to open", "permission", "disk i/o"))

    def _memory(self, why: str) -> sqlite3.Connection:
        import warnings

        warnings.warn(
            f"{why}: this run's answers are kept in memory and lost when it ends; set PMLM_CACHE to a "
            "writable folder to keep them",
            CacheWarning,
            stacklevel=3,
        )
        self.in_memory = True
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute(
            "CREATE TABLE answers (key TEXT PRIMARY KEY, identity TEXT, prompt TEXT, decoding TEXT, answer TEXT, "
            "seconds REAL, created REAL)"
        )
        return db

    def _move_aside(self, exc: Exception) -> None:
        import warnings

        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.replace(Path(str(aside) + suffix))
        warnings.warn(
            f"the answer cache {self.path} is damaged ({exc}); it was moved to {aside} and a fresh cache started: "
            "answers not found there will be generated again",
            CacheWarning,
            stacklevel=4,
        )

    def _run(self, work):
        """One database operation; a file damaged while in use is moved aside once and the operation retried."""
        with self._lock:
            try:
                return work(self._db)
            except sqlite3.DatabaseError as exc:
                if self.in_memory:
                    raise
                if self._unwritable(exc) or "full" in str(exc).lower():
                    self._db = self._memory(f"the answer cache {self.path} cannot be written any more ({exc})")
                else:
                    self._db.close()
                    self._move_aside(exc)
                    self._db = self._open()
                return work(self._db)

    @staticmethod
    def key(identity: dict, prompt: str, decoding: Decoding) -> str:
        blob = json.dumps([identity, prompt, decoding.as_dict()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        def work(db):
            out = {}
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                rows = db.execute(f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(part))})", part)
                out.update(dict(rows.fetchall()))
            return out

        return self._run(work)

    def put(self, key: str, identity: dict, prompt: str, decoding: Decoding, answer: str, seconds: float) -> None:
        def work(db):
            db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(identity, sort_keys=True),
                    prompt,
                    json.dumps(decoding.as_dict()),
                    answer,
                    seconds,
                    time.time(),
                ),
            )
            db.commit()

        self._run(work)

    def __len__(self) -> int:
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


class Responder(ABC):
    """answer(prompts) -> answers, in order; cached answers are not computed again."""

    remote: bool = False  # True when prompts leave the machine

    def __init__(self, cache: AnswerCache | None = None, allow_raw_data: bool = False, use_cache: bool = True):
        self.cache = (cache if cache is not None else AnswerCache()) if use_cache else None
        self.allow_raw_data = allow_raw_data
        self.guard = (
            RawValueGuard()
        )  # what counts as a raw value; `guard.extend(cohort.indicators)` adds a cohort's names
        # seconds_generating sums each answer's own time (answers decoded in parallel overlap); wall_seconds is
        # the wall time of the calls that generated anything: what the responder cost the run
        self.stats = {
            "answered": 0,
            "from_cache": 0,
            "seconds_generating": 0.0,
            "wall_seconds": 0.0,
            "empty_not_cached": 0,
        }

    @property
    @abstractmethod
    def identity(self) -> dict:
        """What makes answers of this responder differ from another's: backend, model, checksum."""

    @abstractmethod
    def _generate(self, prompts: list[str], decoding: Decoding, on_answer, groups: list | None = None) -> None:
        """Answer the prompts, calling on_answer(index, text, seconds[, (prompt_tokens, answer_tokens)]) as
        each finishes; `groups` may be used to keep a group's prompts together (or ignored)."""

    def close(self) -> None:  # noqa: B027  (a no-op by design: backends with nothing to release inherit it)
        """Release the model or connections (a no-op where there is nothing to release)."""

    def answer(
        self, prompts: list[str], decoding: Decoding = Decoding(), progress: bool = False, groups: list | None = None
    ) -> list[str]:
        """Answers in the prompts' order. `groups` (a key per prompt, such as the patient) lets a backend
        answer a group's prompts one after another on one slot (llama.cpp then reuses their shared prefix)."""
        if self.remote and not self.allow_raw_data:
            raw = [i for i, p in enumerate(prompts) if self.guard(p)]
            if raw:
                raise RawDataRefused(
                    f"{len(raw)} prompt(s) (the first at position {raw[0]}) carry raw examination values and would be "
                    "sent "
                    f"to the remote endpoint {self.identity.get('base_url', '')}; pass allow_raw_data=True (responder "
                    "option) "
                    "only if sending patient data there is allowed"
                )
        identity = self.identity
        keys = [AnswerCache.key(identity, p, decoding) for p in prompts]
        known = self.cache.get_many(keys) if self.cache is not None else {}
        answers: list[str | None] = [known.get(k) for k in keys]
        todo = [i for i, a in enumerate(answers) if a is None]
        self.stats["from_cache"] += len(prompts) - len(todo)
        if not todo:
            log_answers(identity, decoding, keys, len(prompts), 0, {"prompt": 0, "answer": 0}, 0.0)
        started = time.perf_counter()
        tokens = {"prompt": 0, "answer": 0}
        order: list[int] = []
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

            def on_answer(j: int, text: str | None, seconds: float, used: tuple[int, int] | None = None) -> None:
                i = order[j]
                if not (
                    text or ""
                ).strip():  # an empty answer is used this time but never cached: a later run asks again
                    text = ""
                    self.stats["empty_not_cached"] += 1
                elif self.cache is not None:
                    self.cache.put(keys[i], identity, prompts[i], decoding, text, seconds)
                for same in unique[keys[i]]:
                    answers[same] = text
                self.stats["answered"] += 1
                self.stats["seconds_generating"] += seconds
                if used is not None:
                    tokens["prompt"] += used[0]
                    tokens["answer"] += used[1]
                if bar is not None:
                    bar.update(1)

            try:
                self._generate(
                    [prompts[i] for i in order],
                    decoding,
                    on_answer,
                    groups=[groups[i] for i in order] if groups is not None else None,
                )
            finally:
                if bar is not None:
                    bar.close()
                self.stats["wall_seconds"] += time.perf_counter() - started
                log_answers(
                    identity,
                    decoding,
                    keys,
                    len(prompts) - len(todo),
                    len(order),
                    tokens,
                    time.perf_counter() - started,
                )
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:
            raise RuntimeError(f"{len(missing)} prompt(s) got no answer from {identity.get('backend')}")
        return answers  # type: ignore[return-value]


def run_parallel(count: int, workers: int, one, on_answer, groups: list | None = None) -> None:
    """Call one(j) -> (text, seconds[, (prompt_tokens, answer_tokens)]) for j in range(count) on
    `workers` threads and hand each answer to on_answer as soon as it finishes (so that it is cached at
    once). With `groups` (a key per j), the requests of one group run one after another on one thread,
    in their order: a server that keeps each slot's last prompt can then reuse a shared prefix. At the
    first error no new request starts: the requests in flight finish and are saved, then the error is
    raised (a failing endpoint does not cost the rest of the batch's time)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    units: dict = {}
    for j in range(count):
        units.setdefault(groups[j] if groups is not None else j, []).append(j)
    lock, stop, errors = threading.Lock(), threading.Event(), []

    def work(unit: list[int]) -> None:
        for j in unit:
            if stop.is_set():
                return
            try:
                text, seconds, *used = one(j)
            except Exception as exc:  # keep the others' answers; stop starting new requests
                with lock:
                    errors.append(exc)
                stop.set()
                return
            with lock:
                on_answer(j, text, seconds, *used)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, units.values()))
    if errors:
        raise errors[0]
