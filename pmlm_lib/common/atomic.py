"""Writing files so that a crash, or a second process doing the same, never leaves a half-made one.

Each writer writes under a private temporary name (host, process id, a random part) and renames into
place: a rename is atomic, and content-keyed results written twice are equal, so whoever finishes
second keeps the first copy.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path


def private_name(path: Path) -> Path:
    """A temporary sibling of `path` that no other process uses."""
    return path.with_name(f"{path.name}.partial-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def publish(tmp: Path, target: Path) -> Path:
    """Move a finished temporary file or folder into place atomically. When another process published
    the same content first, its copy is kept and ours is discarded."""
    try:
        tmp.rename(target) if tmp.is_dir() else tmp.replace(target)
    except OSError:  # a folder of that name exists already: someone else finished first
        if not target.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes private files; run outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_text(Path(path), json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
