"""Large JPEGs are decoded at a reduced scale (Pillow's ``draft``, libjpeg's DCT scaling)
that keeps 1.5 times the pixels the resize needs: the rule, what it does to the features,
and that every path that embeds an image (index, ``similar PATH``, the API's upload)
decodes it the same way, so an indexed image finds itself at similarity 1."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bannermatch.embed.models import Preprocess
from bannermatch.embed.models.preprocess import DRAFT_MARGIN
from bannermatch.images import load_image
from bannermatch.present.server import ServedCollection, create_app

DEFAULT_KEY = "effnet-lite0__pad224-bicubic__cls"
FULL_KEY = "effnet-lite0__pad224-bicubic-full__cls"


def test_the_draft_rule_keeps_the_margin_and_ignores_orientation() -> None:
    pad = Preprocess(224, 256, fit="pad")
    assert pad.draft_size(1200, 1800) == (224, 336)  # a 2x Steam banner: decoded at 300x450
    assert pad.draft_size(1800, 1200) == (336, 224)  # its transpose (EXIF-rotated): the same
    assert pad.draft_size(512, 768) == (224, 336)  # decoded at 256x384
    assert pad.draft_size(342, 482) is None  # half of it would be under 1.5x: decoded whole
    crop = Preprocess(224, 256)  # the shorter side resized to 256: 384 of it kept
    assert crop.draft_size(1200, 1800) == (384, 576)
    assert crop.draft_size(700, 1050) is None
    square = Preprocess(224, 256, fit="squash")
    assert square.draft_size(4000, 1000) == (336, 336)  # 1/2: 2000x500
    assert square.draft_size(4000, 500) is None  # 1/2 would leave 250 rows
    assert replace(pad, draft=False).draft_size(1200, 1800) is None
    assert replace(pad, draft=False).key == "pad224-bicubic-full" and pad.key == "pad224-bicubic"


def test_drafted_images_keep_the_margin_and_the_features(model, edge_cases_dir: Path) -> None:
    pre = model.preprocess
    assert pre.draft and pre.fit == "pad"
    photos = sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg"))[:8]
    full, drafted = [], []
    for path in photos:
        whole = load_image(str(path))
        small = load_image(str(path), draft_size=pre.draft_size)
        assert (small.width, small.height) == (whole.width, whole.height)  # as stored
        w, h = whole.image.size
        fitted = np.array([w, h]) * pre.crop_size / max(w, h)
        assert small.image.size[0] < w  # decoded smaller ...
        assert (np.array(small.image.size) >= DRAFT_MARGIN * fitted - 1).all()  # ... not too small
        full.append(whole.image)
        drafted.append(small.image)
    cosines = (model.embed_images(full) * model.embed_images(drafted)).sum(axis=1)
    assert cosines.min() > 0.98, cosines
    assert cosines.max() < 0.99999  # the pixels did change: this is not the same decoding


@pytest.fixture(scope="module")
def photos_collection(tmp_path_factory: pytest.TempPathFactory, edge_cases_dir: Path) -> Path:
    from bannermatch.embed.index import index

    base = tmp_path_factory.mktemp("draft")
    images = base / "photos"
    images.mkdir()
    seen: set[bytes] = set()
    for path in sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg")):
        data = path.read_bytes()
        if data not in seen and len(seen) < 6:  # the set holds some files twice
            seen.add(data)
            shutil.copy(path, images / path.name)
    root = base / "coll"
    # fp32: these tests compare decodings to 0.9995, finer than int8's rounding (the int8
    # default's queries: tests/embed/test_precision.py)
    index(images, root, progress=False, precision="fp32")
    index(images, root, draft=False, progress=False, precision="fp32")
    return root


def _best(cli, root: Path, query: Path, *model: str) -> dict:
    proc = cli("similar", str(root), str(query), "-k", "1", "--json", *model)
    return json.loads(proc.stdout)["results"][0]


@pytest.fixture(scope="module")
def query(photos_collection: Path) -> Path:
    """The photo whose features the draft moves most: decoded the other way than the
    index did, it would not find itself at similarity 1."""
    models = photos_collection / "models"
    drafted = np.load(models / DEFAULT_KEY / "embeddings.npy").astype(np.float32)
    whole = np.load(models / FULL_KEY / "embeddings.npy").astype(np.float32)
    ids = json.loads((models / DEFAULT_KEY / "items.json").read_text())
    assert ids == json.loads((models / FULL_KEY / "items.json").read_text())
    cosines = (drafted * whole).sum(axis=1)
    assert cosines.min() < 0.999, cosines
    return photos_collection.parent / "photos" / f"{ids[int(cosines.argmin())]}.jpg"


def test_similar_path_decodes_as_index_did(cli_here, photos_collection: Path, query: Path) -> None:
    for key in (DEFAULT_KEY, FULL_KEY):
        hit = _best(cli_here, photos_collection, query, "--model", key)
        assert hit["id"] == query.stem and hit["score"] > 0.9995, (key, hit)


def test_upload_decodes_as_index_did(photos_collection: Path, query: Path) -> None:
    for key in (DEFAULT_KEY, FULL_KEY):
        client = TestClient(create_app(ServedCollection.open(photos_collection, key)))
        files = {"file": (query.name, query.read_bytes(), "image/jpeg")}
        body = client.post("/api/search/image?n=1", files=files).json()
        assert body["model_key"] == key
        best = body["results"][0]
        assert best["id"] == query.stem and best["score"] > 0.9995, (key, best)


def test_a_collection_decoded_whole_by_an_earlier_version(
    cli_here, photos_collection: Path, query: Path, tmp_path: Path
) -> None:
    """Written before drafts, under today's default key: queries refuse it with a hint,
    and ``index`` embeds it again rather than mixing two decodings."""
    root = tmp_path / "old"
    shutil.copytree(photos_collection, root)
    manifest_path = root / "models" / DEFAULT_KEY / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["preprocess"]["draft"]
    manifest_path.write_text(json.dumps(manifest))
    proc = cli_here("similar", str(root), str(query), "--model", DEFAULT_KEY, check=False)
    assert proc.returncode != 0 and "index" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    photos = photos_collection.parent / "photos"
    cli_here("index", str(photos), "--out", str(root), "-q", "--precision", "fp32")
    assert json.loads(manifest_path.read_text())["preprocess"]["draft"] is True
    assert _best(cli_here, root, query, "--model", DEFAULT_KEY)["score"] > 0.9995


def test_report_thumbnails_and_odd_jpegs_still_decode(tmp_path: Path, edge_cases_dir: Path) -> None:
    """CMYK and progressive JPEGs take the draft too (libjpeg scales any JPEG)."""
    pre = Preprocess(224, 256, fit="pad")
    photo = Image.open(sorted((edge_cases_dir / "berlin_pairs").glob("*.jpg"))[0])
    for name, mode, extra in [("cmyk.jpg", "CMYK", {}), ("prog.jpg", "RGB", {"progressive": True})]:
        path = tmp_path / name
        photo.convert(mode).save(path, quality=90, **extra)
        d = load_image(str(path), draft_size=pre.draft_size)
        assert d.image.mode == "RGB" and d.image.size[0] < photo.size[0], name
