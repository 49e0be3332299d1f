"""The collection's catalogue: one SQLite table of items, with a versioned schema."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bannermatch.errors import CollectionError

SCHEMA_VERSION = 2  # 2: steam_art, items.meta
STATUSES = ("ok", "missing", "bad", "pending")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL,
    source  TEXT,
    url     TEXT,
    sha256  TEXT,
    width   INTEGER,
    height  INTEGER,
    mode    TEXT,
    format  TEXT,
    status  TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('ok', 'missing', 'bad', 'pending')),
    reason  TEXT,
    size    INTEGER,
    mtime   REAL,
    flags   TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    meta    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS queries (
    id     TEXT PRIMARY KEY,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS steam_art (
    id      TEXT PRIMARY KEY,
    url     TEXT,
    stamp   TEXT,
    checked REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_source ON items (source);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
"""


# SQLite's primary result codes for a file that cannot be written or opened (a full
# disk, a size limit, a read-only file system, a permission): the file is not damaged.
_CANNOT_WRITE = {"SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"}


def cannot_write(exc: BaseException) -> bool:
    """Whether a SQLite error says the disk or the permissions, not the file, failed."""
    name = getattr(exc, "sqlite_errorname", None) or ""  # extended: SQLITE_IOERR_WRITE
    # a failed read (SQLITE_IOERR_READ, _SHORT_READ) may be a damaged file: not this
    return "_".join(name.split("_")[:2]) in _CANNOT_WRITE and not name.endswith("READ")


def damaged(path: Path | str, exc: BaseException) -> CollectionError:
    """The one-line error for a catalogue SQLite cannot read or write."""
    if cannot_write(exc):
        return CollectionError(
            f"cannot write {path} ({exc}): check the free space and the permissions there; "
            "the work already committed is kept"
        )
    return CollectionError(
        f"{path} is damaged ({exc}): restore it from a backup, or move it away and rebuild "
        "the collection (`bannermatch index` or `bannermatch steam catalog`)"
    )


@dataclass
class Item:
    id: str
    name: str
    source: str | None = None  # path (relative to the collection if inside it)
    url: str | None = None  # where the image was downloaded from, if it was
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    status: str = "pending"
    reason: str | None = None
    size: int | None = None
    mtime: float | None = None
    flags: str = ""
    updated: float = 0.0
    meta: str = ""  # JSON object: a names sidecar's columns, Steam's app id, ...

    @property
    def metadata(self) -> dict[str, Any]:
        """:attr:`meta` as a dict (empty when there is none)."""
        if not self.meta:
            return {}
        try:
            value = json.loads(self.meta)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


_COLUMNS = [f.name for f in fields(Item)]


@dataclass(frozen=True)
class ArtState:
    """The store API's answer for one app's art: the URL, its ``t`` stamp, and when asked."""

    url: str | None
    stamp: str | None
    checked: float


