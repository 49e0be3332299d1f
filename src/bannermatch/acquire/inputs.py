"""Readers for what ``index`` accepts: folders, lists of paths, webdataset shards, and
names sidecars (CSV, TSV or JSON) that give the images their names and metadata."""

from __future__ import annotations

import csv
import json
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bannermatch.errors import BannermatchError
from bannermatch.images import IMAGE_EXTENSIONS, TAR_SEPARATOR, read_member

#: Files scanned in a folder: raster images, plus SVG so that it is reported, not ignored.
SCANNED_EXTENSIONS = IMAGE_EXTENSIONS | {".svg"}
#: names sidecars: refused as inputs, with a hint to give them with --names
SIDECAR_EXTENSIONS = frozenset({".tsv", ".csv", ".json"})
#: sidecar columns naming the file (first found wins) and giving its name
KEY_COLUMNS = ("file", "path", "filename", "id")
NAME_COLUMNS = ("name", "title")


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
    #: applied to the decoded image before preprocessing (``index --mask-text``: the text
    #: boxes painted over, :class:`bannermatch.ocr.mask.TextMask`)
    mask: Callable[[Any], Any] | None = None


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


def _scan_list(list_file: Path) -> list[InputItem]:
    """The files a text list names, one path a line; refused when most lines are not files
    (a table or some other text given where a list of paths belongs)."""
    base = list_file.parent
    seen: set[Path] = set()
    items: list[InputItem] = []
    absent: list[str] = []
    for line in list_file.read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        path = Path(os.path.abspath(path if path.is_absolute() else base / path))
        if not os.path.lexists(path):
            absent.append(line)
        if path not in seen:  # a file listed twice is one item
            seen.add(path)
            items.append(_stat_item(path, line))
    if absent and len(absent) * 2 > len(items):
        raise BannermatchError(
            f"{list_file} is not a list of image paths: {len(absent)} of {len(items)} lines "
            f"are not files (the first: {absent[0][:60]!r})"
        )
    return items


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
    if p.suffix.lower() in SIDECAR_EXTENSIONS:
        raise BannermatchError(
            f"{path} is a table, not images: index a folder, a list of image paths or .tar "
            f"shards, and give names with --names {path}"
        )
    try:
        return ScannedInput(_scan_list(p), None)
    except UnicodeDecodeError:
        raise BannermatchError(
            f"{path} is neither a folder, a .tar shard, an image nor a text list of paths"
        ) from None


# names sidecars ------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A sidecar row: the name of a file and its other columns."""

    key: str  # as written: a file name, a path relative to the sidecar, or an item id
    name: str
    meta: dict[str, Any]


@dataclass
class Sidecar:
    path: Path
    labels: list[Label]
    matched: set[str] = field(default_factory=set)  # keys that named an input file

    @property
    def unmatched(self) -> list[str]:
        return [lb.key for lb in self.labels if lb.key not in self.matched]


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    """Names and metadata from a CSV or TSV with a header (a file/path/id column and a
    name/title column), or JSON: a list of such objects, or ``{file: name}``."""
    p = Path(path).expanduser()
    try:
        text = p.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BannermatchError(f"cannot read names file {path}: {exc}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BannermatchError(f"names file {path} is not JSON: {exc}") from None
        rows = _json_rows(data, path)
    else:
        rows = _table_rows(text, p)
    return Sidecar(Path(os.path.abspath(p)), [_label(r, path) for r in rows])


def _json_rows(data: Any, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # {file: name} or {file: {name: ..., ...}}
        return [
            {"file": k, **v} if isinstance(v, dict) else {"file": k, "name": v}
            for k, v in data.items()
        ]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    raise BannermatchError(
        f"names file {path} holds neither a list of objects nor a {{file: name}} object"
    )


def _table_rows(text: str, path: Path) -> list[dict[str, Any]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.suffix.lower() not in (".tsv", ".csv"):
        delimiter = "\t" if "\t" in text.partition("\n")[0] else ","
    return [dict(r) for r in csv.DictReader(text.splitlines(), delimiter=delimiter)]


def _label(row: dict[str, Any], path: str | os.PathLike[str]) -> Label:
    fields = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    key_col = next((c for c in KEY_COLUMNS if c in fields), None)
    name_col = next((c for c in NAME_COLUMNS if c in fields), None)
    if key_col is None or name_col is None:
        raise BannermatchError(
            f"names file {path} needs a {'/'.join(KEY_COLUMNS)} column and a "
            f"{'/'.join(NAME_COLUMNS)} column; it has: {', '.join(fields) or 'none'}"
        )
    meta = {
        k: v for k, v in fields.items() if k not in (key_col, name_col) and v not in ("", None, [])
    }
    return Label(str(fields[key_col]).strip(), str(fields[name_col] or "").strip(), meta)


def label_inputs(
    sidecars: Sequence[Sidecar], items: Iterable[tuple[InputItem, str]]
) -> dict[str, Label]:
    """The label of every input item a sidecar names, by item id. A key names a file by
    its path relative to the sidecar, its file name, its stem, or the item's id; a later
    sidecar wins over an earlier one."""
    pairs = list(items)
    found: dict[str, Label] = {}
    for sidecar in sidecars:
        by_key: dict[str, Label] = {}
        for lb in sidecar.labels:
            by_key.setdefault(lb.key, lb)
            by_key.setdefault(os.path.abspath(sidecar.path.parent / lb.key), lb)
        for it, item_id in pairs:
            name = Path(it.relpath).name
            for key in (it.source, name, Path(name).stem, item_id, it.relpath):
                label = by_key.get(key)
                if label is not None:
                    found[item_id] = label
                    sidecar.matched.add(label.key)
                    break
    return found
