"""One Steam command at a time per collection (a lock file, through ``filelock``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from bannermatch.errors import BannermatchError

LOCK_FILE = ".steam.lock"


@contextlib.contextmanager
def exclusive(root: Path, what: str) -> Iterator[None]:
    """Hold ``root/.steam.lock`` for the block; a clear error if another process holds it."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BannermatchError(
            f"another bannermatch steam command is running in {root}: wait for it before the {what}"
        ) from None
    try:
        yield
    finally:
        lock.release()
