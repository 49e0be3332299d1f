"""What reading an upload's banner text costs: ``POST /api/search/image`` with and
without ``text_weight``, side by side.

    python bench/upload_text.py COLLECTION IMAGES... [--json]

COLLECTION: indexed with ``index --ocr`` (its text is what the upload's text is compared
with). Each image is uploaded twice in turn, through the app in this process (FastAPI's
TestClient: no sockets), once with ``text_weight=0`` (decode, embed, scan) and once with
``text_weight=0.5`` (the same, plus OCR of the upload and the text similarity); the
first request of each kind is timed apart, since it loads the model or the OCR engine.
Wall and CPU seconds (the process's, all threads) per request; the difference is the
on-the-fly OCR. The machine may be shared: compare the two kinds, measured interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bannermatch.present.server import ServedCollection, create_app


def _post(client: TestClient, image: Path, weight: float) -> tuple[float, float, dict[str, Any]]:
    t0, c0 = time.perf_counter(), time.process_time()
    with open(image, "rb") as fh:
        files = {"file": (image.name, fh, "image/jpeg")}
        response = client.post(f"/api/search/image?n=10&text_weight={weight}", files=files)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    response.raise_for_status()
    return wall, cpu, response.json()


def measure(collection: Path, images: list[Path]) -> dict[str, Any]:
    client = TestClient(create_app(ServedCollection.open(collection)))
    first = {w: _post(client, images[0], w)[:2] for w in (0.0, 0.5)}  # model, then OCR loads
    runs: dict[float, list[tuple[float, float]]] = {0.0: [], 0.5: []}
    read = 0
    for image in images:
        for weight in (0.0, 0.5):
            wall, cpu, body = _post(client, image, weight)
            runs[weight].append((wall, cpu))
            read += bool(weight and body["query"]["banner_text"])

    def summary(values: list[tuple[float, float]]) -> dict[str, float]:
        return {
            "wall_s": round(statistics.median(v[0] for v in values), 3),
            "cpu_s": round(statistics.median(v[1] for v in values), 3),
        }

    plain, weighted = summary(runs[0.0]), summary(runs[0.5])
    return {
        "images": len(images),
        "first_request": {f"text_weight={w:g}": [round(v, 3) for v in first[w]] for w in first},
        "text_weight=0 (median)": plain,
        "text_weight=0.5 (median)": weighted,
        "ocr_extra_wall_s": round(weighted["wall_s"] - plain["wall_s"], 3),
        "ocr_extra_cpu_s": round(weighted["cpu_s"] - plain["cpu_s"], 3),
        "uploads_with_text_read": read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", type=Path)
    parser.add_argument("images", type=Path, nargs="+")
    args = parser.parse_args()
    print(json.dumps(measure(args.collection, args.images), indent=1))


if __name__ == "__main__":
    main()
