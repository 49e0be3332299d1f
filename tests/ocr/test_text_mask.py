"""Art-only embeddings (``index --mask-text``): the text OCR finds painted over before
embedding, under its own model key; a pasted title then moves the embedding less."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "rapidocr_onnxruntime",
    reason="the 'ocr' extra is not installed (pip install --no-deps rapidocr-onnxruntime; "
    "see docs/ocr.md)",
)

from bannermatch.ocr.engine import OcrEngine
from bannermatch.ocr.mask import DEFAULT_METHOD, METHODS, mask_image, split_key, text_mask
from bannermatch.ocr.mask import boxes_of as ocr_boxes
from bannermatch.store.collection import Collection
from support.servers import with_title

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_masking_removes_a_pasted_title(engine: OcrEngine, model, skimage_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """Every method paints the title away (OCR no longer reads it); with ``inpaint`` the
    art-only embeddings of a photo with and without the title are closer than the plain
    ones on every photo tried. (``blur``, the default, keeps the letters' colours: on
    astronaut.png its pair is 0.93 against 0.96 plain; docs/ocr.md.)"""
    for name in PHOTOS:
        art = Image.open(skimage_dir / name).convert("RGB").resize((342, 482))
        titled = with_title(art, "STARFALL")
        boxes = ocr_boxes(engine.read(np.asarray(titled)))
        assert boxes, f"{name}: OCR found no title"
        plain = model.embed_images([art, titled])
        art_boxes = ocr_boxes(engine.read(np.asarray(art)))
        masked = model.embed_images(
            [mask_image(art, art_boxes, "inpaint"), mask_image(titled, boxes, "inpaint")]
        )
        assert _cos(*masked) > _cos(*plain), name
        for method in METHODS:
            cleaned = mask_image(titled, boxes, method)
            assert "STARFALL" not in engine.read(np.asarray(cleaned)).text.upper(), method


def test_mask_touches_only_the_boxes() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (120, 80, 3), np.uint8))
    box = (0.25, 0.25, 0.75, 0.25, 0.75, 0.4, 0.25, 0.4)
    mask = text_mask(image.size, [box]) > 0
    assert mask[40, 40] and not mask[100, 40] and not mask[40, 5]
    for method in METHODS:
        out = np.asarray(mask_image(image, [box], method))
        assert np.array_equal(out[~mask], np.asarray(image)[~mask]), method
        assert not np.array_equal(out[mask], np.asarray(image)[mask]), method
    assert mask_image(image, [], "fill") is image  # no text: the image as it is


@pytest.fixture(scope="module")
def masked_root(tmp_path_factory: pytest.TempPathFactory, skimage_dir: Path) -> Path:
    """Four photos, each also with a title pasted on, indexed with --mask-text inpaint."""
    from support.cli import run_cli

    folder = tmp_path_factory.mktemp("masked") / "in"
    folder.mkdir()
    for name in PHOTOS:
        art = Image.open(skimage_dir / name).convert("RGB").resize((342, 482))
        art.save(folder / f"{Path(name).stem}.png")
        with_title(art, "STARFALL").save(folder / f"{Path(name).stem}-titled.png")
    shutil.copy(folder / "coffee.png", folder.parent / "query.png")
    root = folder.parent / "coll"
    out = run_cli("index", folder, "--out", root, "--mask-text", "inpaint", "--json", "-q")
    result = json.loads(out.stdout)
    assert result["embedded"] == 8 and result["text_mask"]["embedded"] == 8
    return root


def test_index_mask_text_writes_its_own_key(cli_here, masked_root: Path) -> None:  # type: ignore[no-untyped-def]
    keys = Collection(masked_root).model_keys()
    assert len(keys) == 2
    masked = next(k for k in keys if split_key(k)[1] == "inpaint")
    plain = split_key(masked)[0]
    assert plain in keys
    manifest = json.loads((masked_root / "models" / masked / "manifest.json").read_text())
    assert manifest["key"] == masked and manifest["text_mask"]["method"] == "inpaint"
    assert manifest["text_mask"]["ocr"]["engine"] == "rapidocr-onnxruntime"
    # the plain key stays the default; the art-only one is picked by its key
    default = json.loads(cli_here("similar", masked_root, "coffee", "-k", "1", "--json").stdout)
    assert default["model_key"] == plain
    art = json.loads(
        cli_here("similar", masked_root, "coffee", "--model", masked, "-k", "1", "--json").stdout
    )
    assert art["model_key"] == masked and art["results"][0]["id"] == "coffee-titled"
    # --mask-text alone is the default method, a third key; a rerun is incremental
    inputs = masked_root.parent / "in"
    for embedded in (8, 0):
        again = cli_here("index", inputs, "--out", masked_root, "--mask-text", "--json")
        again = json.loads(again.stdout)
        assert again["embedded"] == 0 and again["text_mask"]["embedded"] == embedded
        assert again["text_mask"]["model_key"] == f"{plain}-textmask-{DEFAULT_METHOD}"
    assert len(Collection(masked_root).model_keys()) == 3


def test_titled_copies_are_closer_in_the_art_only_rows(masked_root: Path) -> None:
    coll = Collection(masked_root)
    keys = coll.model_keys()
    masked = coll.load(next(k for k in keys if split_key(k)[1] == "inpaint"))
    plain = coll.load(split_key(masked.key)[0])
    for stem in ("astronaut", "coffee", "chelsea", "rocket"):
        pair = [stem, f"{stem}-titled"]
        sims = []
        for data in (plain, masked):
            a, b = (np.asarray(data.embeddings[data.row_of[i]], np.float32) for i in pair)
            sims.append(_cos(a, b))
        assert sims[1] > sims[0], (stem, sims)


def test_image_query_on_the_art_only_key_is_masked(
    cli_here, masked_root: Path, skimage_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    """An outside image queried against the art-only key is read and masked on the fly."""
    masked = next(k for k in Collection(masked_root).model_keys() if split_key(k)[1] == "inpaint")
    query = masked_root.parent / "rocket-other-title.png"
    art = Image.open(skimage_dir / "rocket.jpg").convert("RGB").resize((342, 482))
    with_title(art, "GALAXY RUN").save(query)
    out = json.loads(
        cli_here("similar", masked_root, query, "--model", masked, "-k", "2", "--json").stdout
    )
    assert {h["id"] for h in out["results"]} == {"rocket", "rocket-titled"}
    assert out["results"][0]["score"] > 0.9


def test_mask_text_with_a_bad_method(cli_here, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = cli_here("index", tmp_path, "--out", tmp_path / "c", "--mask-text", "smear", check=False)
    assert proc.returncode != 0 and "invalid choice" in proc.stderr


def test_served_art_only_key_masks_uploads_and_turned_items(
    masked_root: Path, skimage_dir: Path
) -> None:
    """The server on an art-only key: an upload is read and masked before it is embedded,
    and so is a mirrored item; the answers name the art-only key."""
    import io

    from fastapi.testclient import TestClient

    from bannermatch.present.server import create_app

    masked = next(k for k in Collection(masked_root).model_keys() if split_key(k)[1] == "inpaint")
    client = TestClient(create_app(masked_root, masked))
    art = Image.open(skimage_dir / "chelsea.png").convert("RGB").resize((342, 482))
    buf = io.BytesIO()
    with_title(art, "NIGHT OWL").save(buf, "PNG")
    files = {"file": ("chelsea-other.png", buf.getvalue(), "image/png")}
    found = client.post("/api/search/image?n=2", files=files).json()
    assert found["model_key"] == masked
    assert {h["id"] for h in found["results"]} == {"chelsea", "chelsea-titled"}
    # with a text weight: one reading gives the text to compare and the boxes to mask
    weighted = client.post("/api/search/image?n=2&text_weight=0.5", files=files).json()
    assert weighted["query"]["banner_text"].replace(" ", "").upper() == "NIGHTOWL"
    assert {h["id"] for h in weighted["results"]} == {"chelsea", "chelsea-titled"}
    turned = client.get("/api/items/chelsea-titled/similar?n=1&mirror=1").json()
    assert turned["source"] == "transformed" and turned["results"][0]["id"] == "chelsea"
