"""``search``'s ranking of words: banner-text hits against the image signal, for a label
search (which knows no titles) and for CLIP (whose rows outrank weak banner-text hits)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bannermatch import Collection, index
from bannermatch.errors import BannermatchError
from bannermatch.query.text import TextSearcher
from bannermatch.query.words import BANNER_TEXT, IMAGE, MIN_QUERY_COVERAGE, WordSearcher

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "horse.png", "motorcycle_left.png")
#: banner texts as OCR reads them: a title read whole, and one misread (HALOS for HALO 3)
TEXTS = {"astronaut": "HALO 3 ODST", "coffee": "HALOS", "horse": "MEAT BOY"}


def _searcher(coll: Path) -> tuple[WordSearcher, list[str]]:
    data = Collection(coll).load()
    texts = [TEXTS.get(i, "") for i in data.ids]
    return WordSearcher([""] * len(data.ids), texts, TextSearcher(data), data.ids), data.ids


@pytest.fixture(scope="module")
def photos(skimage_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(skimage_dir / name, src)
    return src


def test_a_label_search_ranks_after_every_banner_text_hit(
    photos: Path, tmp_path: Path, model
) -> None:  # type: ignore[no-untyped-def]
    index(photos, tmp_path / "c", model, progress=False)
    searcher, ids = _searcher(tmp_path / "c")
    assert searcher.image is not None and searcher.image.mode == "labels"
    query = "halo 3 odst horse"  # "horse" is an ImageNet word (horse cart), no title's
    found = {ids[m.row]: m.score for m in searcher.banner.search(query, 5)}  # type: ignore[union-attr]
    assert set(found) == {"astronaut", "coffee"}
    strong = searcher.banner.search(query, 5, min_coverage=MIN_QUERY_COVERAGE)  # type: ignore[union-attr]
    assert [ids[m.row] for m in strong] == ["astronaut"]  # HALOS is under the floor

    ranking = searcher.rank(query, len(ids))
    got = [(ids[r.row], set(r.signals)) for r in ranking.rows]
    # both banner texts first, the misread title included, by their score; then the
    # label search's rows
    assert [i for i, _ in got[:2]] == ["astronaut", "coffee"]
    assert all(BANNER_TEXT in s for _, s in got[:2])
    assert [s for _, s in got[2:]] == [{IMAGE}] * (len(ids) - 2)
    # a title that no text holds and no ImageNet class has: one clear error
    with pytest.raises(BannermatchError, match="no name or banner text holds the words, and no"):
        searcher.rank("zzyzx", 5)


def test_with_clip_a_weak_banner_text_hit_comes_after_clips_rows(
    photos: Path, tmp_path: Path, tiny_clip: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANNERMATCH_RANDOM_WEIGHTS", "1")  # a tiny CLIP with random weights
    index(photos, tmp_path / "c", model=tiny_clip, device="cpu", progress=False)
    searcher, ids = _searcher(tmp_path / "c")
    assert searcher.image is not None and searcher.image.mode == "clip"
    query = "halo 3 odst"
    strong = searcher.banner.search(query, 5, min_coverage=MIN_QUERY_COVERAGE)  # type: ignore[union-attr]
    assert [ids[m.row] for m in strong] == ["astronaut"]  # HALOS is a weak hit

    rows, _, _, _ = searcher.image.rank_words(query, len(ids))
    clip_order = [ids[r] for r in rows.tolist() if ids[r] != "astronaut"]
    ranking = searcher.rank(query, 2)  # the title, then CLIP's best other row
    assert [ids[r.row] for r in ranking.rows] == ["astronaut", clip_order[0]]
    everything = searcher.rank(query, len(ids))
    assert [ids[r.row] for r in everything.rows] == ["astronaut", *clip_order]
    coffee = everything.rows[1 + clip_order.index("coffee")]  # the weak hit keeps CLIP's place
    assert set(coffee.signals) == {IMAGE, BANNER_TEXT}
