"""Where the time goes: one stopwatch with named parts, used as a context manager.

    timer = Timer(("answers", "reward"))
    with timer("answers"):
        ...
    timer.seconds  # {"answers": 12.3, "reward": 0.4}

Parts accumulate; `split()` gives each part's seconds, the total and the share outside one part
(for the refinement: outside waiting for answers).
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class Timer:
    def __init__(self, parts: tuple[str, ...] = ()):
        self.seconds: dict[str, float] = dict.fromkeys(parts, 0.0)

    @contextmanager
    def __call__(self, part: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

    def split(self, waiting: str | None = None) -> dict:
        """Seconds per part, the total, and (given `waiting`) the share of the total spent outside it."""
        total = sum(self.seconds.values())
        out = {**{k: round(v, 2) for k, v in self.seconds.items()}, "total": round(total, 2)}
        if waiting is not None:
            out[f"share_outside_{waiting}"] = round(1 - self.seconds.get(waiting, 0.0) / total, 4) if total else None
        return out
