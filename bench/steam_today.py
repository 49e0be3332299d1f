"""Banners from today's Steam: right / stale / wrong, store API calls, banners per second.

    .venv/bin/python bench/steam_today.py                      # 1,000 apps, 50 ms a request
    .venv/bin/python bench/steam_today.py -n 2000 --before ../base/src

Serves the test suite's stand-in of today's Steam (``tests/support/steam.SteamToday``:
the store API, art at hashed paths, legacy paths that 404 or serve the previous art,
apps without a banner, apps the store does not know) with ``--latency`` added to every
request, and runs ``bannermatch steam download`` on a catalogue of all its apps. Then
the art of 10 % of the apps changes and a rerun (art checks aged past
``--refresh-after``) must bring exactly those up to date. ``--before SRC`` runs the
same with another bannermatch source tree (e.g. the release before the store API)
side by side. An app is *right* when it ends ``ok`` with its current art (or
``missing`` when it has no banner), *stale* when its file is its previous art, and
*wrong* otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.steam import FakeServer, SteamToday, make_jpeg  # noqa: E402


def bannermatch(src: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``bannermatch ARGS`` from the source tree ``src``, every Steam service at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANNERMATCH_STEAM")}
    env |= {"PYTHONPATH": str(src), "BANNERMATCH_STEAM_CDN": url}
    env |= {"BANNERMATCH_STEAM_API_URL": url}
    cmd = [sys.executable, "-m", "bannermatch.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def catalogue(src: Path, coll: Path, ids: list[str]) -> None:
    """A catalogue of nameless apps, written by ``src``'s own catalogue code."""
    listing = coll.parent / f"{coll.name}-ids.json"
    listing.write_text(json.dumps([int(a) for a in ids]))
    proc = bannermatch(src, "", "steam", "catalog", str(coll), "--source", str(listing),
                       "--no-top", "-q")  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{src}: {proc.stderr.strip()}")


def download(src: Path, coll: Path, url: str, concurrency: int) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = bannermatch(
        src, url, "steam", "download", str(coll), "--json", "-q",
        "--concurrency", str(concurrency), "--rate", "0", "--retries", "2",
    )  # fmt: skip
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{src}: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def outcome(steam: SteamToday, coll: Path) -> tuple[int, int, int]:
    right = stale = wrong = 0
    db = sqlite3.connect(coll / "catalog.sqlite")
    rows = {r[0]: r[1:] for r in db.execute("SELECT id, status, source FROM items")}
    db.close()
    for appid, app in steam.apps.items():
        status, source = rows[appid]
        data = (coll / source).read_bytes() if status == "ok" and source else b""
        if not app.art:
            right += status == "missing"
            wrong += status != "missing"
        else:
            right += data == app.art
            stale += data != app.art and bool(data) and data == app.old_art
            wrong += data != app.art and not (data and data == app.old_art)
    return right, stale, wrong


def age(coll: Path, days: float) -> None:
    db = sqlite3.connect(coll / "catalog.sqlite")
    try:
        with db:
            db.execute("UPDATE steam_art SET checked = checked - ?", (days * 86400,))
    except sqlite3.OperationalError:
        pass  # a catalogue without store checks (the release before the store API)
    db.close()


def run(name: str, src: Path, n: int, latency: float, concurrency: int, work: Path) -> None:
    steam = SteamToday.mixed(n // 5)
    steam.latency = latency
    coll = work / name
    catalogue(src, coll, list(steam.apps))
    with FakeServer(steam) as server:
        wall, out = download(src, coll, server.url, concurrency)
        first = outcome(steam, coll)
        with_art = [a for a, app in steam.apps.items() if app.art]
        changed = with_art[:: max(1, len(with_art) // max(1, n // 10))][: n // 10]
        for i, appid in enumerate(changed):
            steam.update_art(appid, make_jpeg(900_000 + i))
        age(coll, 8)
        wall2, out2 = download(src, coll, server.url, concurrency)
        second = outcome(steam, coll)
    finished = out["ok"] + out["missing"] + out["bad"]
    calls = out.get("api_calls", 0)
    print(
        f"{name:>7}: first run  right/stale/wrong {first[0]}/{first[1]}/{first[2]} of {n}; "
        f"{calls} store API calls ({1000 * calls / finished:.0f} per 1,000 apps asked); "
        f"{finished / wall:.0f} apps/s, {out['ok'] / wall:.0f} banners/s ({wall:.1f} s)"
    )
    print(
        f"{'':>7}  after {len(changed)} art changes, rerun: right/stale/wrong "
        f"{second[0]}/{second[1]}/{second[2]}; downloaded {out2['ok']} in {wall2:.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="apps (a fifth of each kind)")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--before", type=Path, help="another bannermatch src tree to compare")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("before", args.before.resolve())] if args.before else []
        for name, src in [*trees, ("after", ROOT / "src")]:
            run(name, src, args.n, args.latency, args.concurrency, Path(tmp))


if __name__ == "__main__":
    main()
