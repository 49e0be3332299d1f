"""Atomic file writes: a temporary file in the same folder, fsync, then rename.

A group of files that must change together (embeddings, items and manifest) is
written with :func:`commit_files`: every file is first written under a temporary
name, a small journal lists the renames, and the renames are replayed by
:func:`recover` if the process dies half-way. Readers therefore never see a
mix of old and new files once :func:`recover` has run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from bannermatch.errors import CollectionError

JOURNAL = "commit.journal"
TMP_SUFFIX = ".tmp"
#: read once at import (setting it is the only way to read it): new files get 0o666 & ~umask
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: writes one file of a :func:`commit_files` group to the path it is given; what it
#: returns (``Path.write_text`` returns a count) is ignored
Writer = Callable[[Path], object]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as an ordinary new file, not mkstemp's 0600
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


@contextlib.contextmanager
def made_once(path: Path) -> Iterator[bool]:
    """For a cached file that takes a while to make (a model export): the block runs
    holding ``path``'s lock file, and is told whether ``path`` still needs making.
    Processes started together make it once: the others wait, then find it made. The
    lock file goes once the file is made (a process that takes a new one then finds the
    file made, as the waiting ones do)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with FileLock(lock):
        yield not path.is_file()
    if path.is_file():
        lock.unlink(missing_ok=True)


def staged_path(path: Path) -> Path:
    """The name a file of a :func:`commit_files` group is written under first."""
    return path.with_name(path.name + ".staged")


def commit_files(folder: Path, writers: Mapping[str, Writer]) -> None:
    """Write several files of ``folder`` so that they change together.

    ``writers`` maps a file name to a function that writes that file's content
    to the path it is given. All files are written and synced under staged
    names first; then a journal is written; then the renames happen; then the
    journal is removed. :func:`recover` finishes an interrupted rename phase.
    """
    folder.mkdir(parents=True, exist_ok=True)
    recover(folder)
    names = list(writers)
    for name in names:
        staged = staged_path(folder / name)
        writers[name](staged)
        with open(staged, "rb+") as fh:
            os.fsync(fh.fileno())
    write_json(folder / JOURNAL, names)
    recover(folder)


def recover(folder: Path, *, drop_unfinished: bool = True) -> None:
    """Finish a commit that was interrupted during its renames, or drop an unfinished one.

    A reader passes ``drop_unfinished=False``: it finishes a journaled commit but
    leaves staged and temporary files alone, as a writer may be writing them now.
    """
    journal = folder / JOURNAL
    try:
        names = json.loads(journal.read_text("utf-8"))
    except FileNotFoundError:
        names = None
    except (OSError, ValueError) as exc:  # written atomically: only a damaged disk does this
        names = exc
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) and "/" not in n for n in names)
    ):
        raise CollectionError(
            f"{journal} is damaged: an interrupted commit cannot be finished, so the files "
            f"of {folder} may not belong together; rebuild them with "
            f"`bannermatch index INPUT --out {folder.parent.parent}`"
        )
    if names is not None:
        for name in names:
            # another process may be replaying the same journal: a rename done is done
            with contextlib.suppress(FileNotFoundError):
                os.replace(staged_path(folder / name), folder / name)
        _fsync_dir(folder)
        journal.unlink(missing_ok=True)
    if not drop_unfinished:
        return
    # staged files without a journal belong to a commit that never reached its
    # rename phase: the old files are still the truth.
    for leftover in [*folder.glob("*.staged"), *folder.glob(f".*{TMP_SUFFIX}")]:
        leftover.unlink(missing_ok=True)


def discard(folder: Path) -> None:
    """Drop a commit journal and every staged or temporary file of ``folder`` (a writer
    that will rewrite all of the folder's files does this to a damaged journal)."""
    (folder / JOURNAL).unlink(missing_ok=True)
    recover(folder)