class Catalog:
    """``catalog.sqlite`` of a collection. Use as a context manager."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise CollectionError(f"no catalogue at {self.path}: run `bannermatch index` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise damaged(self.path, exc) from None

    def _migrate(self) -> None:
        try:  # an up-to-date catalogue is opened without taking the write lock
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) == SCHEMA_VERSION:
                return
        except sqlite3.OperationalError:
            pass  # a new file: no meta table yet
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise CollectionError(
                    f"{self.path} has schema {row[0]}, newer than this bannermatch "
                    f"understands ({SCHEMA_VERSION}): upgrade bannermatch"
                )
            else:  # an older schema: the statements above added the tables it lacked
                columns = {r[1] for r in self.db.execute("PRAGMA table_info(items)")}
                if "meta" not in columns:
                    self.db.execute("ALTER TABLE items ADD COLUMN meta TEXT NOT NULL DEFAULT ''")
                self.db.execute(
                    "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
                )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def transaction(self) -> _Tx:
        return Catalog._Tx(self.db)

    def upsert(self, items: Iterable[Item]) -> None:
        now = time.time()
        rows = [{c: getattr(it, c) for c in _COLUMNS} | {"updated": now} for it in items]
        if not rows:
            return
        placeholders = ", ".join(f":{c}" for c in _COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS if c != "id")
        with self.transaction():
            self.db.executemany(
                f"INSERT INTO items ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
                f"ON CONFLICT(id) DO UPDATE SET {updates}",
                rows,
            )

    def set_flags(self, flags: dict[str, str]) -> None:
        """Set the audit flags of items (comma-separated; '' clears), touching nothing else."""
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET flags=? WHERE id=?", [(f, i) for i, f in flags.items()]
            )

    def columns(self, *names: str) -> list[tuple[Any, ...]]:
        """Selected columns of every item in catalogue order: a fast read for large tables."""
        unknown = set(names) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown catalogue columns: {sorted(unknown)}")
        return [
            tuple(r)
            for r in self.db.execute(f"SELECT {', '.join(names)} FROM items ORDER BY rowid")
        ]

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def get(self, item_id: str) -> Item | None:
        row = self.db.execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        return Item(**dict(row)) if row else None

    def by_sources(self) -> dict[str, Item]:
        return {
            r["source"]: Item(**dict(r))
            for r in self.db.execute("SELECT * FROM items WHERE source IS NOT NULL")
        }

    def ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT id FROM items")}

    def items(self, status: str | None = None) -> Iterator[Item]:
        query = "SELECT * FROM items"
        args: tuple[str, ...] = ()
        if status is not None:
            query, args = query + " WHERE status=?", (status,)
        for row in self.db.execute(query + " ORDER BY rowid", args):
            yield Item(**dict(row))

    def names(self, ids: Iterable[str]) -> dict[str, str]:
        wanted = list(ids)
        out: dict[str, str] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT id, name FROM items WHERE id IN ({marks})", chunk):
                out[row[0]] = row[1]
        return out

    def set_queries(self, ids: Iterable[str], reason: str, *, replace: bool = False) -> None:
        """Add ids to the query set (the items that reports and the web page feature)."""
        with self.transaction():
            if replace:
                self.db.execute("DELETE FROM queries")
            self.db.executemany(
                "INSERT OR REPLACE INTO queries (id, reason) VALUES (?, ?)",
                [(i, reason) for i in ids],
            )

    def queries(self) -> list[str]:
        """The query set in the order it was stored; empty when none was set."""
        return [r[0] for r in self.db.execute("SELECT id FROM queries ORDER BY rowid")]

    def art(self) -> dict[str, ArtState]:
        """What the store API last said of each Steam app's art, by item id."""
        return {
            r[0]: ArtState(r[1], r[2], r[3])
            for r in self.db.execute("SELECT id, url, stamp, checked FROM steam_art")
        }

    def set_art(self, states: dict[str, ArtState]) -> None:
        """Record the store API's answer (``url`` None: no such art) for these items."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR REPLACE INTO steam_art (id, url, stamp, checked) VALUES (?, ?, ?, ?)",
                [(i, a.url, a.stamp, a.checked) for i, a in states.items()],
            )

    def set_labels(self, labels: dict[str, tuple[str, str]]) -> None:
        """Set the name and metadata (JSON) of items, touching nothing else."""
        with self.transaction():
            self.db.executemany(
                "UPDATE items SET name=?, meta=? WHERE id=?",
                [(name, meta, i) for i, (name, meta) in labels.items()],
            )

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status")
        return {status: n for status, n in rows}


def is_app_id(item_id: str) -> bool:
    """Steam app ids are positive integers written without leading zeros."""
    return item_id.isdigit() and not item_id.startswith("0")


def steam_appid(item: Item) -> str | None:
    """The Steam app an item is, or None: the one place that decides it.

    An item is a Steam app when its metadata says so (``steam_appid`` or the first of
    ``steam_appids``: set by ``steam catalog`` and ``steam download``, or by a names
    sidecar), or, in a catalogue written before item metadata, when it is a banner
    that was downloaded (it has a URL) under a Steam app id. A number as the file name
    of a user's own picture is just an id.
    """
    meta = item.metadata
    value = meta.get("steam_appid") or meta.get("steam_appids")
    candidates = value if isinstance(value, list) else str(value or "").split(",")
    for candidate in candidates:
        appid = str(candidate).strip()
        if is_app_id(appid):
            return appid
    if not item.meta and item.url and is_app_id(item.id):
        return item.id
    return None


def app_meta(appid: str) -> str:
    """The metadata of a new item that is the Steam app ``appid``."""
    return json.dumps({"steam_appid": appid})


def steam_meta(item: Item) -> str:
    """``item``'s metadata with its id recorded as its Steam app id (Steam's commands)."""
    return json.dumps(item.metadata | {"steam_appid": item.id})
