"""Text search: CLIP's text tower, and the label search of the embedded ImageNet model."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from bannermatch import Collection, create_app, index, search
from bannermatch.embed.models import create_model
from bannermatch.errors import BannermatchError, CollectionError

textsearch = importlib.import_module("bannermatch.query.text")


@pytest.fixture(scope="module")
def photos(skimage_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's photos, indexed with the embedded model (the ``cls`` strategy)."""
    out = tmp_path_factory.mktemp("photos")
    index(skimage_dir, out / "coll", model="effnet-lite0", device="cpu")
    return out / "coll"


def _ids(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.id for h in result.hits]


def test_label_search_finds_the_photos_by_their_subject(photos: Path) -> None:
    cat = search(photos, "cat", k=3)
    assert cat.mode == "labels" and _ids(cat)[0] == "chelsea"
    assert {"tabby, tabby cat", "Egyptian cat"} <= {c.name for c in cat.classes}
    assert cat.hits[0].score > 0.5 > cat.hits[1].score
    assert _ids(search(photos, "a cup of coffee", k=1)) == ["coffee"]
    assert _ids(search(photos, "space shuttle", k=1)) == ["rocket"]


def test_every_word_narrows_the_classes() -> None:
    one = {c.name for c in textsearch.match_classes("dog")}
    two = {c.name for c in textsearch.match_classes("hunting dog")}
    assert len(one) > 50 and "Chihuahua" in one
    assert two < one and "Chihuahua" not in two and "Saluki, gazelle hound" in two


def test_label_scores_are_the_classifier_probabilities(photos: Path, skimage_dir: Path) -> None:
    """From the stored unit rows and norms, exactly what the full timm classifier says."""
    data = Collection(photos).load()
    model = create_model("effnet-lite0", engine="torch", device="cpu")
    head = model.label_head()
    assert head is not None and head.subset == "imagenet-1k"
    classes = [281, 282, 285, 967]  # tabby, tiger cat, Egyptian cat, espresso
    scores = textsearch.label_scores(data, head, classes)
    names = ["chelsea.png", "coffee.png", "astronaut.png"]
    from PIL import Image

    pixels = np.stack([model.preprocess(Image.open(skimage_dir / n).convert("RGB")) for n in names])
    with torch.no_grad():
        probs = torch.softmax(model.network().image(torch.from_numpy(pixels)), dim=1).numpy()
    expected = probs[:, classes].sum(axis=1)
    got = scores[[data.row_of[Path(n).stem] for n in names]]
    np.testing.assert_allclose(got, expected, atol=0.01)
    assert expected[0] > 0.5 and expected[1] > 0.5 and expected[2] < 0.05


