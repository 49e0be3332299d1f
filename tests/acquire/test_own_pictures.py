"""A user's own pictures: several inputs, names sidecars, honest identities, one name
resolver shared by the CLI and the API, and one-line errors. Real covers, through the CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bannermatch.present.server.app import create_app
from bannermatch.present.server.data import ServedCollection
from bannermatch.store.catalog import Catalog, steam_appid
from support.cli import run_cli

#: IGDB covers kept (games.json ids): Breath of the Wild, The Witcher 3, Portal 2, and others
IGDB = ["7346.jpg", "1942.jpg", "72.jpg", "1103.jpg", "22439.jpg"]
#: covers kept: sequels and near names, to test that numbers are respected
COVERS = [
    "portal-0.jpg", "portal-2-0.jpg", "the-witcher-3-0.jpg", "the-witcher-2-0.jpg",
    "assassin-s-creed-2-0.jpg", "assassins-creed-3-0.jpg", "hollow-knight-0.jpg",
    "abzu-0.jpg", "abzu-1.jpg",
]  # fmt: skip


def _pick(src: Path, names: list[str], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy(src / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def own(tmp_path_factory, covers_dir, igdb_dir) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("own")
    return {
        "covers": _pick(covers_dir / "images", COVERS, base / "covers"),
        "igdb": _pick(igdb_dir / "images", IGDB, base / "igdb"),
        "covers_tsv": covers_dir / "covers.tsv",
        "games_json": igdb_dir / "games.json",
        "base": base,
    }


@pytest.fixture(scope="module")
def coll(own) -> Path:
    out = own["base"] / "coll"
    proc = run_cli(
        "index", own["covers"], own["igdb"], "--out", out, "-q", "--json",
        "--names", own["covers_tsv"], "--names", own["games_json"],
    )  # fmt: skip
    report = json.loads(proc.stdout)
    assert report["count"] == len(list(own["covers"].iterdir())) + len(IGDB)
    tsv, games = report["names"]
    assert tsv["matched"] == len(list(own["covers"].iterdir())) and tsv["rows"] == 635
    assert len(tsv["unmatched"]) == 635 - tsv["matched"]  # counted and listed, not dropped
    assert games["matched"] == len(IGDB) and games["rows"] == 252
    run_cli("match", out, "-k", "5", "-q")
    return out


def _items(coll: Path) -> dict:
    with Catalog(coll / "catalog.sqlite") as cat:
        return {it.id: it for it in cat.items()}


def test_names_and_metadata_come_from_the_sidecars(coll):
    items = _items(coll)
    assert items["7346"].name == "The Legend of Zelda: Breath of the Wild"
    assert items["7346"].metadata["genres"] == ["Puzzle", "Adventure"]
    assert items["portal-2-0"].name == "Portal 2"
    assert items["portal-2-0"].metadata["steam_appids"] == "620"
    assert items["portal-2-0"].metadata["group"] == "portal2"


def test_only_metadata_makes_a_steam_app(coll, own, cli):
    items = _items(coll)
    assert steam_appid(items["portal-2-0"]) == "620"  # covers.tsv says so
    assert all(steam_appid(items[i.removesuffix(".jpg")]) is None for i in IGDB)
    client = TestClient(create_app(ServedCollection.open(coll)))
    for name in IGDB:
        item = client.get(f"/api/items/{name.removesuffix('.jpg')}").json()
        assert item["store_url"] is None and item["steamdb_url"] is None
    legacy = client.get("/app_from_name", params={"name": "super metroid"}).json()
    assert legacy["id"] == "1103" and legacy["steam_store_url"] is None
    cli("report", coll, "-q")
    texts = [p for p in (coll / "report").iterdir() if p.suffix in (".html", ".md", ".txt")]
    pages = "".join(p.read_text("utf-8") for p in texts)
    assert "store.steampowered.com/app/620/" in pages
    for name in IGDB:
        assert f"app/{name.removesuffix('.jpg')}/" not in pages


@pytest.mark.parametrize(
    ("typed", "want"),
    [
        ("zelda breath", "7346"),
        ("breath of the wild zelda", "7346"),
        ("portl 2", "portal-2-0"),
        ("PORTAL", "portal-0"),
        ("witchr 3", "the-witcher-3-0"),
        ("witcher 2", "the-witcher-2-0"),
        ("asassins creed 2", "assassin-s-creed-2-0"),
        ("assassin creed 3", "assassins-creed-3-0"),
        ("hollow knigt", "hollow-knight-0"),
        ("super metriod", "1103"),
    ],
)
def test_cli_and_api_choose_the_same_item(coll, cli, typed, want):
    out = json.loads(cli("similar", coll, typed, "-k", "2", "--json").stdout)
    assert out["query"]["id"] == want
    client = TestClient(create_app(ServedCollection.open(coll)))
    for limit in (1, 3, 10):
        found = client.get("/api/names", params={"q": typed, "limit": limit}).json()
        assert found["results"][0]["id"] == want, (typed, limit)
    legacy = client.get("/app_from_name", params={"name": typed}).json()
    assert legacy["name"] == out["query"]["name"]


def test_a_fuzzy_choice_is_said_with_the_next_candidates(coll, cli):
    proc = cli("similar", coll, "witchr 3", "-k", "2")
    first = proc.stdout.splitlines()[0]
    assert "the-witcher-3-0 'The Witcher 3' (closest name for 'witchr 3'" in first
    assert "next: " in first and "Wild Hunt" in first


def test_ids_are_stable_and_clashes_resolved_the_same_way(tmp_path, covers_dir, cli):
    src = sorted((covers_dir / "images").glob("*.jpg"))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(src[0], a / "cover.jpg")
    shutil.copy(src[1], b / "cover.jpg")  # the same file name in two inputs
    out = tmp_path / "coll"
    cli("index", a, b, "--out", out, "-q")
    first = {it.source: it.id for it in _items(out).values()}
    assert sorted(first.values()) == ["cover", "cover.jpg"]
    cli("index", b, a, "--out", out, "-q")  # another order, the same ids
    assert {it.source: it.id for it in _items(out).values()} == first


def test_sidecar_rows_that_name_no_input_are_reported(tmp_path, covers_dir, cli):
    images = _pick(covers_dir / "images", ["abzu-0.jpg"], tmp_path / "images")
    sidecar = tmp_path / "names.json"
    sidecar.write_text(json.dumps({"abzu-0.jpg": "ABZÛ", "nowhere.jpg": "Lost"}))
    proc = cli("index", images, "--out", tmp_path / "coll", "--names", sidecar)
    assert "names from" in proc.stdout and "1 of 2 rows" in proc.stdout
    assert "1 do not (nowhere.jpg)" in proc.stdout
    assert _items(tmp_path / "coll")["abzu-0"].name == "ABZÛ"


def _one_line_error(proc, *words: str) -> None:
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("bannermatch: error: ") and "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


@pytest.mark.parametrize("ext", [".tsv", ".csv", ".json"])
def test_a_table_as_input_gets_a_hint(tmp_path, cli, ext):
    table = tmp_path / f"covers{ext}"
    table.write_text("file\ttitle\na.jpg\tA\n")
    _one_line_error(cli("index", table, "--out", tmp_path / "c", check=False), "--names")
    assert not (tmp_path / "c").exists()


def test_a_list_of_mostly_missing_paths_is_refused(tmp_path, covers_dir, cli):
    listing = tmp_path / "list.txt"
    real = sorted((covers_dir / "images").glob("*.jpg"))[0]
    listing.write_text(f"{real}\nnot/a/file.jpg\nnor/this.jpg\n")
    proc = cli("index", listing, "--out", tmp_path / "c", check=False)
    _one_line_error(proc, "not a list of image paths", "2 of 3")


def test_a_sidecar_without_the_columns_is_refused(tmp_path, covers_dir, cli):
    images = _pick(covers_dir / "images", ["abzu-0.jpg"], tmp_path / "images")
    bad = tmp_path / "names.csv"
    bad.write_text("picture,label\nabzu-0.jpg,Abzu\n")
    proc = cli("index", images, "--out", tmp_path / "c", "--names", bad, check=False)
    _one_line_error(proc, "names.csv", "file/path/filename/id", "picture, label")


@pytest.mark.parametrize(
    "command",
    [
        ["index", "{images}", "--out", "{out}"],
        ["report", "{coll}", "--out", "{out}"],
        ["demo", "--out", "{out}", "--no-serve"],
    ],
)
def test_every_out_that_cannot_be_written_is_one_line(tmp_path, covers_dir, coll, cli, command):
    images = _pick(covers_dir / "images", ["abzu-0.jpg"], tmp_path / "images")
    out = "/proc/bannermatch-cannot-be-here"
    args = [a.format(images=images, coll=coll, out=out) for a in command]
    env = os.environ | {"BANNERMATCH_STEAMSPY_URL": "http://127.0.0.1:9"}  # no Steam
    proc = cli(*args, "-q", check=False, env=env)
    _one_line_error(proc, out)


def test_serve_on_a_busy_port_is_one_line_before_serving(coll, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", coll, "--port", str(port), check=False)
    _one_line_error(proc, f"port {port}", "--port")
    assert "serving" not in proc.stderr


def test_names_sidecar_formats(tmp_path, covers_dir):
    from bannermatch.acquire.inputs import read_sidecar

    tsv = tmp_path / "a.tsv"
    tsv.write_text("path\tname\tyear\nx/abzu-0.jpg\tAbzu\t2016\n")
    (label,) = read_sidecar(tsv).labels
    assert (label.key, label.name, label.meta) == ("x/abzu-0.jpg", "Abzu", {"year": "2016"})
    listed = tmp_path / "b.json"
    listed.write_text(json.dumps([{"id": "abzu-0", "title": "Abzu", "genres": ["Adventure"]}]))
    (label,) = read_sidecar(listed).labels
    assert (label.key, label.meta) == ("abzu-0", {"genres": ["Adventure"]})
    with open(covers_dir / "covers.tsv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    labels = read_sidecar(covers_dir / "covers.tsv").labels
    assert len(labels) == len(rows) and labels[0].name == rows[0]["title"]


def test_label_search_names_the_words_no_label_has(coll, cli):
    out = json.loads(cli("search", coll, "dog zelda", "-n", "3", "--json").stdout)
    assert out["mode"] == "labels" and out["unmatched_words"] == ["zelda"]
    text = cli("search", coll, "dog zelda", "-n", "3").stdout
    assert "no ImageNet class has the word(s) 'zelda'" in text
    client = TestClient(create_app(ServedCollection.open(coll)))
    api = client.get("/api/search/text", params={"q": "dog zelda", "n": 3}).json()
    assert api["unmatched_words"] == ["zelda"]


def test_scores_never_pass_one_and_match_names_its_groups(tmp_path, covers_dir, cli):
    images = tmp_path / "images"
    images.mkdir()
    src = sorted((covers_dir / "images").glob("*.jpg"))
    for name in ("one.jpg", "same.jpg"):  # the same picture twice
        shutil.copy(src[5], images / name)
    for path in src[10:14]:
        shutil.copy(path, images / path.name)
    out = tmp_path / "coll"
    cli("index", images, "--out", out, "-q")
    matched = cli("match", out, "-k", "3", "-q").stdout
    assert "1 near-duplicate group(s)" in matched and "1. one 'one', same 'same'" in matched
    hits = json.loads(cli("similar", out, "one", "-n", "2", "--json").stdout)["results"]
    assert hits[0]["id"] == "same" and hits[0]["score"] <= 1.0


def test_a_query_file_that_is_not_an_image_is_named(coll, tmp_path, cli):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")
    _one_line_error(cli("similar", coll, fake, check=False), str(fake), "not a recognised image")


def _small_files() -> None:
    """In the child: files may not grow past 20 kB (writes then fail like on a full disk)."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_full_disk_is_one_line_and_a_rerun_finishes(tmp_path, covers_dir, cli):
    images = _pick(covers_dir / "images", ["abzu-0.jpg", "portal-0.jpg"], tmp_path / "images")
    out = tmp_path / "coll"
    proc = cli("index", images, "--out", out, "-q", check=False, preexec_fn=_small_files)
    _one_line_error(proc)
    assert "cannot write" in proc.stderr or "File too large" in proc.stderr, proc.stderr
    assert "damaged" not in proc.stderr  # the disk failed, not the catalogue
    report = json.loads(cli("index", images, "--out", out, "-q", "--json").stdout)
    assert report["count"] == 2


