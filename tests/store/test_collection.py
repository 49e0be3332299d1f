"""Atomic writes and commits, the catalogue, and loading a model's stored rows."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bannermatch.errors import CollectionError
from bannermatch.store import atomic
from bannermatch.store.catalog import Catalog, Item
from bannermatch.store.collection import Collection, ModelData, write_model_data

# atomic writes ----------------------------------------------------------------


def test_atomic_open_replaces_or_keeps(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.json"
    atomic.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic.atomic_open(path, "w") as fh:
        fh.write("half")
        raise RuntimeError
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _writers(contents: dict[str, str]):
    return {n: (lambda p, c=c: p.write_text(c)) for n, c in contents.items()}


def test_commit_files_changes_files_together(tmp_path: Path) -> None:
    atomic.commit_files(tmp_path, _writers({"a.txt": "a1", "b.txt": "b1"}))
    atomic.commit_files(tmp_path, _writers({"a.txt": "a2", "b.txt": "b2"}))
    assert (tmp_path / "a.txt").read_text() == "a2" and (tmp_path / "b.txt").read_text() == "b2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_commit_that_fails_while_staging_changes_nothing(tmp_path: Path) -> None:
    atomic.commit_files(tmp_path, _writers({"a.txt": "a1", "b.txt": "b1"}))

    def broken(path: Path) -> None:
        path.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.commit_files(tmp_path, {"a.txt": lambda p: p.write_text("a2"), "b.txt": broken})
    atomic.recover(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "a1" and (tmp_path / "b.txt").read_text() == "b1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def _stage(folder: Path, contents: dict[str, str], journal: bool) -> None:
    for name, text in contents.items():
        atomic.staged_path(folder / name).write_text(text)
    if journal:
        (folder / atomic.JOURNAL).write_text(json.dumps(list(contents)))


def test_recover_finishes_a_journaled_commit(tmp_path: Path) -> None:
    atomic.commit_files(tmp_path, _writers({"a.txt": "a1", "b.txt": "b1"}))
    _stage(tmp_path, {"a.txt": "a2", "b.txt": "b2"}, journal=True)
    os.replace(atomic.staged_path(tmp_path / "a.txt"), tmp_path / "a.txt")  # died after one
    (tmp_path / ".b.txt.x1y2.tmp").write_text("junk")
    atomic.recover(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "a2" and (tmp_path / "b.txt").read_text() == "b2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_recover_drops_an_unjournaled_commit(tmp_path: Path) -> None:
    atomic.commit_files(tmp_path, _writers({"a.txt": "a1", "b.txt": "b1"}))
    _stage(tmp_path, {"a.txt": "a2", "b.txt": "b2"}, journal=False)
    (tmp_path / ".a.txt.abcd.tmp").write_text("junk")
    # a reader leaves them alone: a writer may be staging them right now
    atomic.recover(tmp_path, drop_unfinished=False)
    assert atomic.staged_path(tmp_path / "a.txt").exists()
    assert (tmp_path / ".a.txt.abcd.tmp").exists()
    atomic.recover(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "a1" and (tmp_path / "b.txt").read_text() == "b1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_model_data_load_finishes_an_interrupted_commit(tmp_path: Path) -> None:
    folder = tmp_path / "coll" / "models" / "effnet-lite0__k"
    manifest = {"key": "effnet-lite0__k", "dim": 4, "model": "effnet-lite0"}
    emb = np.eye(4, dtype=np.float16)[:3]
    write_model_data(folder, manifest, ["a", "b", "c"], ["", "", ""], lambda p: _npy(p, emb))
    # a second commit staged and journaled, then the process died before its renames
    _npy(atomic.staged_path(folder / "embeddings.npy"), np.eye(4, dtype=np.float16))
    manifest = json.loads((folder / "manifest.json").read_text()) | {"count": 4}
    _stage(
        folder,
        {
            "items.json": json.dumps(["a", "b", "c", "d"]),
            "fingerprints.json": json.dumps(["", "", "", ""]),
            "manifest.json": json.dumps(manifest),
        },
        journal=False,
    )
    names = ["embeddings.npy", "items.json", "fingerprints.json", "manifest.json"]
    (folder / atomic.JOURNAL).write_text(json.dumps(names))
    data = ModelData.load(folder)
    assert data.ids == ["a", "b", "c", "d"] and data.embeddings.shape == (4, 4)
    assert not (folder / atomic.JOURNAL).exists()


def _npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


# the catalogue ---------------------------------------------------------------


def test_catalog_upsert_inserts_and_updates(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        cat.upsert([Item("b", "B", source="/x/b.jpg"), Item("a", "A", source="/x/a.jpg")])
        cat.upsert([Item("b", "B2", source="/x/b.jpg", status="ok", sha256="f" * 64, width=3)])
        assert [i.id for i in cat.items()] == ["b", "a"]  # the update kept its place
        b = cat.get("b")
        assert b is not None and (b.name, b.status, b.width) == ("B2", "ok", 3)
        assert cat.counts() == {"ok": 1, "pending": 1}
        assert [i.id for i in cat.items("pending")] == ["a"]
        assert set(cat.by_sources()) == {"/x/a.jpg", "/x/b.jpg"}
        assert cat.names(["a", "b", "zz"]) == {"a": "A", "b": "B2"}
        assert cat.ids() == {"a", "b"}
        with pytest.raises(sqlite3.IntegrityError):  # one source is one item
            cat.upsert([Item("c", "C", source="/x/a.jpg")])
        assert cat.ids() == {"a", "b"}
        with pytest.raises(sqlite3.IntegrityError):
            cat.upsert([Item("d", "D", status="lost")])
    with Catalog(tmp_path / "catalog.sqlite", create=False) as cat:
        assert cat.get("a") is not None and cat.get("nope") is None


def test_catalog_refuses_missing_and_newer(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="no catalogue at"):
        Catalog(tmp_path / "none.sqlite", create=False)
    with pytest.raises(CollectionError, match="no collection at"):
        Collection(tmp_path / "nowhere").catalog()
    path = tmp_path / "catalog.sqlite"
    Catalog(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(CollectionError, match="has schema 99, newer than"):
        Catalog(path)


def test_resolve_key(tmp_path: Path) -> None:
    coll = Collection(tmp_path)
    with pytest.raises(CollectionError, match="has no embeddings yet"):
        coll.resolve_key()
    for key in ("effnet-lite0__crop256-224-bicubic__cls", "effnet-lite0__pad224-bicubic__cls"):
        folder = coll.model_dir(key)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    with pytest.raises(CollectionError, match="effnet-lite0 has several settings"):
        coll.resolve_key()
    assert coll.resolve_key("effnet-lite0__pad224-bicubic__cls").startswith("effnet-lite0__pad")
    with pytest.raises(CollectionError, match="no embeddings for clip-vit-b32; it has"):
        coll.resolve_key("clip-vit-b32")


def test_a_catalogue_of_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    from bannermatch.store.catalog import SCHEMA_VERSION, steam_appid

    path = tmp_path / "catalog.sqlite"
    with Catalog(path) as cat:
        cat.upsert([Item("620", "Portal 2", url="https://cdn.example/620.jpg"), Item("7", "7")])
    db = sqlite3.connect(path)  # what a catalogue from before item metadata looks like
    db.execute("DROP TABLE steam_art")
    db.execute("ALTER TABLE items DROP COLUMN meta")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    with Catalog(path, create=False) as cat:
        old, plain = cat.get("620"), cat.get("7")
        assert old is not None and plain is not None and old.name == "Portal 2"
        assert old.metadata == {} and steam_appid(old) == "620"  # a downloaded banner
        assert steam_appid(plain) is None  # a number with no URL is just an id
        cat.set_labels({"7": ("Seven", json.dumps({"year": "1995"}))})
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()
    with Catalog(path, create=False) as cat:
        seven = cat.get("7")
        assert seven is not None and seven.name == "Seven" and seven.metadata == {"year": "1995"}