def test_search_on_the_command_line(cli_here, photos: Path) -> None:
    out = json.loads(cli_here("search", photos, "coffee", "-k", "2", "--json").stdout)
    assert out["mode"] == "labels" and out["results"][0]["id"] == "coffee"
    assert [r["rank"] for r in out["results"]] == [1, 2]
    assert {"espresso", "coffee mug"} <= {c["name"] for c in out["classes"]}
    table = cli_here("search", photos, "cat", "-k", "1").stdout
    assert "label search" in table and "chelsea" in table


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("xyzzy plugh", "no ImageNet class matches 'xyzzy plugh'"),
        ("   ", "the text to search is empty"),
        ("the of a", "no words to search in"),
    ],
)
def test_bad_text_is_one_line(cli_here, photos: Path, text: str, message: str) -> None:
    proc = cli_here("search", photos, text, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_model_without_text_or_labels_says_so(skimage_dir: Path, tmp_path: Path) -> None:
    coll = tmp_path / "gem"
    index(skimage_dir, coll, model="effnet-lite0", strategy="gem", device="cpu")
    with pytest.raises(BannermatchError, match="cannot search by text: it needs a CLIP model"):
        search(coll, "cat")


def test_a_collection_without_norms_asks_to_reindex(photos: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(photos, old)
    folder = Collection(old).load().folder
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["norms"] = False  # as written before bannermatch kept norms
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "norms.npy").unlink()
    with pytest.raises(CollectionError, match="index it again to add them"):
        search(old, "cat")


def test_damaged_norms_are_refused(photos: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(photos, bad)
    folder = Collection(bad).load().folder
    np.save(folder / "norms.npy", np.ones(3, np.float32))
    with pytest.raises(CollectionError, match=r"norms\.npy has shape"):
        Collection(bad).load()


def test_clip_search_ranks_by_cosine_to_the_text(
    tiny_clip: str, skimage_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANNERMATCH_RANDOM_WEIGHTS", "1")  # a tiny CLIP with random weights
    coll = tmp_path / "clip"
    index(skimage_dir, coll, model=tiny_clip, device="cpu")
    result = search(coll, "a photo of a cat", k=5)
    assert result.mode == "clip" and result.classes == []
    data = Collection(coll).load()
    model = create_model(tiny_clip, engine="torch", device="cpu")
    text = model.embed_text(["a photo of a cat"])[0]
    cosines = np.asarray(data.embeddings, np.float32) @ text
    got = [h.score for h in result.hits]  # ties (identical images) may come in any order
    np.testing.assert_allclose(got, np.sort(cosines)[::-1][:5], atol=2e-3)
    np.testing.assert_allclose(got, cosines[[data.row_of[h.id] for h in result.hits]], atol=2e-3)
    other = search(coll, "a rocket launch", k=5)
    assert [h.score for h in other.hits] != [h.score for h in result.hits]


def test_text_search_api(photos: Path) -> None:
    client = TestClient(create_app(photos))
    info = client.get("/api/info").json()
    assert info["text_search"] is True and info["text_mode"] == "labels"
    answer = client.get("/api/search/text", params={"q": "cat", "n": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["mode"] == "labels" and body["results"][0]["id"] == "chelsea"
    assert body["results"][0]["image_url"].endswith("/api/items/chelsea/image")
    assert len(body["results"]) == 2 and body["classes"]
    missing = client.get("/api/search/text", params={"q": "xyzzy"})
    assert missing.status_code == 422 and "no ImageNet class matches" in missing.json()["detail"]
    assert client.get("/api/search/text", params={"q": ""}).status_code == 422
    assert client.get("/api/search/text", params={"q": "cat", "n": 0}).status_code == 422


def test_text_search_api_without_a_text_model(skimage_dir: Path, tmp_path: Path) -> None:
    coll = tmp_path / "gem"
    index(skimage_dir, coll, model="effnet-lite0", strategy="gem", device="cpu")
    client = TestClient(create_app(coll))
    assert client.get("/api/info").json()["text_search"] is False
    answer = client.get("/api/search/text", params={"q": "cat"})
    assert answer.status_code == 404 and "cannot search by text" in answer.json()["detail"]


def test_the_label_head_is_kept_and_a_search_needs_no_pytorch(photos: Path, tmp_path: Path) -> None:
    """The first network built keeps its classifier head on disk; a search in a fresh
    process reads it (no PyTorch import, same classes), and a damaged file is made again."""
    import subprocess
    import sys

    from bannermatch.embed.models import heads

    manifest = Collection(photos).load().manifest
    path = heads.head_path(manifest["arch"], manifest["weights"]["sha256"])
    assert path.is_file()  # kept when the index exported the model
    code = (
        "import sys; from bannermatch import search; r = search(sys.argv[1], 'cat', k=1); "
        "print(r.hits[0].id, 'torch' in sys.modules, 'timm' in sys.modules)"
    )
    run = [sys.executable, "-c", code, str(photos)]
    assert subprocess.run(run, capture_output=True, text=True, check=True).stdout.split() == [
        "chelsea", "False", "False"
    ]  # fmt: skip
    kept = heads.load_head(path)
    assert kept is not None and kept.classes[281][0] == "tabby, tabby cat"

    path.write_bytes(b"PK\x03\x04 not a whole archive")
    assert heads.load_head(path) is None
    remade = heads.label_head_for(manifest)  # from the network, which keeps it again
    assert remade is not None and heads.load_head(path) is not None
    np.testing.assert_array_equal(remade.weight, kept.weight)
    assert remade.classes == kept.classes
