"""The page's map with many points in headless Chromium: load time and frame rate.

    python bench/map_page.py --n 100000 [--root /tmp/bm-map-100k]

Builds (once) a synthetic collection of ``n`` items (bench/api.py's: names, random
unit vectors, ``match``), stores a clustered synthetic map for it (the page's cost
does not depend on where the points are; UMAP's cost is bench/bench_map.py's), serves
it with ``bannermatch serve``, and opens ``/?view=map`` in Debian's Chromium:

- ``load_s``: from navigation to the first frame of dots (map.bin fetched and drawn);
- ``labels_s``: until every name and id has arrived (hover and click work);
- ``fps``: frames a second while zooming in, a wheel step every animation frame;
- ``draw_ms``: the median and 95th percentile time of one frame's drawing.

Prints one JSON line. Figures: docs/performance.md ("Map of the collection").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from api import free_port, ready_collection, start_server

CHROMIUM = "/usr/bin/chromium"


def synthetic_map(root: Path, seed: int = 0) -> None:
    from bannermatch.present.maps import store_map, stored_map
    from bannermatch.store.collection import Collection

    data = Collection(root).load()
    if stored_map(data) is not None:
        return
    rng = np.random.default_rng(seed)
    n = len(data.ids)
    centres = rng.random((300, 2))
    points = centres[rng.integers(0, 300, n)] + 0.02 * rng.standard_normal((n, 2))
    store_map(data, np.clip(points, 0, 1).astype(np.float32), "synthetic")


def measure(url: str, frames: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        t0 = time.perf_counter()
        page.goto(url + "/?view=map")
        page.wait_for_selector("#map[data-scale]")
        load_s = time.perf_counter() - t0
        page.wait_for_selector("#map[data-labels=loaded]", state="attached")
        labels_s = time.perf_counter() - t0
        result = page.evaluate(
            """(frames) => new Promise((done) => {
              const map = bannermatchMap, box = document.getElementById('map')
                .getBoundingClientRect();
              const start = map.stats.frameMs.length, first = performance.now();
              let left = frames;
              function step() {
                map.zoomAt(box.left + box.width / 2, box.top + box.height / 2, 1.03);
                if (--left > 0) requestAnimationFrame(step);
                else requestAnimationFrame(() => done({
                  seconds: (performance.now() - first) / 1000,
                  drawn: map.stats.frameMs.slice(start)}));
              }
              requestAnimationFrame(step);
            })""",
            frames,
        )
        browser.close()
    draw = np.asarray(result["drawn"])
    return {
        "load_s": round(load_s, 2),
        "labels_s": round(labels_s, 2),
        "fps": round(len(draw) / result["seconds"], 1),
        "draw_ms_median": round(float(np.median(draw)), 1),
        "draw_ms_p95": round(float(np.percentile(draw, 95)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    root = args.root or Path(f"/tmp/bm-map-{args.n}")
    ready_collection(root, args.n, 32, 10, 0)
    synthetic_map(root)
    port = free_port()
    proc, _, _ = start_server(root, port)
    try:
        figures = measure(f"http://127.0.0.1:{port}", args.frames)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps({"n": args.n, **figures}))


if __name__ == "__main__":
    main()
