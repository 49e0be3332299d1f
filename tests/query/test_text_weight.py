"""Image and banner-text similarity together (``--text-weight``), the text-bias measure and
``eval`` with the text options, on generated banners read by the real OCR engine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

pytest.importorskip(
    "rapidocr_onnxruntime",
    reason="the 'ocr' extra is not installed (pip install --no-deps rapidocr-onnxruntime; "
    "see docs/ocr.md)",
)

from bannermatch.ocr.mask import DEFAULT_METHOD
from bannermatch.present.server import ServedCollection, create_app
from bannermatch.textsim import TextSimilarity, normalise, text_bias, top_k, words
from support.cli import env_without_ocr, ocr_blocker
from support.servers import TITLED, build_titled_collection, with_title

BANNERS = TITLED


def test_text_similarity_ignores_spaces_and_case() -> None:
    sim = TextSimilarity(["A PLAGUE TALE INNOCENCE", "ABZU", "", "Portal 2"])
    got = sim.of_text("aplaguetale innocence")
    assert got[0] == pytest.approx(1.0, abs=1e-6) and got[1] < 0.1 and got[2] == 0
    rows = sim.of_rows([0, 2])
    assert rows.shape == (2, 4) and rows[0, 0] == pytest.approx(1.0) and not rows[1].any()
    assert normalise("Half-Life 2: Episode") == "halflife2episode"
    assert words("The Witcher 3: WILD hunt") == {"witcher", "wild", "hunt"}
    assert TextSimilarity(["", ""]).of_text("abc").tolist() == [0, 0]


def test_text_bias_counts_other_group_neighbours_sharing_a_word() -> None:
    texts = ["DARK SOULS", "DARK SOULS II", "DARK CITY", "SUNNY DAY", "BLUE"]
    labels = np.array([0, 0, 1, 2, 3])
    # query 0's neighbours: its own group (skipped), DARK CITY (shares "dark"), SUNNY, BLUE
    neighbours = np.array([[1, 2, 3, 4], [0, 3, 4, 2]])
    got = text_bias(neighbours, np.array([0, 1]), labels, texts, k=4)
    assert got["other_group_neighbours"] == 6 and got["sharing_a_word"] == 2
    assert got["text_bias"] == pytest.approx(2 / 6)
    # chance: query 0 and 1 each share a word with 1 of the 3 rows of other groups
    assert got["text_bias_chance"] == pytest.approx(2 / 6)
    scores = np.array([[0.0, 0.9, 0.5], [0.2, 0.0, 0.7]])
    assert top_k(scores, np.array([1, 2]), 2).tolist() == [[2, 0], [0, 1]]


@pytest.fixture(scope="module")
def text_root(tmp_path_factory: pytest.TempPathFactory, skimage_dir: Path) -> Path:
    """Five generated banners indexed with --ocr and matched."""
    return build_titled_collection(tmp_path_factory.mktemp("textweight"), skimage_dir)


def _ids(out: dict) -> list[str]:
    return [h["id"] for h in out["results"]]


def test_text_weight_changes_the_ranking(cli_here, text_root: Path) -> None:  # type: ignore[no-untyped-def]
    def similar(*flags: str) -> dict:
        return json.loads(
            cli_here("similar", text_root, "a-starfall", "-k", "4", "--json", *flags).stdout
        )

    plain = similar()
    assert _ids(plain)[0] == "a-moonrise"  # the same art under another title
    assert _ids(similar("--text-weight", "0"))[0] == "a-moonrise"
    weighted = similar("--text-weight", "0.75")
    assert _ids(weighted)[0] == "b-starfall"  # the same title on other art
    assert "a-starfall" not in _ids(weighted) and len(_ids(weighted)) == 4
    assert weighted["results"][0]["score"] > weighted["results"][1]["score"]
    bad = cli_here("similar", text_root, "a-starfall", "--text-weight", "1.5", check=False)
    assert bad.returncode != 0 and "between 0 and 1" in bad.stderr and "Traceback" not in bad.stderr


def test_match_text_weight_is_stored_and_used(cli_here, text_root: Path) -> None:  # type: ignore[no-untyped-def]
    out = json.loads(
        cli_here("match", text_root, "-k", "3", "--text-weight", "0.75", "--json", "-q").stdout
    )
    assert out["text_weight"] == 0.75 and out["count"] == 5 and out["changed_first"] >= 1
    keys = list((text_root / "models").iterdir())
    stored = np.load(keys[0] / "textweight" / "neighbors.npy")
    assert stored.shape == (5, 3)
    # similar with the same weight answers from the stored rows, and the same as a scan
    got = json.loads(
        cli_here(
            "similar", text_root, "a-starfall", "-k", "3", "--text-weight", "0.75", "--json"
        ).stdout
    )
    assert _ids(got)[0] == "b-starfall"
    # the image-only neighbours are untouched
    plain = json.loads(cli_here("similar", text_root, "a-starfall", "-k", "1", "--json").stdout)
    assert _ids(plain) == ["a-moonrise"]


def test_api_text_weight(text_root: Path) -> None:
    client = TestClient(create_app(ServedCollection.open(text_root)))
    got = client.get("/api/items/a-starfall/similar?n=3&text_weight=0.75").json()
    assert got["source"] == "text-weighted" and _ids(got)[0] == "b-starfall"
    mirrored = client.get("/api/items/a-starfall/similar?n=3&text_weight=0.75&mirror=1").json()
    assert _ids(mirrored)[0] == "b-starfall"  # the stored text is the item's own
    assert client.get("/api/items/a-starfall/similar?text_weight=2").status_code == 422


def test_api_text_weight_without_text_is_409(served: ServedCollection) -> None:
    client = TestClient(create_app(served))
    response = client.get("/api/items/620/similar?text_weight=0.5")
    assert response.status_code == 409 and "--ocr" in response.json()["detail"]


@pytest.fixture(scope="module")
def upload(text_root: Path, skimage_dir: Path) -> Path:
    """A banner not in the collection: the coffee photo (HARVEST there) under chelsea's
    title: by the image alone it is coffee, by its title chelsea."""
    art = Image.open(skimage_dir / "coffee.png").convert("RGB").resize((342, 482))
    path = text_root.parent / "upload.png"
    with_title(art, "WHISKERS").save(path)
    return path


def test_text_weight_of_an_image_file_reads_its_text(
    cli_here, text_root: Path, upload: Path
) -> None:  # type: ignore[no-untyped-def]
    def similar(weight: str) -> dict:
        args = ("similar", text_root, upload, "-k", "3", "--text-weight", weight, "--json")
        return json.loads(cli_here(*args).stdout)

    assert _ids(similar("0"))[0] == "coffee"  # the same art under another title
    weighted = similar("0.75")
    assert _ids(weighted)[0] == "chelsea"  # the same title on other art
    assert weighted["query"]["kind"] == "image"
    assert normalise(weighted["query"]["banner_text"]) == "whiskers"  # read now, by OCR
    text = cli_here("similar", text_root, upload, "-k", "1", "--text-weight", "0.75").stdout
    assert "banner text read: 'WHISKERS'" in text and "chelsea" in text


def test_text_weight_of_an_image_without_the_ocr_extra(
    cli, text_root: Path, upload: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    env = env_without_ocr(tmp_path / "block")
    args = ("similar", text_root, upload, "--text-weight", "0.5")
    proc = cli(*args, check=False, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bannermatch: error: OCR needs the 'ocr' extra: pip install 'bannermatch[ocr]' && "
        "pip install --no-deps 'rapidocr-onnxruntime>=1.4.4,<1.5' (No module named pyclipper)"
    ]
    plain = cli("similar", text_root, upload, "-k", "1", "--json", env=env)  # no OCR needed
    assert _ids(json.loads(plain.stdout)) == ["coffee"]


def test_text_weight_of_an_image_on_a_collection_without_text(
    cli_here, served_root: Path, upload: Path
) -> None:  # type: ignore[no-untyped-def]
    proc = cli_here("similar", served_root, upload, "--text-weight", "0.5", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"bannermatch: error: {served_root} has no banner text: run ")


def _search_upload(client: TestClient, path: Path, query: str) -> Any:
    with open(path, "rb") as fh:
        return client.post(
            f"/api/search/image?{query}", files={"file": ("up.png", fh, "image/png")}
        )


def test_api_upload_with_text_weight(text_root: Path, upload: Path) -> None:
    served = ServedCollection.open(text_root)
    client = TestClient(create_app(served))
    plain = _search_upload(client, upload, "n=3&text_weight=0")
    assert plain.status_code == 200 and _ids(plain.json())[0] == "coffee"
    assert plain.json()["query"]["banner_text"] is None  # not read: not needed
    got = _search_upload(client, upload, "n=3&text_weight=0.75")
    assert got.status_code == 200, got.text
    body = got.json()
    assert _ids(body)[0] == "chelsea" and normalise(body["query"]["banner_text"]) == "whiskers"
    engine = served._ocr
    assert engine is not None  # loaded once, on the first upload that needed it
    assert _search_upload(client, upload, "n=3&text_weight=0.5").status_code == 200
    assert served._ocr is engine
    assert _search_upload(client, upload, "text_weight=1.5").status_code == 422


def test_a_reduced_jpeg_is_read_at_full_size(
    cli_here, text_root: Path, upload: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A large JPEG is decoded reduced for the model (a draft); its text is read from the
    full-size image, as `index --ocr` reads the collection's."""
    big = tmp_path / "big.jpg"
    Image.open(upload).resize((1368, 1928)).save(big, quality=92)
    served = ServedCollection.open(text_root)
    assert not served.decode(big.read_bytes(), 10**8).full_size
    sizes: list[tuple[int, int]] = []
    read = served.read_text
    monkeypatch.setattr(served, "read_text", lambda im: sizes.append(im.image.size) or read(im))
    got = _search_upload(TestClient(create_app(served)), big, "n=1&text_weight=0.75").json()
    assert sizes == [(1368, 1928)] and _ids(got) == ["chelsea"]
    out = cli_here("similar", text_root, big, "-k", "1", "--text-weight", "0.75", "--json").stdout
    assert normalise(json.loads(out)["query"]["banner_text"]) == "whiskers"


