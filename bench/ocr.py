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
  text for reference; ``search_first``/``search_top5``: the same through ``bannermatch
  search``'s ranking (``words.WordSearcher``: the query-coverage floor
  ``words.MIN_QUERY_COVERAGE``, weak banner-text hits and the image signal, names left out);
- with ``--scale 10000,100000,1000000``: the banner-text search over that many synthetic
  texts (the store's OCR words recombined, 1-4 a text): the index's build time and
  memory, and the seconds a title search takes through the candidate index and (up to
  ``--scan-up-to`` texts) by comparing every text, with how often both agree; with
  ``--exact``, also without the caps on texts compared and scored (the exact answer),
  and how often the capped answer's first result is the exact one's.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bannermatch.errors import BannermatchError
from bannermatch.images import load_image
from bannermatch.ocr.engine import OcrEngine, read_banner
from bannermatch.ocr.store import OcrStore
from bannermatch.query import bannertext
from bannermatch.query.bannertext import BannerTextIndex
from bannermatch.query.names import fold
from bannermatch.query.text import TextSearcher
from bannermatch.query.words import MIN_QUERY_COVERAGE, WordSearcher, banner_texts
from bannermatch.store.collection import Collection


def timings(files: list[Path]) -> dict[str, float]:
    engines = {side: OcrEngine(det_side=side) for side in (480, 736)}
    images = [np.asarray(load_image(str(f)).image) for f in files]
    for e in engines.values():  # warm-up: the first call builds onnxruntime's kernels
        e.read(images[0])
    spent = {f"{kind}_{side}": 0.0 for side in engines for kind in ("detect", "full")}
    spent["shipped"] = 0.0  # 736, and 480 again where 736 read under 6 letters
    for im in images:  # interleaved, so that a busy spell of the machine hits all alike
        for side, e in engines.items():
            t0 = time.perf_counter()
            e.detect(im)
            t1 = time.perf_counter()
            e.read(im)
            spent[f"detect_{side}"] += t1 - t0
            spent[f"full_{side}"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        read_banner(im)
        spent["shipped"] += time.perf_counter() - t0
    return {k: round(v / len(images), 4) for k, v in spent.items()}


def _word_searcher(collection: str) -> tuple[WordSearcher, list[str]]:
    """``bannermatch search``'s ranking on the collection, its names left out (the covers'
    names are their file stems, which hold the titles), and the rows' ids."""
    data = Collection(collection).load()
    texts = banner_texts(collection, data)
    return WordSearcher([""] * len(data.ids), texts, TextSearcher(data), data.ids), data.ids


def title_search(store: OcrStore, tsv: str, collection: str) -> dict[str, float | int]:
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
    first = top5 = floor_first = floor_top5 = plain_first = plain_top5 = 0
    t0 = time.perf_counter()
    for title, group in titles.items():
        found = [group_of[ids[m.row]] for m in index.search(title, 5)]
        first += bool(found) and found[0] == group
        top5 += group in found
    seconds = time.perf_counter() - t0
    searcher, row_ids = _word_searcher(collection)
    for title, group in titles.items():
        try:
            found = [group_of.get(row_ids[r.row]) for r in searcher.rank(title, 5).rows]
        except BannermatchError:  # no text holds a word, and no ImageNet class either
            found = []
        floor_first += bool(found) and found[0] == group
        floor_top5 += group in found
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
        "search_first": round(floor_first / n, 4),
        "search_top5": round(floor_top5 / n, 4),
        "search_min_coverage": MIN_QUERY_COVERAGE,
        "plain_wratio_first": round(plain_first / n, 4),
        "plain_wratio_top5": round(plain_top5 / n, 4),
    }


def synthetic_texts(store: OcrStore, n: int, seed: int = 0) -> list[str]:
    """``n`` banner texts of 1-4 words drawn from the words the store's OCR read."""
    words = [w for r in store.results.values() for w in r.text.split()]
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, n)
    picks = iter(rng.integers(0, len(words), int(counts.sum())).tolist())
    return [" ".join(words[next(picks)] for _ in range(c)) for c in counts.tolist()]


