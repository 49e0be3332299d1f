"""One Steam command at a time per collection (an advisory lock file)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from bannermatch.errors import BannermatchError

LOCK_FILE = ".steam.lock"


@contextlib.contextmanager
def exclusive(root: Path, what: str) -> Iterator[None]:
    """Hold ``root/.steam.lock`` for the block; a clear error if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BannermatchError(
                f"another bannermatch steam command is running in {root}: wait for it "
                f"before the {what}"
            ) from None
        yield
