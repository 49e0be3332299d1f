"""``bannermatch steam download`` against a local CDN that injects faults per app id."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from bannermatch.acquire.inputs import scan_input
from bannermatch.acquire.steam import BannerNotFound, fetch_banner
from bannermatch.errors import BannermatchError
from bannermatch.store.catalog import Catalog, Item
from bannermatch.store.collection import Collection
from support import SHARED_DATA
from support.steam import Cdn, FakeServer, cdn_requests, closed_port_url, make_jpeg, steam_env

SHARED = SHARED_DATA / "steam_catalog"
REAL_BANNER = SHARED / "1227690_library_600x900_2x.jpg"


def _catalogue(coll: Path, ids: list[str]) -> None:
    with Catalog(coll / "catalog.sqlite") as cat:
        cat.upsert(Item(i, f"Game {i}") for i in ids)


def _rows(coll: Path) -> dict[str, Item]:
    with Catalog(coll / "catalog.sqlite") as cat:
        return {it.id: it for it in cat.items()}


def _download(cli, coll: Path, cdn: str, *args: object, check: bool = True):
    return cli(
        "steam", "download", coll, "--json", "-q", *args,
        env=steam_env(BANNERMATCH_STEAM_CDN=cdn, BANNERMATCH_STEAM_API_URL=cdn), check=check,
    )  # fmt: skip


def _temporary_files(coll: Path) -> list[Path]:
    return [p for p in (coll / "images").iterdir() if p.name.startswith(".")]


#: app id -> (fault, final status)
FAULTS = {
    "10": ("", "ok"),
    "20": ("404", "missing"),
    "30": ("no2x", "ok"),
    "40": ("429", "ok"),
    "50": ("429date", "ok"),
    "60": ("500once", "ok"),
    "70": ("stall", "ok"),
    "80": ("reset", "ok"),
    "90": ("html", "bad"),
    "100": ("truncated", "bad"),
    "110": ("500", "bad"),
}


def test_every_fault_ends_in_the_right_status(cli, tmp_path):
    images = {a: make_jpeg(int(a)) for a in FAULTS}
    cdn = Cdn(images, {a: f for a, (f, _) in FAULTS.items() if f}, stall=5.0, retry_after=1.0)
    coll = tmp_path / "coll"
    _catalogue(coll, list(FAULTS))
    with FakeServer(cdn) as server:
        args = ["--retries", "2", "--backoff", "0.05", "--timeout", "0.5", "--rate", "0"]
        out = json.loads(_download(cli, coll, server.url, *args).stdout)
        first_hits = dict(cdn.hits)
        again = json.loads(_download(cli, coll, server.url, *args).stdout)
    rows = _rows(coll)
    assert {a: rows[a].status for a in FAULTS} == {a: s for a, (_, s) in FAULTS.items()}
    assert (out["ok"], out["missing"], out["bad"]) == (7, 1, 3)
    # retries: 429 x2, 500 once, stall, reset: one each; html, truncated, 500: two each
    assert out["retried"] == 5 + 3 * 2

    assert rows["20"].reason.startswith("not on the CDN: HTTP 404 for library_600x900_2x.jpg")
    assert "library_600x900.jpg" in rows["20"].reason
    # three tries of the first URL, then one of the fallback
    assert "HTML page" in rows["90"].reason and "library_600x900.jpg, 4 tries" in rows["90"].reason
    assert "truncated" in rows["100"].reason
    assert "HTTP 500" in rows["110"].reason
    # the URLs the store API named (this stand-in keeps every app's art at the legacy path)
    assets = f"{server.url}/store_item_assets/steam/apps"
    assert rows["30"].url == f"{assets}/30/library_600x900.jpg?t=1600000000"
    assert rows["10"].url == f"{assets}/10/library_600x900_2x.jpg?t=1600000000"

    # the waits: Retry-After in seconds, then as an HTTP date
    t429 = [s.time for s in cdn.requests_for(server, "40")]
    assert t429[1] - t429[0] >= 1.0
    t_date = [s.time for s in cdn.requests_for(server, "50")]
    assert t_date[1] >= cdn.retry_dates["50"]
    # the stalled request was given up after the timeout (0.5 s), not after the 5 s stall;
    # the retry may also wait out a 429's hold on the host (up to about 2 s)
    t_stall = [s.time for s in cdn.requests_for(server, "70")]
    assert 0.5 <= t_stall[1] - t_stall[0] < 4.0

    for app, (_, status) in FAULTS.items():
        if status != "ok":
            assert rows[app].source is None
            continue
        row = rows[app]
        path = coll / "images" / f"{app}.jpg"
        assert row.source == f"images/{app}.jpg"
        assert path.read_bytes() == images[app]
        assert row.sha256 == hashlib.sha256(images[app]).hexdigest()
        st = path.stat()
        assert (row.size, row.mtime) == (st.st_size, st.st_mtime)
        assert (row.width, row.height, row.mode, row.format) == (120, 180, "RGB", "JPEG")
        assert row.name == f"Game {app}"
    assert _temporary_files(coll) == []

    # a rerun skips the finished games and the missing one, and tries the bad ones again
    assert (again["done_before"], again["skipped_missing"], again["planned"]) == (7, 1, 3)
    redone = {a for a in FAULTS if cdn.hits.get(a, 0) > first_hits.get(a, 0)}
    assert redone == {"90", "100", "110"}


def test_retry_missing_and_force(cli, tmp_path):
    cdn = Cdn({"10": make_jpeg(10), "20": make_jpeg(20)}, {"20": "404"})
    coll = tmp_path / "coll"
    _catalogue(coll, ["10", "20"])
    with FakeServer(cdn) as server:
        _download(cli, coll, server.url)
        cdn.faults.clear()
        assert json.loads(_download(cli, coll, server.url).stdout)["planned"] == 0
        out = json.loads(_download(cli, coll, server.url, "--retry-missing").stdout)
        assert (out["planned"], out["ok"]) == (1, 1)
        hits = dict(cdn.hits)
        out = json.loads(_download(cli, coll, server.url, "--force", "--only", "10").stdout)
    assert (out["planned"], out["ok"]) == (1, 1)
    assert cdn.hits["10"] == hits["10"] + 1 and cdn.hits["20"] == hits["20"]
    assert {r.status for r in _rows(coll).values()} == {"ok"}


def test_a_changed_or_deleted_file_is_downloaded_again(cli, tmp_path):
    cdn = Cdn({a: make_jpeg(int(a)) for a in ("10", "20", "30")})
    coll = tmp_path / "coll"
    _catalogue(coll, ["10", "20", "30", "not-an-app"])
    with FakeServer(cdn) as server:
        first = json.loads(_download(cli, coll, server.url).stdout)
        (coll / "images" / "10.jpg").unlink()
        (coll / "images" / "20.jpg").write_bytes(b"changed")
        out = json.loads(_download(cli, coll, server.url).stdout)
    assert first["not_apps"] == 1 and first["ok"] == 3
    assert (out["planned"], out["ok"], out["done_before"]) == (2, 2, 1)
    assert (coll / "images" / "20.jpg").read_bytes() == cdn.images["20"]


def test_rate_limit_per_host(cli, tmp_path):
    ids = [str(i) for i in range(1, 26)]
    cdn = Cdn({a: make_jpeg(int(a), (30, 45)) for a in ids})
    coll = tmp_path / "coll"
    _catalogue(coll, ids)
    rate = 10.0
    with FakeServer(cdn) as server:
        _download(cli, coll, server.url, "--rate", rate, "--concurrency", "8")
    times = sorted(s.time for s in cdn_requests(server))
    assert len(times) == 25
    # a bucket of `rate` tokens: at most `rate` + `rate` * T requests in any T seconds.
    # The server sees arrivals, not the client's grants: the first requests arrive late
    # by the time it takes to open connections, hence the slack.
    slack = 0.15
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= rate + rate * (times[j] - times[i] + slack), (i, j)
    assert times[-1] - times[0] >= (25 - rate) / rate - slack


def test_resize_keeps_the_ratio(cli, tmp_path):
    banner = REAL_BANNER.read_bytes() if REAL_BANNER.exists() else make_jpeg(1, (600, 900))
    cdn = Cdn({"1227690": banner})
    coll = tmp_path / "coll"
    _catalogue(coll, ["1227690"])
    with FakeServer(cdn) as server:
        _download(cli, coll, server.url, "--resize", "300x300")
    row = _rows(coll)["1227690"]
    with Image.open(coll / "images" / "1227690.jpg") as im:
        assert im.size == (200, 300) == (row.width, row.height)
        assert im.format == "JPEG"
    data = (coll / "images" / "1227690.jpg").read_bytes()
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.size == len(data)


def test_unreachable_cdn_fails_fast_and_leaves_games_pending(cli, tmp_path):
    coll = tmp_path / "coll"
    _catalogue(coll, ["10", "20"])
    url = closed_port_url()
    started = time.monotonic()
    proc = _download(cli, coll, url, check=False)
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"bannermatch: error: cannot reach the Steam CDN at {url}/steam/")
    assert "BANNERMATCH_STEAM_CDN" in lines[0] and "--cdn-url" in lines[0]
    assert {r.status for r in _rows(coll).values()} == {"pending"}


def test_a_second_steam_command_on_one_collection_is_refused(cli, tmp_path):
    from filelock import FileLock

    coll = tmp_path / "coll"
    _catalogue(coll, ["10"])
    with FileLock(coll / ".steam.lock", timeout=0):  # another process's download, running
        proc = _download(cli, coll, "http://127.0.0.1:9", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: another bannermatch steam command is running in {coll}: "
        "wait for it before the download"
    ]
    assert {r.status for r in _rows(coll).values()} == {"pending"}


def test_no_catalogue_is_a_clear_error(cli, tmp_path):
    proc = _download(cli, tmp_path / "none", "http://127.0.0.1:9", check=False)
    assert proc.returncode == 1 and "bannermatch steam catalog" in proc.stderr


def test_downloaded_rows_are_what_index_looks_up(cli, tmp_path):
    """`bannermatch index COLL --out COLL` finds the rows by source, size and mtime."""
    cdn = Cdn({a: make_jpeg(int(a)) for a in ("10", "20")})
    coll = tmp_path / "coll"
    _catalogue(coll, ["10", "20"])
    with FakeServer(cdn) as server:
        _download(cli, coll, server.url)
    c = Collection(coll)
    with c.catalog() as cat:
        by_source = cat.by_sources()
    scanned = scan_input(coll / "images").items
    assert len(scanned) == 2
    for it in scanned:
        row = by_source[c.source_key(it.source)]
        assert row.id == it.stem and (row.size, row.mtime) == (it.size, it.mtime)


def test_fetch_banner(tmp_path):
    images = {"10": make_jpeg(10), "30": make_jpeg(30), "90": make_jpeg(90)}
    cdn = Cdn(images, {"20": "404", "30": "no2x", "90": "html"})
    with FakeServer(cdn) as server:
        api = server.url
        assert fetch_banner(10, server.url, timeout=2, api_url=api) == images["10"]
        assert fetch_banner("30", cdn_url=server.url, api_url=api) == images["30"]
        with pytest.raises(BannerNotFound, match="no library banner for app 20"):
            fetch_banner(20, server.url, api_url=api)
        with pytest.raises(BannermatchError, match="HTML page"):
            fetch_banner(90, server.url, retries=1, api_url=api)
    started = time.monotonic()
    url = closed_port_url()
    with pytest.raises(BannermatchError, match="cannot reach the Steam CDN") as err:
        fetch_banner(10, url, api_url=url)
    assert "BANNERMATCH_STEAM_CDN" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - started < 10


def test_killed_download_resumes_with_every_banner_intact(tmp_path):
    n = 240
    ids = [str(i) for i in range(1000, 1000 + n)]
    images = {a: make_jpeg(int(a), (90, 135)) for a in ids}
    cdn = Cdn(images, latency=0.01)
    coll = tmp_path / "coll"
    _catalogue(coll, ids)
    cmd = [sys.executable, "-m", "bannermatch.cli", "steam", "download", str(coll), "-q"]
    with FakeServer(cdn) as server:
        env = steam_env(BANNERMATCH_STEAM_CDN=server.url, BANNERMATCH_STEAM_API_URL=server.url)
        proc = subprocess.Popen(
            [*cmd, "--concurrency", "4"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(list((coll / "images").glob("*.jpg"))) < n // 4:
            assert proc.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Catalog(coll / "catalog.sqlite") as cat:
            committed = cat.counts().get("ok", 0)
        assert 0 < committed < n
        requests_before = len(cdn_requests(server))
        rerun = subprocess.run(
            [*cmd, "--json"], env=env, capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0, rerun.stderr
        out = json.loads(rerun.stdout)
    assert out["done_before"] >= committed and out["ok"] + out["done_before"] == n
    assert len(cdn_requests(server)) - requests_before == out["planned"] < n
    rows = _rows(coll)
    assert all(r.status == "ok" for r in rows.values())
    for a in ids:
        data = (coll / "images" / f"{a}.jpg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(images[a]).hexdigest()
        assert rows[a].sha256 == hashlib.sha256(data).hexdigest()
        Image.open(coll / "images" / f"{a}.jpg").load()
    assert _temporary_files(coll) == []
    db = sqlite3.connect(coll / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.slow
def test_index_keeps_app_ids_and_names(cli, tmp_path):
    """The real `bannermatch index COLL --out COLL` after a download."""
    ids = ["10", "20", "30"]
    cdn = Cdn({a: make_jpeg(int(a), (200, 300)) for a in ids})
    coll = tmp_path / "coll"
    _catalogue(coll, ids)
    with FakeServer(cdn) as server:
        _download(cli, coll, server.url)
    cli("index", coll, "--out", coll, "-q")
    rows = _rows(coll)
    assert sorted(rows) == ids
    assert all(r.name == f"Game {r.id}" and r.status == "ok" for r in rows.values())
    items = json.loads(next((coll / "models").glob("*/items.json")).read_text())
    assert sorted(items) == ids