def _timed(index: BannerTextIndex, queries: list[str]) -> tuple[dict[str, float], list[list[int]]]:
    walls, cpus, answers, exact = [], [], [], 0
    for q in queries:
        w0, c0 = time.perf_counter(), time.process_time()
        answers.append([m.row for m in index.search(q, 10)])
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        exact += index.last_exact
    w = np.sort(walls)
    return {
        "wall_median_s": round(float(np.median(w)), 4),
        "wall_p90_s": round(float(w[int(0.9 * (len(w) - 1))]), 4),
        "wall_max_s": round(float(w[-1]), 4),
        "cpu_median_s": round(float(np.median(cpus)), 4),
        "cpu_max_s": round(float(np.max(cpus)), 4),
        "exact_share": round(exact / len(queries), 3),
    }, answers


def _uncapped(index: BannerTextIndex, queries: list[str]) -> tuple[dict, list[list[int]]]:
    """The exact answers (no cap on the texts compared or scored), timed."""
    saved = bannertext.MAX_SCORED, bannertext.MAX_COMPARED
    bannertext.MAX_SCORED = bannertext.MAX_COMPARED = 10**12
    try:
        return _timed(index, queries)
    finally:
        bannertext.MAX_SCORED, bannertext.MAX_COMPARED = saved


def scale(store: OcrStore, tsv: str, sizes: list[int], scan_up_to: int, exact: bool) -> list[dict]:
    """The banner-text search over synthetic collections of ``sizes`` texts."""
    with open(tsv, encoding="utf-8") as fh:
        titles = list(dict.fromkeys(r["title"] for r in csv.DictReader(fh, delimiter="\t")))
    queries = titles[::10]  # 51 titles
    out = []
    for n in sizes:
        texts = synthetic_texts(store, n)
        w0, c0 = time.perf_counter(), time.process_time()
        index = BannerTextIndex(texts, grams=True)
        row: dict = {"texts": n, "queries": len(queries)}
        row["build_wall_s"] = round(time.perf_counter() - w0, 2)
        row["build_cpu_s"] = round(time.process_time() - c0, 2)
        row["letter_index_mb"] = round(index.compact.nbytes / 1e6, 1)  # type: ignore[attr-defined]
        strings = index._spaced + index._compact + index.initials.strings
        row["strings_mb"] = round(sum(map(sys.getsizeof, strings)) / 1e6, 1)
        row["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)
        row["index"], answers = _timed(index, queries)
        if n <= scan_up_to:
            scan = BannerTextIndex(texts, grams=False)
            row["scan"], scanned = _timed(scan, queries)
            row["same_top10"] = sum(a == b for a, b in zip(answers, scanned, strict=True))
        if exact:
            row["uncapped"], truth = _uncapped(index, queries)
            row["agree_first"] = sum(a[:1] == b[:1] for a, b in zip(answers, truth, strict=True))
            found = sum(len(set(a) & set(b)) for a, b in zip(answers, truth, strict=True))
            row["recall_of_exact_top10"] = round(found / max(1, sum(map(len, truth))), 3)
        out.append(row)
        del index, texts
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("collection")
    ap.add_argument("covers_tsv")
    ap.add_argument("--sample", type=int, default=40, help="covers timed (default: 40; 0: none)")
    ap.add_argument("--scale", default="", help="synthetic sizes searched, e.g. 10000,100000")
    ap.add_argument("--scan-up-to", type=int, default=100_000, help="full scans up to this size")
    ap.add_argument("--no-titles", action="store_true", help="skip the title search")
    ap.add_argument("--exact", action="store_true", help="also search with no caps, to compare")
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
        "title_search": None
        if args.no_titles
        else title_search(store, args.covers_tsv, args.collection),
        "seconds_per_image": timings(files[: args.sample]) if args.sample else None,
    }
    if args.scale:
        sizes = [int(v) for v in args.scale.split(",")]
        out["scale"] = scale(store, args.covers_tsv, sizes, args.scan_up_to, args.exact)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
