"""Readers for what ``index`` accepts: a folder, a list of paths, or webdataset shards."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import BannermatchError
from .images import IMAGE_EXTENSIONS, TAR_SEPARATOR, read_member

#: Files scanned in a folder: raster images, plus SVG so that it is reported, not ignored.
SCANNED_EXTENSIONS = IMAGE_EXTENSIONS | {".svg"}


@dataclass(frozen=True)
class InputItem:
    """One image to index: where it is and what identifies its current version."""

    source: str  # absolute path, or "<absolute shard path>#<member name>"
    stem: str  # preferred item id
    relpath: str  # path relative to the input, used when stems collide
    size: int
    mtime: float
    name: str | None = None  # caption or title carried by the input, if any
    offset: int = -1  # byte offset of a tar member's data
    error: str | None = None  # why the item cannot be indexed, known before reading it


#: the reason given to a file whose name cannot be stored (the catalogue keeps text)
UNDECODABLE_NAME = "unreadable: the file name is not valid UTF-8"


def _escaped(text: str) -> str:
    """``text`` with the bytes that are not UTF-8 written as ``\\xNN``."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _storable(item: InputItem) -> InputItem:
    """``item``, or for a path that is not valid UTF-8 (a name written under another
    encoding) a stand-in with a readable, escaped path that is reported as bad."""
    try:
        item.source.encode("utf-8")
        return item
    except UnicodeEncodeError:
        pass
    return InputItem(
        _escaped(item.source),
        _escaped(item.stem),
        _escaped(item.relpath),
        item.size,
        item.mtime,
        error=f"{UNDECODABLE_NAME} ({_escaped(item.relpath)}): rename the file",
    )


@dataclass(frozen=True)
class ScannedInput:
    items: list[InputItem]
    #: the folder whose files are all listed (vanished files under it are gone), if any
    root: str | None


def _stat_item(path: Path, relpath: str) -> InputItem:
    """An item for ``path``; a file that cannot be stat'ed is still listed, and reported
    when it is read (a broken or looping symlink, a path of a list that does not exist)."""
    for stat in (path.stat, path.lstat):
        try:
            st = stat()
        except OSError:
            continue
        return InputItem(str(path), path.stem, relpath, st.st_size, st.st_mtime)
    return InputItem(str(path), path.stem, relpath, -1, 0.0)


def _scan_folder(root: Path) -> Iterator[InputItem]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in SCANNED_EXTENSIONS:
                path = Path(folder, name)
                yield _stat_item(path, path.relative_to(root).as_posix())


def _scan_list(list_file: Path) -> Iterator[InputItem]:
    base = list_file.parent
    seen: set[Path] = set()
    for line in list_file.read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        path = Path(os.path.abspath(path if path.is_absolute() else base / path))
        if path not in seen:  # a file listed twice is one item
            seen.add(path)
            yield _stat_item(path, line)


def _scan_tar(shard: Path) -> list[InputItem]:
    """Images of an img2dataset shard, with the caption or JSON metadata beside them."""
    try:
        return list(_tar_items(shard))
    except (tarfile.TarError, OSError) as exc:
        raise BannermatchError(f"{shard} is not a readable tar shard: {exc}") from None


def _tar_items(shard: Path) -> Iterator[InputItem]:
    st = shard.stat()
    with tarfile.open(shard, "r:") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        by_key: dict[str, dict[str, tarfile.TarInfo]] = {}
        for m in members:
            key, _, ext = m.name.rpartition(".")
            by_key.setdefault(key, {})["." + ext.lower()] = m
        for key in sorted(by_key):
            parts = by_key[key]
            images = [ext for ext in parts if ext in SCANNED_EXTENSIONS]
            if not images:
                continue
            member = parts[sorted(images)[0]]
            name = None
            if ".txt" in parts:
                name = read_member(tar, parts[".txt"]).decode("utf-8", "replace").strip()
            elif ".json" in parts:
                try:
                    meta = json.loads(read_member(tar, parts[".json"]) or b"{}")
                except ValueError:  # metadata that does not parse only loses the caption
                    meta = None
                if isinstance(meta, dict):
                    name = str(meta.get("caption") or meta.get("name") or "") or None
            yield InputItem(
                f"{shard}{TAR_SEPARATOR}{member.name}",
                Path(key).name,
                f"{shard.name}/{member.name}",
                member.size,
                st.st_mtime,
                name or None,
                member.offset_data,
            )


def scan_input(path: str | os.PathLike[str]) -> ScannedInput:
    """List the images of ``path``: a folder (recursive), a ``.tar`` shard, a folder of
    shards, or a text file with one image path per line."""
    p = Path(path).expanduser()
    if not p.exists():
        raise BannermatchError(f"input not found: {path}")
    scanned = _scan(Path(os.path.abspath(p)), path)
    return ScannedInput([_storable(it) for it in scanned.items], scanned.root)


def _scan(p: Path, path: str | os.PathLike[str]) -> ScannedInput:
    if p.is_dir():
        shards = sorted(p.glob("*.tar"))
        if shards and not any(_scan_folder(p)):
            return ScannedInput([it for s in shards for it in _scan_tar(s)], None)
        return ScannedInput(list(_scan_folder(p)), str(p))
    if p.suffix.lower() == ".tar":
        return ScannedInput(_scan_tar(p), None)
    if p.suffix.lower() in SCANNED_EXTENSIONS:
        return ScannedInput([_stat_item(p, p.name)], None)
    try:
        return ScannedInput(list(_scan_list(p)), None)
    except UnicodeDecodeError:
        raise BannermatchError(
            f"{path} is neither a folder, a .tar shard, an image nor a text list of paths"
        ) from None
