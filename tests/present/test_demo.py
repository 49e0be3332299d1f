"""`bannermatch demo`: offline on the sample photos, on Steam through local servers, serving.

The offline demo is built once for the module (``offline_demo``): the test of its output
reads that run, and the serving test runs ``demo --offline`` again on a copy of it, which
finds the collection and its map up to date (a fresh build is what the first run checks;
the second checks ``--offline`` and the serving that ends the demo).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bannermatch.acquire.steam.endpoints import CURATED_GAMES
from support.cli import run_cli
from support.steam import Cdn, FakeServer, SteamSpy, closed_port_url, steam_env


@pytest.fixture(scope="module")
def offline_demo(
    tmp_path_factory: pytest.TempPathFactory, skimage_dir: Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``demo --no-serve --json`` with Steam unreachable, in a fresh folder: the folder and
    the finished process."""
    out = tmp_path_factory.mktemp("demo")
    env = steam_env(BANNERMATCH_STEAMSPY_URL=closed_port_url())
    return out, run_cli("demo", "--out", out, "--no-serve", "--json", "-q", env=env)


def test_demo_without_steam_says_so_in_one_line_and_runs_offline(offline_demo):
    tmp_path, proc = offline_demo
    notes = [line for line in proc.stderr.splitlines() if "Steam is not reachable" in line]
    assert len(notes) == 1 and "BANNERMATCH_STEAMSPY_URL" in notes[0]
    assert not (tmp_path / "steam").exists()
    out = json.loads(proc.stdout)
    assert out["source"] == "sample" and "Steam is not reachable" in out["note"]
    assert out["items"] == 3 * (out["variants"] // 2) and out["variants"] >= 40
    # each altered copy (mirrored+cropped, or shrunk+darker+recompressed) finds its photo
    assert out["variants_found"] == out["variants"]
    assert Path(out["report"]).is_file()
    chelsea = next(c for c in out["showcase"] if c["query"] == "chelsea")
    assert {h["id"] for h in chelsea["results"][:2]} == {"chelsea~mirror", "chelsea~small"}


def test_steam_demo_on_local_steamspy_and_cdn(tmp_path, cli, covers_dir):
    apps: dict[str, dict] = {}
    banners: dict[str, bytes] = {}
    with open(covers_dir / "covers.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            appid = row["steam_appids"]
            wanted = len(apps) < 60 or appid in CURATED_GAMES
            if appid.isdigit() and appid not in apps and wanted:
                apps[appid] = {"name": row["title"]}
                banners[appid] = (covers_dir / "images" / row["file"]).read_bytes()
    assert "620" in apps  # Portal 2, a curated game, is in the showcase
    spy = SteamSpy(apps, top=list(apps)[:10])
    with FakeServer(spy) as spy_server, FakeServer(Cdn(banners)) as cdn:
        env = steam_env(
            BANNERMATCH_STEAMSPY_URL=spy_server.url,
            BANNERMATCH_STEAM_CDN=cdn.url,
            BANNERMATCH_STEAM_API_URL=cdn.url,
        )
        proc = cli("demo", "--out", tmp_path, "--no-serve", "--json", "-q", env=env)
    out = json.loads(proc.stdout)
    assert out["source"] == "steam" and out["note"] is None
    assert out["items"] == len(apps)
    assert "620" in [c["query"] for c in out["showcase"]]
    portal = next(c for c in out["showcase"] if c["query"] == "620")
    assert portal["name"] == "Portal 2" and len(portal["results"]) == 5
    html = Path(out["report"]).read_text("utf-8")
    assert "https://store.steampowered.com/app/620/" in html


def test_demo_ends_by_serving_the_collection(tmp_path, offline_demo):
    """``demo --offline`` on a copy of the module's demo folder: no Steam attempt, the
    summary, then the collection served."""
    shutil.copytree(offline_demo[0], tmp_path, dirs_exist_ok=True)
    port = int(closed_port_url().rsplit(":", 1)[1])
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bannermatch.cli",
            "demo",
            "--out",
            str(tmp_path),
            "--offline",
            "-q",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo never started serving")
        assert info["count"] == len(list((tmp_path / "sample" / "photos").iterdir()))
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "altered copies that found their own photo" in out  # the summary, for people
    assert "Steam is not reachable" not in err  # --offline: no attempt, no note
    assert f"serving http://127.0.0.1:{port}/" in err  # said even with -q