def test_api_upload_text_weight_errors(
    text_root: Path, upload: Path, served: ServedCollection, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    no_text = _search_upload(TestClient(create_app(served)), upload, "text_weight=0.5")
    assert no_text.status_code == 409 and "--ocr" in no_text.json()["detail"]
    # a server without the 'ocr' extra: the blocker first on the import path
    monkeypatch.syspath_prepend(str(ocr_blocker(tmp_path / "block")))
    monkeypatch.delitem(sys.modules, "rapidocr_onnxruntime")
    client = TestClient(create_app(ServedCollection.open(text_root)))
    missing = _search_upload(client, upload, "text_weight=0.5")
    assert missing.status_code == 409
    assert missing.json()["detail"].startswith("OCR needs the 'ocr' extra: pip install")
    assert _search_upload(client, upload, "n=1").json()["results"][0]["id"] == "coffee"


def test_eval_with_the_text_options(cli_here, text_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = tmp_path / "images"
    shutil.copytree(text_root.parent / "in", images)
    tsv = tmp_path / "groups.tsv"
    rows = ["file\tgroup"] + [f"{i}.png\t{i.split('-')[-1]}" for i in BANNERS]
    tsv.write_text("\n".join(rows) + "\n")  # starfall: two paintings under one title
    base = ["eval", images, "--groups", tsv, "--json", "-q", "--text-bias"]
    plain = json.loads(cli_here(*base, "--ocr-from", text_root).stdout)
    text = plain["text"]
    assert text["ocr_read"] == 0 and text["n_with_text"] == 5  # all from the store
    assert 0 <= text["text_bias"] <= 1 and text["other_group_neighbours"] > 0
    weighted = json.loads(cli_here(*base, "--ocr-from", text_root, "--text-weight", "0.75").stdout)
    assert weighted["recall@1"] == 1.0 > plain["recall@1"]  # the title finds the other art
    art = json.loads(cli_here(*base, "--mask-text", "--query-transform", "mirror").stdout)
    assert art["text"]["mask"] == DEFAULT_METHOD and art["text"]["query_transform"] == "mirror"
    assert art["text"]["ocr_read"] == 5  # no store given: read now
    bad = cli_here("eval", images, "--copies", "--text-weight", "0.5", check=False)
    assert bad.returncode != 0 and "go with --groups" in bad.stderr


def test_copies_title_check(cli_here, skimage_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """eval --copies --text-bias adds the synthetic title check, plain and art only. One
    run checks both outputs: its JSON, and the text the same result prints without
    --json (``emit`` prints its ``summary()``; a spy on ``emit`` keeps the result)."""
    from bannermatch.cli import evaluation

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                 "hubble_deep_field.jpg", "coins.png", "camera.png"):  # fmt: skip
        Image.open(skimage_dir / name).convert("RGB").resize((240, 340)).save(folder / name)
    emitted: list[Any] = []
    emit = evaluation.emit
    monkeypatch.setattr(evaluation, "emit", lambda args, r: emitted.append(r) or emit(args, r))
    args = ("eval", folder, "--copies", "--alterations", "crop", "--text-bias", "-q")
    titles = json.loads(cli_here(*args, "--json").stdout)["titles"]
    assert titles["n"] == 4 and titles["titles_read"] >= 0.75  # OCR reads the pasted titles
    for kind in ("plain", "art_only"):
        assert 0 <= titles[kind]["same_art_found"] <= 1
        assert 0 <= titles[kind]["same_title_taken"] <= 1
    assert titles["art_only"]["mask"] == DEFAULT_METHOD
    [result] = emitted
    assert result.to_dict()["titles"] == titles
    assert "title check (4 pictures)" in result.summary()
