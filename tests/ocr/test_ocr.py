"""Banner text: OCR of generated images (known text, no text, a bad file), the store's
resume, and the one-line error without the 'ocr' extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip(
    "rapidocr_onnxruntime",
    reason="the 'ocr' extra is not installed (pip install --no-deps rapidocr-onnxruntime; "
    "see docs/ocr.md)",
)

from bannermatch.ocr import load_ocr
from bannermatch.ocr.engine import (
    DET_SIDE,
    SECOND_READ_BELOW,
    SECOND_SIDE,
    OcrEngine,
    OcrLine,
    OcrResult,
    letters,
    merge_reads,
    read_banner,
    thread_engine,
)
from bannermatch.ocr.read import read_collection
from bannermatch.ocr.store import OcrStore
from support.cli import env_without_ocr


def banner(text: str, seed: int, size: tuple[int, int] = (342, 482)) -> Image.Image:
    """A 2:3 banner: a smooth colour gradient (no strokes a detector could take for text)
    with ``text`` in large white letters near the top, one line per ``|``."""
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(20, 110, 3), rng.integers(20, 110, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    im = Image.fromarray(np.broadcast_to(a + (b - a) * t, (h, w, 3)).astype(np.uint8))
    if text:
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=44)
        for n, line in enumerate(text.split("|")):
            draw.text((24, 40 + 60 * n), line, fill=(250, 250, 250), font=font)
    return im


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


def test_reads_known_text_with_boxes(engine: OcrEngine) -> None:
    result = engine.read(np.asarray(banner("HOLLOW|KNIGHT", 1)))
    assert [line.text.upper() for line in result.lines] == ["HOLLOW", "KNIGHT"]
    assert result.text.upper() == "HOLLOW KNIGHT"
    first, second = result.lines
    assert all(0.5 <= line.confidence <= 1 for line in result.lines)
    left, top, right, bottom = first.bbox
    # drawn at x=24 of 342 and y=40 of 482, about 44 px high
    assert 0.03 < left < 0.12 and 0.05 < top < 0.12 and bottom < second.bbox[1] + 0.02
    assert right > left + 0.3 and bottom - top < 0.2
    assert engine.detect(np.asarray(banner("HOLLOW|KNIGHT", 1))) == [
        line.box for line in result.lines
    ]


def test_image_without_text_reads_nothing(engine: OcrEngine) -> None:
    result = engine.read(np.asarray(banner("", 2)))
    assert result.lines == () and result.text == ""
    grey = np.full((300, 200), 128, np.uint8)  # grey, tiny, flat: still no text and no error
    assert engine.read(grey).lines == ()


def test_second_read_where_the_first_found_little() -> None:
    little = np.asarray(banner("AB", 5))
    first, second = (thread_engine(side).read(little) for side in (DET_SIDE, SECOND_SIDE))
    assert letters(first) < SECOND_READ_BELOW
    assert read_banner(little) == merge_reads(first, second)
    enough = np.asarray(banner("HOLLOW|KNIGHT", 1))
    assert read_banner(enough) == thread_engine(DET_SIDE).read(enough)  # one read only


def test_merging_reads_keeps_new_lines_only() -> None:
    box = (0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0)
    a = OcrResult((OcrLine("PLAGUE", 0.9, box), OcrLine("TALE", 0.8, box)))
    b = OcrResult((OcrLine("plague.", 0.7, box), OcrLine("INNOCENCE", 0.9, box)))
    assert merge_reads(a, b).text == "PLAGUE TALE INNOCENCE"
    assert merge_reads(OcrResult(), b) == b and letters(b) == 15


def _folder(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    banner("CELESTE", 3).save(src / "celeste.png")
    banner("DEAD|CELLS", 4).save(src / "dead-cells.jpg", quality=92)
    banner("", 5).save(src / "plain.png")
    banner("BROKEN", 6).save(src / "later-broken.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return src


def test_index_ocr_stores_text_resumes_and_reports_bad(tmp_path: Path, cli_here) -> None:
    src = _folder(tmp_path)
    coll = tmp_path / "c"
    proc = cli_here("index", src, "--out", coll, "-q", "--json")
    # an image that was fine when indexed but is unreadable when its text is read
    (src / "later-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    run = read_collection(coll, progress=False)
    assert (run.read, run.with_text, run.kept, list(run.bad)) == (3, 2, 0, ["later-broken"])
    texts = {i: r.text.upper() for i, r in load_ocr(coll).items()}
    assert texts == {"celeste": "CELESTE", "dead-cells": "DEAD CELLS", "plain": ""}
    store = OcrStore.open(coll)
    assert set(store.bad) == {"later-broken"} and store.bad["later-broken"]
    assert "broken" not in store.bad  # never catalogued as an image: index reported it
    assert json.loads(proc.stdout)["bad"][0]["id"] == "broken"
    lines = [json.loads(x) for p in store.parts for x in p.read_text().splitlines()]
    assert {"id", "sha256", "bad"} == set(next(x for x in lines if x["id"] == "later-broken"))

    # a rerun reads nothing new (the broken file is now catalogued as bad); a changed
    # image is read again
    again = cli_here("index", src, "--out", coll, "--ocr")
    assert "read the text of 0 image(s)" in again.stderr and "3 up to date" in again.stderr
    banner("CELESTE|FAREWELL", 3).save(src / "celeste.png")
    cli_here("index", src, "--out", coll, "--ocr", "-q")
    assert load_ocr(coll)["celeste"].text.upper() == "CELESTE FAREWELL"


def test_without_the_extra_one_line(tmp_path: Path, cli) -> None:
    """A Python without rapidocr: `index --ocr` says how to install it, before embedding."""
    src = tmp_path / "src"
    src.mkdir()
    banner("X", 1).save(src / "x.png")
    env = env_without_ocr(tmp_path / "block")
    proc = cli("index", src, "--out", tmp_path / "c", "--ocr", check=False, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "OCR needs the 'ocr' extra: pip install" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "c").exists()


def test_search_by_run_together_banner_text(tmp_path: Path, cli_here) -> None:
    """OCR runs the words of a title together; the search still finds it, in any order,
    and says it was the banner text; names fill in from the banners when asked."""
    src = tmp_path / "src"
    src.mkdir()
    for n, (stem, text) in enumerate(
        [("b1", "APLAGUETALE|INNOCENCE"), ("b2", "PLAGUE INC"), ("b3", "TALES OF|ARISE"),
         ("b4", "")]
    ):  # fmt: skip
        banner(text, 10 + n).save(src / f"{stem}.png")
    coll = tmp_path / "c"
    cli_here("index", src, "--out", coll, "--ocr", "-q")
    assert "APLAGUETALE" in load_ocr(coll)["b1"].text.upper().replace(" ", "")
    for query in ("plague tale", "tale plague", "A Plague Tale: Innocence", "plage tale"):
        out = json.loads(cli_here("search", coll, query, "-k", "2", "--json").stdout)
        first = out["results"][0]
        assert first["id"] == "b1", (query, out["results"])
        assert first["matched"][0] == "banner text" and first["signals"]["banner text"] > 50
        assert first["banner_text"].upper().replace(" ", "") == "APLAGUETALEINNOCENCE"
        assert out["signals"] == ["banner text", "name", "image"]

    # names: the stems b1..b4 are no names; the banner's title is
    out = json.loads(
        cli_here("index", src, "--out", coll, "--names-from-ocr", "-q", "--json").stdout
    )
    assert out["ocr"]["kept"] == 4 and set(out["ocr"]["named"]) == {"b1", "b2", "b3"}
    from bannermatch.store.collection import Collection

    with Collection(coll).catalog() as cat:
        names = {i.id: i.name for i in cat.items()}
    assert names["b1"].upper() == "APLAGUETALE INNOCENCE"  # two lines of one size
    assert names["b4"] == "b4"  # no text: the name stays
    out = json.loads(cli_here("search", coll, "tales arise", "--json").stdout)
    assert out["results"][0]["id"] == "b3"


def test_banner_text_in_the_api(tmp_path: Path) -> None:
    """/api/search/text finds a banner by its run-together words and says how; items
    carry their banner text; a word no signal has is a 422, not a crash."""
    from fastapi.testclient import TestClient

    from bannermatch.embed.index import index
    from bannermatch.present.server.app import create_app

    src = tmp_path / "src"
    src.mkdir()
    banner("DEADCELLS", 21).save(src / "k1.png")
    banner("HOLLOW|KNIGHT", 22).save(src / "k2.png")
    index(src, tmp_path / "c", progress=False)
    read_collection(tmp_path / "c", progress=False)
    client = TestClient(create_app(tmp_path / "c"))
    info = client.get("/api/info").json()
    assert info["text_search"] is True and info["banner_text"] is True
    body = client.get("/api/search/text", params={"q": "cells dead", "n": 2}).json()
    assert body["signals"] == ["banner text", "name", "image"]
    first = body["results"][0]
    assert (first["id"], first["matched"][0]) == ("k1", "banner text")
    assert first["banner_text"].upper() == "DEADCELLS" and first["signals"]["banner text"] > 80
    assert client.get("/api/items/k2").json()["banner_text"].upper() == "HOLLOW KNIGHT"
    nothing = client.get("/api/search/text", params={"q": "xyzzy plugh"})
    assert nothing.status_code == 422 and "no ImageNet class matches" in nothing.json()["detail"]