def test_an_out_under_a_file_is_one_line(tmp_path, covers_dir, cli):
    images = _pick(covers_dir / "images", ["abzu-0.jpg"], tmp_path / "images")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = cli("index", images, "--out", blocker / "coll", "-q", check=False)
    _one_line_error(proc, str(blocker))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission")
def test_a_folder_without_write_permission_is_one_line(tmp_path, covers_dir, cli):
    images = _pick(covers_dir / "images", ["abzu-0.jpg"], tmp_path / "images")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = cli("index", images, "--out", locked / "coll", "-q", check=False)
    _one_line_error(proc, str(locked / "coll"))


def test_serve_warns_before_serving_when_there_are_no_match_results(tmp_path, covers_dir, cli):
    import subprocess
    import sys

    from support.servers import free_port

    images = _pick(covers_dir / "images", ["abzu-0.jpg", "portal-0.jpg"], tmp_path / "images")
    out = tmp_path / "coll"
    cli("index", images, "--out", out, "-q")  # no `match`
    port = free_port()
    command = [sys.executable, "-m", "bannermatch.cli", "serve", str(out), "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or "serving" not in lines[-1]:
            line = server.stderr.readline() if server.stderr else ""
            assert line, f"serve ended before serving: {lines}"
            lines.append(line)
    finally:
        server.terminate()
        server.wait(timeout=30)
    warnings = [line for line in lines if line.startswith("bannermatch: warning: ")]
    assert len(warnings) == 1 and "no `match` results" in warnings[0], lines
    assert f"bannermatch match {out}" in warnings[0]
