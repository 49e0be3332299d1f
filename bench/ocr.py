"""OCR cost and banner-text title search on the covers.

    python bench/ocr.py COLLECTION /work/shared/data/covers/covers.tsv [--sample 40]

COLLECTION: the covers indexed with ``index --ocr`` (its ``ocr/`` store is what is
searched). Prints one JSON object:

- ``seconds_per_image``: one engine call per image, one onnxruntime thread, for
  detection only and for the full reading (detection + recognition), at the detector
  sizes 480 and 736, measured side by side (interleaved image by image) on ``--sample``
  covers: the machine is shared, so compare ratios;
- ``bytes_per_item``: the store's size per item;
- ``title_search``: each distinct title of covers.tsv searched with the banner text alone
  (the covers' names are their file stems, which hold the titles, so names would give
  the answer away): the share of titles whose first result, and whose top 5, holds a
  banner of that game (its ``group``), beside a plain rapidfuzz WRatio of title against
  text for reference.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from bannermatch.images import load_image
from bannermatch.names import fold
from bannermatch.ocr.engine import OcrEngine
from bannermatch.ocr.search import BannerTextIndex
from bannermatch.ocr.store import OcrStore


def timings(files: list[Path]) -> dict[str, float]:
    engines = {side: OcrEngine(det_side=side) for side in (480, 736)}
    images = [np.asarray(load_image(str(f)).image) for f in files]
    for e in engines.values():  # warm-up: the first call builds onnxruntime's kernels
        e.read(images[0])
    spent = {f"{kind}_{side}": 0.0 for side in engines for kind in ("detect", "full")}
    for im in images:  # interleaved, so that a busy spell of the machine hits all alike
        for side, e in engines.items():
            t0 = time.perf_counter()
            e.detect(im)
            t1 = time.perf_counter()
            e.read(im)
            spent[f"detect_{side}"] += t1 - t0
            spent[f"full_{side}"] += time.perf_counter() - t1
    return {k: round(v / len(images), 4) for k, v in spent.items()}


def title_search(store: OcrStore, tsv: str) -> dict[str, float | int]:
    with open(tsv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    group_of = {r["file"].rsplit(".", 1)[0]: r["group"] for r in rows}
    titles: dict[str, str] = {}
    for r in rows:
        titles.setdefault(r["title"], r["group"])
    ids = sorted(i for i in store.results if i in group_of)
    texts = [store.results[i].text for i in ids]
    index = BannerTextIndex(texts)
    from rapidfuzz import fuzz, process

    folded = [fold(t) for t in texts]
    first = top5 = plain_first = plain_top5 = 0
    t0 = time.perf_counter()
    for title, group in titles.items():
        found = [group_of[ids[m.row]] for m in index.search(title, 5)]
        first += bool(found) and found[0] == group
        top5 += group in found
    seconds = time.perf_counter() - t0
    for title, group in titles.items():
        plain = process.extract(fold(title), folded, scorer=fuzz.WRatio, processor=None, limit=5)
        found = [group_of[ids[i]] for _, _, i in plain]
        plain_first += found[0] == group
        plain_top5 += group in found
    n = len(titles)
    return {
        "titles": n,
        "items": len(ids),
        "first": round(first / n, 4),
        "top5": round(top5 / n, 4),
        "ms_per_query": round(1000 * seconds / n, 2),
        "plain_wratio_first": round(plain_first / n, 4),
        "plain_wratio_top5": round(plain_top5 / n, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("collection")
    ap.add_argument("covers_tsv")
    ap.add_argument("--sample", type=int, default=40, help="covers timed (default: 40; 0: none)")
    args = ap.parse_args()
    store = OcrStore.open(args.collection)
    if not store.results:
        raise SystemExit(f"{args.collection} has no banner text: index it with --ocr")
    images = Path(args.covers_tsv).parent / "images"
    files = sorted(images.iterdir())[:: max(1, len(list(images.iterdir())) // max(1, args.sample))]
    out = {
        "collection": args.collection,
        "stored_with": store.manifest,
        "bytes_per_item": round(store.bytes_per_item(), 1),
        "with_text": sum(bool(r.lines) for r in store.results.values()),
        "title_search": title_search(store, args.covers_tsv),
        "seconds_per_image": timings(files[: args.sample]) if args.sample else None,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
