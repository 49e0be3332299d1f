"""Banner download throughput: bannermatch's downloader against img2dataset.

    .venv/bin/python bench/download.py                 # 2,000 banners, 50 ms per request
    .venv/bin/python bench/download.py -n 500 --concurrency 16 64

A local HTTP/1.1 server (asyncio, in its own process) serves distinct 300x450
JPEG banners under Steam's URL layout and adds ``--latency`` to every request,
like a far-away CDN; it answers the store API's GetItems too (bannermatch asks it
where each app's art is, 100 apps a call). Both downloaders fetch the same URLs
from it with the same number of requests in flight (img2dataset: one process, ``thread_count`` =
concurrency, no resizing or re-encoding, no retries), and the figures are
banners per second of wall-clock time, process start included, for the whole
command. bannermatch also checks that every body decodes, writes every file
atomically with fsync and commits catalogue rows; img2dataset writes plain files.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))


# the test CDN ----------------------------------------------------------------------


def make_banners(n: int, folder: Path) -> dict[str, str]:
    """``n`` distinct 300x450 JPEGs (smooth art plus grain, ~25 KB like real banners)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:450, 0:300].astype(np.float32)
    arts = []
    for _ in range(16):
        a, b, c = rng.uniform(0.005, 0.05, 3)
        art = np.stack(
            [
                128 + 80 * np.sin(a * xx + b * yy),
                128 + 80 * np.cos(b * xx - c * yy),
                128 + 80 * np.sin(c * (xx + yy)),
            ],
            axis=-1,
        )
        arts.append(np.clip(art + rng.normal(0, 6, art.shape), 0, 255).astype(np.uint8))
    hashes = {}
    for i in range(n):
        appid = str(10 + 10 * i)
        img = arts[i % len(arts)].copy()
        img[..., i % 3] //= 1 + (i // len(arts)) % 3  # a tint
        y, x = rng.integers(0, 400), rng.integers(0, 250)
        img[y : y + 50, x : x + 50] = rng.integers(0, 255, (50, 50, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(img, "RGB").save(out, "JPEG", quality=88)
        data = out.getvalue()
        (folder / f"{appid}.jpg").write_bytes(data)
        hashes[appid] = hashlib.sha256(data).hexdigest()
    return hashes


def _store_items(query: str) -> bytes:
    """The store API's GetItems reply: every app's art at the legacy path."""
    request = json.loads(parse_qs(query)["input_json"][0])
    items = [
        {
            "appid": e["appid"],
            "success": 1,
            "name": f"Game {e['appid']}",
            "assets": {
                "asset_url_format": f"steam/apps/{e['appid']}/${{FILENAME}}?t=1",
                "library_capsule": "library_600x900.jpg",
                "library_capsule_2x": "library_600x900_2x.jpg",
            },
        }
        for e in request["ids"]
    ]
    return json.dumps({"response": {"store_items": items}}).encode()


def _serve(folder: str, latency: float, port_queue: mp.Queue) -> None:
    images = {p.stem: p.read_bytes() for p in Path(folder).glob("*.jpg")}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                _, target, version = line.decode("latin-1").split()
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip().lower()
                await asyncio.sleep(latency)
                path, _, query = target.partition("?")
                if path.rstrip("/") == "/IStoreBrowseService/GetItems/v1":
                    body, kind = _store_items(query), "application/json"
                else:
                    parts = path.removeprefix("/store_item_assets").strip("/").split("/")
                    body, kind = images.get(parts[2]) if len(parts) == 4 else None, "image/jpeg"
                keep = version == "HTTP/1.1" and headers.get("connection") != "close"
                status = "200 OK" if body else "404 Not Found"
                body = body or b"not found"
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                )
                writer.write(head.encode() + body)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# the downloaders ---------------------------------------------------------------------


def run_bannermatch(url: str, hashes: dict[str, str], work: Path, concurrency: int) -> dict:
    from bannermatch.store.catalog import Catalog, Item

    coll = work / "bm"
    with Catalog(coll / "catalog.sqlite") as cat:
        cat.upsert(Item(a, f"Game {a}") for a in hashes)
    cmd = [
        sys.executable, "-m", "bannermatch.cli", "steam", "download", str(coll),
        "--cdn-url", url, "--steam-api-url", url, "--concurrency", str(concurrency), "--rate", "0",
        "--retries", "0", "--timeout", "10", "--json", "-q",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()}
    out = json.loads(proc.stdout)
    good = sum(
        1
        for a, h in hashes.items()
        if (coll / "images" / f"{a}.jpg").is_file()
        and hashlib.sha256((coll / "images" / f"{a}.jpg").read_bytes()).hexdigest() == h
    )
    return {"wall": wall, "ok": out["ok"], "intact": good, "loop": out["seconds"]}


def run_img2dataset(url: str, hashes: dict[str, str], work: Path, concurrency: int) -> dict:
    exe = BIN / "img2dataset"
    if not exe.exists():
        return {"error": f"img2dataset is not installed in {BIN.parent} (pip install img2dataset)"}
    urls = work / "urls.txt"
    urls.write_text(
        "".join(f"{url}/steam/apps/{a}/library_600x900_2x.jpg\n" for a in hashes), "utf-8"
    )
    out_dir = work / "i2d"
    cmd = [
        str(exe), "--url_list", str(urls), "--input_format", "txt",
        "--output_folder", str(out_dir), "--output_format", "files",
        "--processes_count", "1", "--thread_count", str(concurrency),
        "--resize_mode", "no", "--skip_reencode", "True", "--timeout", "10",
        "--retries", "0", "--number_sample_per_shard", str(len(hashes) + 1),
        "--disallowed_header_directives", "[]", "--enable_wandb", "False",
    ]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"img2dataset exited {proc.returncode}: {tail}"}
    files = list(out_dir.glob("*/*.jpg"))
    got = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return {"wall": wall, "ok": len(files), "intact": len(got & set(hashes.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=2000, help="banners (default: 2000)")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16], help="requests in flight")
    ap.add_argument("--skip-img2dataset", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bm-bench-"))
    try:
        t0 = time.perf_counter()
        hashes = make_banners(args.n, work)
        size = sum(p.stat().st_size for p in work.glob("*.jpg")) / args.n
        print(
            f"{args.n} banners of 300x450 (mean {size / 1e3:.1f} KB) made in "
            f"{time.perf_counter() - t0:.1f}s; server latency {args.latency * 1e3:.0f} ms/request"
        )
        ctx = mp.get_context("spawn")
        ports: mp.Queue = ctx.Queue()
        server = ctx.Process(target=_serve, args=(str(work), args.latency, ports), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        try:
            rows = []
            for c in args.concurrency:
                run_dir = work / f"c{c}"
                run_dir.mkdir()
                bm = run_bannermatch(url, hashes, run_dir, c)
                i2d = (
                    {"error": "skipped (--skip-img2dataset)"}
                    if args.skip_img2dataset
                    else run_img2dataset(url, hashes, run_dir, c)
                )
                rows.append((c, bm, i2d))
                shutil.rmtree(run_dir, ignore_errors=True)
        finally:
            server.terminate()
            server.join()
        print(f"ideal at this latency: {1 / args.latency:.0f} banners/s per request in flight")
        for c, bm, i2d in rows:
            print(f"\nconcurrency {c}:")
            for name, r in (("bannermatch", bm), ("img2dataset", i2d)):
                if "error" in r:
                    print(f"  {name:<12} not measured: {r['error']}")
                    continue
                extra = f", download loop {args.n / r['loop']:.1f}/s" if "loop" in r else ""
                print(
                    f"  {name:<12} {args.n / r['wall']:7.1f} banners/s  ({r['wall']:.2f}s wall, "
                    f"{r['ok']} ok, {r['intact']} byte-identical{extra})"
                )
            if "error" not in bm and "error" not in i2d:
                print(f"  ratio        {i2d['wall'] / bm['wall']:.2f}x (bannermatch / img2dataset)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
