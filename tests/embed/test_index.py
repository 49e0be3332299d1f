"""``bannermatch index``: the collection layout, inputs, incremental updates, resume, damage."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bannermatch.embed.index import index
from bannermatch.errors import CollectionError
from bannermatch.store.collection import Collection
from support.cli import chunked_rows, signal_after_chunks

KEY = "effnet-lite0__pad224-bicubic__cls"
#: the command line's default on the CPU: int8 made from the shipped ranges
CLI_KEY = KEY + "-int8"
CORRUPT = "mixed_images/ukbench09268_corrupt.jpg"


def covers(covers_dir: Path, n: int, start: int = 0) -> list[Path]:
    return sorted((covers_dir / "images").glob("*.jpg"))[start : start + n]


def copy_into(folder: Path, paths: list[Path]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(p, folder / p.name)) for p in paths]


def catalog_rows(collection: Path) -> dict[str, dict[str, Any]]:
    db = sqlite3.connect(collection / "catalog.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in db.execute("SELECT * FROM items")}
    finally:
        db.close()


def stored(collection: Path, key: str = KEY) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    folder = collection / "models" / key
    ids = json.loads((folder / "items.json").read_text("utf-8"))
    emb = np.load(folder / "embeddings.npy")
    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    return ids, emb, manifest


def leftovers(collection: Path) -> list[Path]:
    """Temporary, staged, journal or chunk files that a finished run must not leave."""
    return [
        p
        for p in collection.rglob("*")
        if p.name.endswith((".tmp", ".staged", ".journal"))
        or (p.parent.name == "chunks" and p.is_file())
    ]


def embed_files(model, paths: list[Path]) -> np.ndarray:
    from bannermatch.images import load_image

    return model.embed_images([load_image(str(p)).image for p in paths])


def run_index(input_path: Path, out: Path, model, **kwargs: Any):
    return index(input_path, out, model, progress=False, **kwargs)


# the layout -----------------------------------------------------------------


def test_index_folder_through_cli(
    cli, tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, model
) -> None:
    files = copy_into(tmp_path / "imgs", covers(covers_dir, 8))
    bad = Path(shutil.copy(edge_cases_dir / CORRUPT, tmp_path / "imgs" / "zz-corrupt.jpg"))
    (tmp_path / "imgs" / "notes.txt").write_text("not an image, not scanned")
    out = tmp_path / "coll"

    result = json.loads(cli("index", tmp_path / "imgs", "--out", out, "--json", "-q").stdout)
    assert result["model_key"] == CLI_KEY
    assert (result["scanned"], result["embedded"], result["count"]) == (9, 8, 8)
    assert result["bad"] == [
        {"id": "zz-corrupt", "source": str(bad), "reason": "not a recognised image format"}
    ]

    # catalog.sqlite: every file, ok or bad with its reason
    rows = catalog_rows(out)
    assert set(rows) == {p.stem for p in files} | {"zz-corrupt"}
    assert rows["zz-corrupt"]["status"] == "bad"
    assert rows["zz-corrupt"]["reason"] == "not a recognised image format"
    for p in files:
        row = rows[p.stem]
        assert row["status"] == "ok" and row["reason"] is None
        assert (row["width"], row["height"], row["mode"], row["format"]) == (
            342,
            482,
            "RGB",
            "JPEG",
        )
        assert row["source"] == str(p) and row["name"] == p.stem
        assert row["size"] == p.stat().st_size and len(row["sha256"]) == 64

    # models/<key>/: float16 L2-normalised rows aligned with items.json, and the manifest
    ids, emb, manifest = stored(out, CLI_KEY)
    assert ids == [p.stem for p in files]  # input order
    assert emb.dtype == np.float16 and emb.shape == (8, 1280)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert manifest["count"] == 8 and manifest["dim"] == 1280
    assert manifest["model"] == "effnet-lite0" and manifest["key"] == CLI_KEY
    assert manifest["preprocess"]["fit"] == "pad" and manifest["precision"] == "int8"
    cos = emb.astype(np.float32) @ embed_files(model, files).T  # int8 rows, fp32 vectors
    assert (cos.argmax(axis=1) == np.arange(8)).all()  # row i is ids[i]
    assert (np.diag(cos) > 0.98).all() and (np.diag(cos) < 0.9999).any()  # int8, not fp32
    assert leftovers(out) == []

    # a second run has nothing to do, and says so in words
    proc = cli("index", tmp_path / "imgs", "--out", out, "-q")
    assert "indexed 0 new image(s)" in proc.stdout and "9 up to date" in proc.stdout
    assert stored(out, CLI_KEY)[0] == ids


def test_cli_reports_bad_files_on_stderr(cli_here, tmp_path: Path, edge_cases_dir: Path) -> None:
    out = tmp_path / "coll"
    proc = cli_here("index", edge_cases_dir / "mixed_images", "--out", out, "-q")
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped ")]
    assert skipped == [f"skipped {edge_cases_dir / CORRUPT}: not a recognised image format"]
    assert "5 items" in proc.stdout


def test_bad_input_path(cli_here, tmp_path: Path) -> None:
    proc = cli_here("index", tmp_path / "nothing", "--out", tmp_path / "c", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: input not found: {tmp_path / 'nothing'}"
    ]


def test_nested_folders_and_same_stems(tmp_path: Path, covers_dir: Path, model) -> None:
    a, b, c = covers(covers_dir, 3)
    imgs = tmp_path / "imgs"
    for sub, src in (("a", a), ("b", b), ("b/deeper", c)):
        (imgs / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, imgs / sub / "cover.jpg")
    shutil.copy(a, imgs / "cover.png")  # the same stem again, another extension
    out = tmp_path / "coll"
    result = run_index(imgs, out, model)
    assert result.count == 4 and result.bad == []
    ids = stored(out)[0]
    assert len(set(ids)) == 4
    assert ids == ["cover", "a/cover", "b/cover", "b/deeper/cover"]
    sources = {i: r["source"] for i, r in catalog_rows(out).items()}
    assert sources["b/deeper/cover"] == str(imgs / "b" / "deeper" / "cover.jpg")
    # stable on a rerun, and a second input with the same stems gets its own ids
    assert run_index(imgs, out, model).embedded == 0
    other = copy_into(tmp_path / "other", [a])
    os.rename(other[0], tmp_path / "other" / "cover.jpg")
    result = run_index(tmp_path / "other", out, model)
    assert (result.embedded, result.removed, result.count) == (1, 0, 5)
    ids2 = stored(out)[0]
    assert ids2[:4] == ids and ids2[4] not in ids


# other inputs -----------------------------------------------------------------


def test_text_list_input(tmp_path: Path, covers_dir: Path, model) -> None:
    files = copy_into(tmp_path / "imgs", covers(covers_dir, 4))
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# covers to index\n"
        f"imgs/{files[0].name}\n"
        "\n"
        f"{files[1]}\n"
        f"  imgs/{files[2].name}  \n"
        f"imgs/{files[0].name}\n"  # listed twice: one item
        "imgs/gone.jpg\n"  # does not exist: reported, not a crash
    )
    out = tmp_path / "coll"
    result = run_index(listing, out, model)
    assert result.scanned == 4
    assert result.embedded == 3 and result.count == 3
    assert [b["id"] for b in result.bad] == ["gone"]
    assert result.bad[0]["reason"].startswith("missing: no such file")
    assert stored(out)[0] == [p.stem for p in files[:3]]
    rows = catalog_rows(out)
    assert rows["gone"]["status"] == "bad"
    assert rows[files[1].stem]["source"] == str(files[1])


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_600_000_000
    tar.addfile(info, io.BytesIO(data))


def _shard(path: Path, start: int, files: list[Path], captions: list[str]) -> list[str]:
    """A webdataset shard as img2dataset writes it: KEY.jpg, KEY.json, KEY.txt."""
    keys = []
    with tarfile.open(path, "w") as tar:
        for n, (f, caption) in enumerate(zip(files, captions, strict=True)):
            key = f"{start + n:09d}"
            keys.append(key)
            meta = {"url": f"https://example.com/{f.name}", "key": key, "status": "success"}
            if n % 2:  # odd keys: the caption only in the JSON
                meta["caption"] = caption
            _add(tar, f"{key}.jpg", f.read_bytes())
            _add(tar, f"{key}.json", json.dumps(meta).encode())
            if not n % 2:
                _add(tar, f"{key}.txt", caption.encode())
    return keys


def test_webdataset_shards(tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, model) -> None:
    files = covers(covers_dir, 6)
    titles = [f"Game {n}: {f.stem}" for n, f in enumerate(files)]
    shards = tmp_path / "shards"
    shards.mkdir()
    keys = _shard(shards / "00000.tar", 0, files[:3], titles[:3])
    keys += _shard(shards / "00001.tar", 10000, files[3:], titles[3:])
    with tarfile.open(shards / "00002.tar", "w") as tar:
        _add(tar, "000020000.jpg", (edge_cases_dir / CORRUPT).read_bytes())
        _add(tar, "000020000.txt", b"broken")

    out = tmp_path / "coll"
    result = run_index(shards, out, model)
    assert (result.scanned, result.embedded, result.count) == (7, 6, 6)
    assert [b["id"] for b in result.bad] == ["000020000"]
    ids, emb, _ = stored(out)
    assert ids == keys
    rows = catalog_rows(out)
    assert [rows[k]["name"] for k in keys] == titles
    assert rows[keys[4]]["source"] == f"{shards / '00001.tar'}#{keys[4]}.jpg"
    # the rows are the images' embeddings, read straight out of the shards
    want = embed_files(model, files)
    assert ((emb.astype(np.float32) * want).sum(axis=1) > 0.9999).all()
    # one shard on its own, into another collection
    result = run_index(shards / "00001.tar", tmp_path / "one", model)
    assert stored(tmp_path / "one")[0] == keys[3:]
    # unchanged shards are up to date
    assert run_index(shards, out, model).embedded == 0


def test_damaged_shards(cli_here, tmp_path: Path, covers_dir: Path) -> None:
    from bannermatch.acquire.inputs import scan_input
    from bannermatch.errors import BannermatchError

    cover = covers(covers_dir, 1)[0]
    with tarfile.open(tmp_path / "meta.tar", "w") as tar:
        _add(tar, "000000000.jpg", cover.read_bytes())
        _add(tar, "000000000.json", b"{not json")
        _add(tar, "000000001.jpg", cover.read_bytes())
        _add(tar, "000000001.json", b'{"caption": 1999}')
    items = scan_input(tmp_path / "meta.tar").items
    assert [(it.stem, it.name) for it in items] == [("000000000", None), ("000000001", "1999")]
    (tmp_path / "noise.tar").write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(BannermatchError, match=r"noise\.tar is not a readable tar shard"):
        scan_input(tmp_path / "noise.tar")
    proc = cli_here("index", tmp_path / "noise.tar", "--out", tmp_path / "c", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: {tmp_path / 'noise.tar'} is not a readable tar shard: invalid header"
    ]


# incremental updates ------------------------------------------------------------


def _bump(path: Path, src: Path | bytes) -> None:
    """Replace a file's content and move its mtime forward, as an editor would."""
    st = path.stat()
    path.write_bytes(src if isinstance(src, bytes) else src.read_bytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_incremental_updates(tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, model) -> None:
    imgs = tmp_path / "imgs"
    first = copy_into(imgs, covers(covers_dir, 6))
    out = tmp_path / "coll"
    assert run_index(imgs, out, model).embedded == 6
    ids0, emb0, man0 = stored(out)

    # new files: only they are embedded; earlier rows are unchanged, new ones follow in order
    added = copy_into(imgs, covers(covers_dir, 3, start=100))
    result = run_index(imgs, out, model)
    assert (result.embedded, result.up_to_date, result.removed, result.count) == (3, 6, 0, 9)
    ids1, emb1, man1 = stored(out)
    assert ids1[:6] == ids0 and sorted(ids1[6:]) == [p.stem for p in added]
    np.testing.assert_array_equal(emb1[:6], emb0)
    assert man1["generation"] != man0["generation"]

    # a modified file is re-embedded; the others keep their rows
    changed = first[2]
    _bump(changed, covers(covers_dir, 1, start=200)[0])
    result = run_index(imgs, out, model)
    assert (result.embedded, result.up_to_date, result.removed, result.count) == (1, 8, 0, 9)
    ids2, emb2, _ = stored(out)
    assert sorted(ids2) == sorted(ids1)
    row = emb2[ids2.index(changed.stem)].astype(np.float32)
    assert float(row @ embed_files(model, [changed])[0]) > 0.9999
    assert float(row @ emb1[ids1.index(changed.stem)].astype(np.float32)) < 0.99
    for i in ids1:
        if i != changed.stem:
            np.testing.assert_array_equal(emb2[ids2.index(i)], emb1[ids1.index(i)])
    rows = catalog_rows(out)
    assert rows[changed.stem]["size"] == changed.stat().st_size

    # a deleted file's row disappears; the catalogue remembers it as missing
    gone = first[0]
    gone.unlink()
    result = run_index(imgs, out, model)
    assert (result.embedded, result.removed, result.count) == (0, 1, 8)
    ids3 = stored(out)[0]
    assert gone.stem not in ids3 and len(ids3) == 8
    assert catalog_rows(out)[gone.stem]["status"] == "missing"

    # a file that becomes corrupt after being indexed loses its row, with the reason
    broken = first[1]
    _bump(broken, (edge_cases_dir / CORRUPT).read_bytes())
    result = run_index(imgs, out, model)
    assert (result.embedded, result.removed, result.count) == (0, 1, 7)
    assert [b["id"] for b in result.bad] == [broken.stem]
    assert broken.stem not in stored(out)[0]
    row = catalog_rows(out)[broken.stem]
    assert (row["status"], row["reason"]) == ("bad", "not a recognised image format")

    # repaired and restored: both come back
    _bump(broken, first[3])
    shutil.copy2(covers(covers_dir, 1)[0], gone)
    result = run_index(imgs, out, model)
    assert (result.embedded, result.removed, result.count) == (2, 0, 9)
    assert catalog_rows(out)[gone.stem]["status"] == "ok"
    assert leftovers(out) == []
    Collection(out).load()  # consistent


def test_emptied_folder_empties_the_collection(tmp_path: Path, covers_dir: Path, model) -> None:
    imgs = tmp_path / "imgs"
    files = copy_into(imgs, covers(covers_dir, 3))
    out = tmp_path / "coll"
    run_index(imgs, out, model)
    for f in files:
        f.unlink()
    result = run_index(imgs, out, model)
    assert (result.removed, result.count) == (3, 0)
    data = Collection(out).load()
    assert data.ids == [] and data.embeddings.shape == (0, 1280)
    assert data.manifest["count"] == 0


def test_skip_flagged(tmp_path: Path, covers_dir: Path, model) -> None:
    from bannermatch.store.catalog import Catalog

    imgs = tmp_path / "imgs"
    files = copy_into(imgs, covers(covers_dir, 4))
    out = tmp_path / "coll"
    run_index(imgs, out, model)
    with Catalog(out / "catalog.sqlite") as cat:
        item = cat.get(files[1].stem)
        assert item is not None
        item.flags = "blank"
        cat.upsert([item])
    result = run_index(imgs, out, model, skip_flagged=True)
    assert (result.removed, result.count) == (1, 3)
    assert files[1].stem not in stored(out)[0]
    result = run_index(imgs, out, model)  # flagged items are back without the option
    assert (result.embedded, result.count) == (1, 4)


def test_audit_flags_survive_another_model(tmp_path: Path, covers_dir: Path, model) -> None:
    from bannermatch.store.catalog import Catalog

    imgs = tmp_path / "imgs"
    files = copy_into(imgs, covers(covers_dir, 3))
    out = tmp_path / "coll"
    run_index(imgs, out, model)
    with Catalog(out / "catalog.sqlite") as cat:
        items = list(cat.items())
        for it in items:
            it.flags, it.name = "aspect", f"Title of {it.id}"
        cat.upsert(items)
    result = run_index(imgs, out, "effnet-lite0", engine="torch", fit="squash")
    assert result.embedded == 3 and result.model_key.startswith("effnet-lite0__squash224")
    assert sorted(Collection(out).model_keys()) == sorted([KEY, result.model_key])
    rows = catalog_rows(out)
    assert {r["flags"] for r in rows.values()} == {"aspect"}  # the same images: still flagged
    assert rows[files[0].stem]["name"] == f"Title of {files[0].stem}"
    _bump(files[0], covers(covers_dir, 1, start=50)[0])
    run_index(imgs, out, model)
    rows = catalog_rows(out)
    assert rows[files[0].stem]["flags"] == ""  # a new image: the old audit does not apply
    assert rows[files[1].stem]["flags"] == "aspect"


def test_collection_inside_the_input_folder(tmp_path: Path, covers_dir: Path, model) -> None:
    imgs = tmp_path / "imgs"
    files = copy_into(imgs, covers(covers_dir, 3))
    out = imgs / "coll"
    assert run_index(imgs, out, model).count == 3
    (out / "report").mkdir()
    shutil.copy(files[0], out / "report" / "grid.jpg")  # a report's picture, say
    result = run_index(imgs, out, model)
    assert (result.scanned, result.embedded, result.count) == (3, 0, 3)
    assert "grid" not in catalog_rows(out)


def test_collection_of_its_own_images_through_a_symlink(
    tmp_path: Path, covers_dir: Path, model
) -> None:
    """A collection's images/ are stored relative to it, whatever path leads to it."""
    from bannermatch.store.catalog import Catalog

    real = tmp_path / "real" / "coll"
    files = copy_into(real / "images", covers(covers_dir, 2))
    Catalog(real / "catalog.sqlite").close()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    via_link = tmp_path / "link" / "coll"
    result = run_index(via_link, via_link, model)
    assert (result.embedded, result.count) == (2, 2)
    rows = catalog_rows(real)
    assert sorted(r["source"] for r in rows.values()) == sorted(f"images/{f.name}" for f in files)
    assert run_index(real, real, model).embedded == 0  # the same items by the real path


# resume after a kill -------------------------------------------------------------


def _comparable(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i: {k: v for k, v in r.items() if k != "updated"} for i, r in rows.items()}


def test_resume_after_sigkill(tmp_path: Path, covers_dir: Path, model) -> None:
    imgs = tmp_path / "imgs"
    copy_into(imgs, covers(covers_dir, 150))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    chunks = killed / "models" / KEY / "chunks"
    args = ["index", str(imgs), "--out", str(killed), "--batch-size", "4", "--workers", "2"]
    args += ["--precision", "fp32"]  # the rows of ``model``, resumed by it below
    returncode, _ = signal_after_chunks(*args, "-q", chunks=chunks, n=3, sig=signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert not (killed / "models" / KEY / "manifest.json").exists()  # killed mid-way
    n_chunked = chunked_rows(chunks)
    assert 12 <= n_chunked < 150

    resumed = run_index(imgs, killed, model, batch_size=16)
    assert resumed.up_to_date >= n_chunked  # chunked rows were not embedded again
    assert resumed.embedded == 150 - resumed.up_to_date
    uninterrupted = run_index(imgs, clean, model, batch_size=16)
    assert uninterrupted.embedded == 150 and resumed.count == uninterrupted.count == 150

    ids_k, emb_k, man_k = stored(killed)
    ids_c, emb_c, man_c = stored(clean)
    assert ids_k == ids_c
    np.testing.assert_allclose(emb_k.astype(np.float32), emb_c.astype(np.float32), atol=1e-3)
    assert man_k["count"] == man_c["count"] == 150
    assert _comparable(catalog_rows(killed)) == _comparable(catalog_rows(clean))
    db = sqlite3.connect(killed / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert leftovers(killed) == [] and leftovers(clean) == []


@pytest.mark.parametrize("left", [(1, 2, 3), (1,)], ids=["all chunks left", "the first left"])
def test_resume_after_kill_between_commit_and_cleanup(
    tmp_path: Path, covers_dir: Path, model, left: tuple[int, ...]
) -> None:
    """Chunks still there after the merge was committed (all, or some: the run died while
    removing them): merged again, same rows, same order."""
    imgs = tmp_path / "imgs"
    copy_into(imgs, covers(covers_dir, 10))
    out = tmp_path / "coll"
    run_index(imgs, out, model, batch_size=4)
    ids0, emb0, _ = stored(out)
    # put back the chunks the run wrote and removed, as if it died before removing them
    from bannermatch.acquire.inputs import InputItem
    from bannermatch.embed.batches import Batch, Decoded
    from bannermatch.embed.index import _write_chunk

    rows = catalog_rows(out)
    for n, start in enumerate(range(0, 10, 4), start=1):
        if n not in left:
            continue
        part = ids0[start : start + 4]
        decoded = [
            Decoded(InputItem(rows[i]["source"], i, i, 0, 0.0), sha256=rows[i]["sha256"])
            for i in part
        ]
        batch = Batch(
            decoded, [], emb0[start : start + 4].astype(np.float32), np.ones(len(part), np.float32)
        )
        _write_chunk(out / "models" / KEY, n, batch, part)
    result = run_index(imgs, out, model)
    assert (result.embedded, result.up_to_date, result.count) == (0, 10, 10)
    ids1, emb1, _ = stored(out)
    assert ids1 == ids0
    np.testing.assert_array_equal(emb1, emb0)
    assert leftovers(out) == []


def test_resume_uses_the_chunk_of_a_modified_file(
    tmp_path: Path, covers_dir: Path, model, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that re-embedded a modified file and died before its merge: the chunk's row,
    newer than the committed one, is what the next run keeps."""
    from bannermatch.embed import index as indexer

    imgs = tmp_path / "imgs"
    files = copy_into(imgs, covers(covers_dir, 4))
    out = tmp_path / "coll"
    run_index(imgs, out, model)
    _bump(files[1], covers(covers_dir, 1, start=300)[0])

    def die(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(indexer, "write_model_data", die)
        with pytest.raises(KeyboardInterrupt):
            run_index(imgs, out, model)
    assert len(list((out / "models" / KEY / "chunks").glob("*.npz"))) == 1
    result = run_index(imgs, out, model)
    assert (result.embedded, result.up_to_date, result.count) == (0, 4, 4)
    ids, emb, _ = stored(out)
    row = emb[ids.index(files[1].stem)].astype(np.float32)
    assert float(row @ embed_files(model, [files[1]])[0]) > 0.9999
    assert leftovers(out) == []


# damaged collections ---------------------------------------------------------------


@pytest.fixture
def small_collection(tmp_path: Path, covers_dir: Path, model) -> tuple[Path, Path]:
    imgs = tmp_path / "imgs"
    copy_into(imgs, covers(covers_dir, 5))
    out = tmp_path / "coll"
    run_index(imgs, out, model)
    return imgs, out


def _truncate_rows(folder: Path) -> None:
    emb = np.load(folder / "embeddings.npy")
    np.save(folder / "embeddings.npy", emb[:-2])


def _other_key(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["key"] = "effnet-lite0__squash224-bicubic__cls"
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _extra_id(folder: Path) -> None:
    ids = json.loads((folder / "items.json").read_text())
    (folder / "items.json").write_text(json.dumps([*ids, "intruder"]))


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_truncate_rows, "embeddings.npy has 3 rows but items.json lists 5"),
        (_other_key, "its manifest is for 'effnet-lite0__squash224-bicubic__cls'"),
        (_extra_id, "manifest counts 5 items, items.json lists 6"),
    ],
)
def test_inconsistent_collection(
    cli_here, small_collection: tuple[Path, Path], model, damage, says: str
) -> None:
    imgs, out = small_collection
    first = stored(out)[0][0]
    damage(out / "models" / KEY)
    with pytest.raises(CollectionError, match="rebuild it with `bannermatch index INPUT --out"):
        Collection(out).load()
    proc = cli_here("similar", out, first, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bannermatch: error: ")
    assert says in lines[0]
    assert lines[0].endswith(f"rebuild it with `bannermatch index INPUT --out {out}`")
    # the hint works: index rebuilds the model's files from the images
    result = run_index(imgs, out, model)
    assert (result.embedded, result.count) == (5, 5)
    assert Collection(out).load().ids == stored(out)[0]


def test_truncated_embeddings_file(small_collection: tuple[Path, Path]) -> None:
    _, out = small_collection
    path = out / "models" / KEY / "embeddings.npy"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CollectionError, match=r"embeddings\.npy is damaged"):
        Collection(out).load()


def test_missing_collection(cli_here, tmp_path: Path) -> None:
    proc = cli_here("match", tmp_path / "nowhere", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: {tmp_path / 'nowhere'} has no embeddings yet: "
        f"run `bannermatch index INPUT --out {tmp_path / 'nowhere'}`"
    ]
