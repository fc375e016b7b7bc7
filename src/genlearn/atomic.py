"""Atomic file writes: readers see the old file or the new one, never half of one.

A file is written under a fresh temporary name in the target's folder and renamed onto the
target (`os.replace`, atomic on POSIX and Windows) only once it is complete, so a report
built while training still runs never embeds a half-written PNG and a run killed mid-write
keeps its previous checkpoint. The result has the usual umask permissions, like any new
file (`tempfile.mkstemp`, and safetensors' own writer, would leave it at 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the target's suffix, so writers that look at it (PIL,
    matplotlib) pick the right format, and starts with a dot, so folder listings skip it.
    Parent folders are created; on failure the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{target.suffix}")
    tmp.touch(exist_ok=False)  # created by us, so with the umask's permissions
    try:
        mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # the writer replaced it with its own file
            tmp.chmod(mode)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically, flushed to disk before the rename; returns the path."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps_options: Any) -> Path:
    """Write `data` as indented JSON atomically (`dumps_options` go to `json.dumps`)."""
    return write_text_atomic(path, json.dumps(data, indent=2, **dumps_options) + "\n")
