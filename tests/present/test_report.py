"""``bannermatch report``: pages, thumbnails, grid images and links from real covers."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import tarfile
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.embed.index import index
from bannermatch.errors import BannermatchError
from bannermatch.present.report import report
from bannermatch.query.match import match
from bannermatch.store.catalog import app_meta
from bannermatch.store.collection import Collection

# the package binds `bannermatch.present.report` to the function; this is the module
report_module = importlib.import_module("bannermatch.present.report")

WEIRD = 'we<b>&"ird'  # HTML's special characters
WEIRD_MD = "pipe|star*[x]_y"  # Markdown's
N_COVERS = 42
STEAM_IDS = ["620", "400", "570", "730", "440", "220", "70", "10", "1091500", "292030", "105600"]


def _covers(covers_dir: Path, n: int, start: int = 0) -> list[Path]:
    return sorted((covers_dir / "images").glob("*.jpg"))[start : start + n]


def _build(images: Path, coll: Path, model, *, k: int = 10, do_match: bool = True) -> Path:
    index(images, coll, model, progress=False)
    if do_match:
        match(coll, k=k, progress=False)
    return coll


@pytest.fixture(scope="module")
def covers_coll(tmp_path_factory, covers_dir, model) -> Path:
    """40 covers plus two whose file names hold HTML's and Markdown's special characters."""
    images = tmp_path_factory.mktemp("covers")
    for path in _covers(covers_dir, 40):
        shutil.copy(path, images / path.name)
    shutil.copy(_covers(covers_dir, 1, start=300)[0], images / f"{WEIRD}.jpg")
    shutil.copy(_covers(covers_dir, 1, start=301)[0], images / f"{WEIRD_MD}.jpg")
    return _build(images, tmp_path_factory.mktemp("coll") / "coll", model)


@pytest.fixture(scope="module")
def covers_report(covers_coll, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return report(covers_coll, out=out, n_unique=15, max_grids=5, with_map=False, progress=False)


@pytest.fixture(scope="module")
def steam_coll(tmp_path_factory, covers_dir, model) -> Path:
    """Covers named like Steam appIDs, one with a leading zero and one with letters. A names
    sidecar says which are Steam apps; 4242 is a number in a plain folder: just an id."""
    images = tmp_path_factory.mktemp("steam")
    names = [*STEAM_IDS, "0070", "notsteam", "4242"]
    for name, path in zip(names, _covers(covers_dir, len(names), start=100), strict=True):
        shutil.copy(path, images / f"{name}.jpg")
    sidecar = tmp_path_factory.mktemp("names") / "names.csv"
    sidecar.write_text("file,name,steam_appid\n" + "".join(f"{i}.jpg,{i},{i}\n" for i in STEAM_IDS))
    coll = tmp_path_factory.mktemp("steamcoll") / "coll"
    index(images, coll, model, names=[sidecar], progress=False)
    match(coll, k=10, progress=False)
    return coll


class Page(HTMLParser):
    """Query sections, their neighbours, unique rows, images and links of a report page."""

    def __init__(self, path: Path):
        super().__init__()
        self.sections: list[dict] = []
        self.unique: list[dict] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self._li: dict | None = None
        self.feed(path.read_text("utf-8"))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "query":
            self.sections.append(
                {"id": a["data-id"], "anchor": a["id"], "links": [], "neighbours": []}
            )
        elif tag == "li" and "data-id" in a:
            self._li = {"id": a["data-id"], "score": float(a["data-score"]), "links": []}
            self.sections[-1]["neighbours"].append(self._li)
        elif tag == "tr" and a.get("class") == "unique":
            self.unique.append(
                {"id": a["data-id"], "nearest": a["data-nearest"], "score": float(a["data-score"])}
            )
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
            if self._li is not None:
                self._li["links"].append(a["href"])
            elif self.sections:
                self.sections[-1]["links"].append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._li = None


def _sections(out: Path) -> list[dict]:
    return [s for page in sorted(out.glob("*.html")) for s in Page(page).sections]


# files and contents ---------------------------------------------------------------


def test_report_writes_every_page_grid_and_thumbnail(covers_report):
    out = Path(covers_report.out)
    for name in [
        "index.html",
        "unique.html",
        "similar.md",
        "unique.md",
        "similar.bbcode.txt",
        "unique.bbcode.txt",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert covers_report.pages == ["index.html"]
    assert len(covers_report.grids) == 5 + 1
    assert sorted(p.name for p in (out / "grids").iterdir()) == sorted(
        Path(g).name for g in covers_report.grids
    )
    pages = [Page(out / "index.html"), Page(out / "unique.html")]
    thumbs = {src for page in pages for src in page.images}
    assert all(src.startswith("thumbs/") for src in thumbs)
    assert all((out / src).is_file() for src in thumbs)
    assert covers_report.thumbnails == len(thumbs) == N_COVERS
    # every link is relative (no Steam ids here), every local link resolves
    for page in pages:
        for href in page.links:
            assert not href.startswith(("/", "http")), href
            assert (out / href.split("#")[0]).exists(), href
    assert covers_report.unreadable == []
    json.dumps(covers_report.to_dict())
    assert covers_report.index in covers_report.summary()


def test_html_lists_every_query_with_its_stored_neighbours_in_order(covers_coll, covers_report):
    data = Collection(covers_coll).load()
    nb, sc = data.neighbors()
    sections = _sections(Path(covers_report.out))
    assert [s["id"] for s in sections] == data.ids  # every item, in row order
    for row, section in enumerate(sections):
        assert len(section["neighbours"]) == 10
        assert [n["id"] for n in section["neighbours"]] == [data.ids[r] for r in nb[row, :10]]
        scores = [n["score"] for n in section["neighbours"]]
        np.testing.assert_allclose(scores, np.asarray(sc[row, :10], np.float32), atol=1e-4)


def test_names_are_escaped_everywhere(covers_report):
    out = Path(covers_report.out)
    for page in ["index.html", "unique.html", "similar.md", "unique.md"]:
        text = (out / page).read_text("utf-8")
        assert "<b>&" not in text, page
    html_text = (out / "index.html").read_text("utf-8")
    assert "we&lt;b&gt;&amp;&#34;ird" in html_text  # Jinja2's autoescape
    assert WEIRD in [s["id"] for s in Page(out / "index.html").sections]  # round-trips
    md = (out / "similar.md").read_text("utf-8")
    assert "we&lt;b&gt;&amp;" in md
    assert r"pipe\|star\*\[x\]\_y" in md and WEIRD_MD not in md
    for line in md.splitlines():
        if line.startswith("| ![") or line.startswith("| [!["):
            assert len(re.split(r"(?<!\\)\|", line)) == 5 + 2, line  # five cells a row
    files = [p.name for p in out.rglob("*")]
    assert all(name.isascii() and not set('<>&"') & set(name) for name in files)


def test_markdown_and_bbcode_show_two_rows_of_five(covers_coll, covers_report):
    out = Path(covers_report.out)
    md = (out / "similar.md").read_text("utf-8")
    rows = [line for line in md.splitlines() if line.startswith("| ![")]
    assert len(rows) == 2 * N_COVERS
    assert all(line.count("![") == 5 for line in rows)
    assert md.count("|:-:|:-:|:-:|:-:|:-:|") == N_COVERS
    bb = (out / "similar.bbcode.txt").read_text("utf-8")
    assert bb.count("[img]") == N_COVERS * 11
    assert "[url=" not in bb  # no Steam ids in this collection
    unique_md = (out / "unique.md").read_text("utf-8")
    assert unique_md.count("![") == 2 * 15


def test_grids_have_the_expected_size_and_show_the_query(covers_report):
    out = Path(covers_report.out)
    tile_w, tile_h = report_module.TILE_WIDTH, report_module.TILE_HEIGHT
    cap, gap = report_module.CAPTION, report_module.GAP
    similar = [g for g in covers_report.grids if "/similar-" in g]
    assert len(similar) == 5
    for grid in similar:
        with Image.open(out / grid) as im:
            assert im.format == "WEBP"
            # query + separator + 5 columns; 2 rows of tile + caption
            assert im.size == (6 * tile_w + 9 * gap, 2 * (tile_h + cap) + 3 * gap)
    html_text = (out / "index.html").read_text("utf-8")
    assert f'href="{similar[0]}"' in html_text
    with Image.open(out / similar[0]) as im:
        tile = np.asarray(im.convert("RGB").crop((gap, gap, gap + tile_w, gap + tile_h)), float)
    thumbs = Page(out / "index.html").images
    query_thumb, first_nb_thumb = thumbs[0], thumbs[1]

    def diff(thumb: str) -> float:
        with Image.open(out / thumb) as t:
            small = t.convert("RGB").resize((tile_w, tile_h))
        return float(np.abs(np.asarray(small, float) - tile).mean())

    assert diff(query_thumb) < diff(first_nb_thumb)
    assert tile.std() > 10  # an image, not the background
    with Image.open(out / "grids/unique.webp") as im:
        pair = 2 * tile_w + gap
        assert im.size == (gap + 5 * pair + 4 * 3 * gap + gap, 3 * (tile_h + cap) + 4 * gap)


def test_unique_page_is_ordered_by_first_neighbour_score(covers_coll, covers_report):
    data = Collection(covers_coll).load()
    nb, sc = data.neighbors()
    rows = Page(Path(covers_report.out) / "unique.html").unique
    assert len(rows) == 15
    first = {item_id: float(sc[r, 0]) for r, item_id in enumerate(data.ids)}
    scores = [first[row["id"]] for row in rows]
    assert scores == sorted(scores)
    np.testing.assert_allclose([row["score"] for row in rows], scores, atol=1e-4)
    assert max(scores) <= min(s for i, s in first.items() if i not in {r["id"] for r in rows})
    for row in rows:
        assert row["nearest"] == data.ids[nb[data.row_of[row["id"]], 0]]
    md_rows = [
        re.match(r"\| (\d+) \| !\[(.*?)\]\(", line)
        for line in (Path(covers_report.out) / "unique.md").read_text("utf-8").splitlines()
    ]
    md_alts = [m.group(2) for m in md_rows if m]
    assert md_alts == [report_module.md_escape(row["id"]) for row in rows]


def test_pages_split_reruns_reuse_thumbnails_and_drop_stale_files(
    covers_coll, tmp_path, monkeypatch
):
    monkeypatch.setattr(report_module, "PER_PAGE", 16)
    out = tmp_path / "r"
    first = report(covers_coll, out=out, n_unique=5, max_grids=3, progress=False)
    assert first.pages == ["index.html", "page-2.html", "page-3.html"]
    per_page = [len(Page(out / p).sections) for p in first.pages]
    assert per_page == [16, 16, N_COVERS - 32]
    assert [s["id"] for s in _sections_in(out, first.pages)] == Collection(covers_coll).load().ids
    index_page = Page(out / "index.html")
    assert "page-2.html" in index_page.links and "page-3.html" in index_page.links
    where = {s["id"]: f"{p}#{s['anchor']}" for p in first.pages for s in Page(out / p).sections}
    for section in _sections_in(out, first.pages):
        for nb in section["neighbours"]:  # each neighbour links to its own section
            assert nb["links"] == [where[nb["id"]]]
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}

    ids = Collection(covers_coll).load().ids[:3]
    second = report(covers_coll, out=out, queries=ids, n_unique=5, max_grids=1, progress=False)
    assert second.pages == ["index.html"]
    assert not (out / "page-2.html").exists() and not (out / "page-3.html").exists()
    assert [s["id"] for s in Page(out / "index.html").sections] == ids
    assert len(list((out / "grids").glob("similar-*.webp"))) == 1
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "thumbs").iterdir()}
    assert kept and all(mtimes[name] == t for name, t in kept.items())  # not remade
    assert len(kept) < len(mtimes)  # thumbnails no page shows any more are gone


def _sections_in(out: Path, pages: list[str]) -> list[dict]:
    return [s for p in pages for s in Page(out / p).sections]


# queries ---------------------------------------------------------------------


def test_queries_file_restricts_the_queries(covers_coll, tmp_path, cli):
    ids = Collection(covers_coll).load().ids
    chosen = [ids[7], WEIRD, ids[0]]
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{chosen[0]}\n\n{chosen[1]}  \n{chosen[2]}\n{chosen[0]}\n", "utf-8")
    out = tmp_path / "r"
    proc = cli("report", covers_coll, "--out", out, "--queries", queries, "--json", "-q")
    result = json.loads(proc.stdout)
    assert result["queries"] == 3
    assert result["out"] == str(out)
    assert [s["id"] for s in Page(out / "index.html").sections] == chosen
    assert len(result["grids"]) == 3 + 1


def test_unknown_query_id_is_a_one_line_error(covers_coll, tmp_path, cli):
    queries = tmp_path / "queries.txt"
    queries.write_text("abzu-0\nno-such-game\n", "utf-8")
    proc = cli("report", covers_coll, "--out", tmp_path / "r", "--queries", queries, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bannermatch: error:")
    assert "'no-such-game'" in lines[0] and str(queries) in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "index.html").exists()


def test_query_ids_from_python_and_bad_arguments(covers_coll, tmp_path):
    ids = Collection(covers_coll).load().ids
    result = report(covers_coll, out=tmp_path, queries=[ids[3]], max_grids=0, progress=False)
    assert result.queries == 1 and [g for g in result.grids if "similar-" in g] == []
    with pytest.raises(BannermatchError, match="not in the collection"):
        report(covers_coll, out=tmp_path, queries=["nope"], progress=False)
    with pytest.raises(BannermatchError, match="not both"):
        report(covers_coll, out=tmp_path, queries=[ids[0]], queries_file="x", progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", "utf-8")
    with pytest.raises(BannermatchError, match="no ids"):
        report(covers_coll, out=tmp_path, queries_file=empty, progress=False)
    with pytest.raises(BannermatchError, match="cannot read"):
        report(covers_coll, out=tmp_path, queries_file=tmp_path / "absent.txt", progress=False)


def test_stored_query_set_is_the_default(covers_coll, tmp_path):
    ids = Collection(covers_coll).load().ids
    with Collection(covers_coll).catalog() as cat:
        cat.set_queries([ids[5], "not-indexed", ids[2]], "test", replace=True)
    try:
        result = report(covers_coll, out=tmp_path, max_grids=0, progress=False)
    finally:
        with Collection(covers_coll).catalog() as cat:
            cat.set_queries([], "test", replace=True)
    assert [s["id"] for s in Page(tmp_path / "index.html").sections] == [ids[5], ids[2]]
    assert result.skipped == ["not-indexed"]


# Steam, missing images, other sources ---------------------------------------------


def test_steam_ids_link_to_the_store(steam_coll, cli):
    proc = cli("report", steam_coll, "-q")  # default folder: COLLECTION/report
    out = steam_coll / "report"
    assert str(out / "index.html") in proc.stdout
    sections = {s["id"]: s for s in Page(out / "index.html").sections}
    assert sections["620"]["links"][0] == "https://store.steampowered.com/app/620/"
    for section in sections.values():
        for nb in section["neighbours"]:
            if nb["id"] in STEAM_IDS:
                assert nb["links"] == [f"https://store.steampowered.com/app/{nb['id']}/"]
            else:  # not a Steam id: a relative link to its own query section
                assert len(nb["links"]) == 1 and nb["links"][0].startswith("index.html#q-")
    for plain in ("notsteam", "0070", "4242"):  # no metadata says these are Steam apps
        assert not any("store.steampowered" in link for link in sections[plain]["links"])
    bb = (out / "similar.bbcode.txt").read_text("utf-8")
    # an image with no download URL is never given a guessed CDN URL: its thumbnail instead
    assert "[url=https://store.steampowered.com/app/1091500/][img]thumbs/1091500-" in bb
    assert "steamstatic" not in bb
    assert "[img]thumbs/notsteam-" in bb
    md = (out / "similar.md").read_text("utf-8")
    assert "](https://store.steampowered.com/app/730/)" in md
    assert "app/0070/" not in md + bb and "app/4242/" not in md + bb
    unique_page = Page(out / "unique.html")
    assert any(link.startswith("https://store.steampowered.com/app/") for link in unique_page.links)


def test_report_needs_match(tmp_path, covers_dir, model, cli):
    images = tmp_path / "images"
    images.mkdir()
    for path in _covers(covers_dir, 4, start=200):
        shutil.copy(path, images / path.name)
    coll = _build(images, tmp_path / "coll", model, do_match=False)
    proc = cli("report", coll, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bannermatch: error: ")
    assert f"run `bannermatch match {coll}`" in lines[0]
    assert not (coll / "report" / "index.html").exists()


def test_unreadable_images_get_a_grey_placeholder(tmp_path, covers_dir, model):
    coll = tmp_path / "coll"
    images = coll / "images"  # inside the collection: the catalogue stores relative sources
    images.mkdir(parents=True)
    paths = _covers(covers_dir, 6, start=400)
    for path in paths:
        shutil.copy(path, images / path.name)
    _build(images, coll, model)
    with Collection(coll).catalog() as cat:
        assert not Path(cat.get(paths[2].stem).source).is_absolute()
    gone, broken = paths[0].stem, paths[1].stem
    (images / paths[0].name).unlink()
    (images / paths[1].name).write_bytes(b"not an image any more")
    result = report(coll, progress=False)
    assert sorted(result.unreadable) == sorted([gone, broken])
    out = coll / "report"
    sections = {s["id"]: s for s in Page(out / "index.html").sections}
    assert set(sections) == {p.stem for p in paths}
    html_text = (out / "index.html").read_text("utf-8")
    assert html_text.count('src="thumbs/missing.webp"') == 2 + 2 * 5  # 2 queries + neighbours
    with Image.open(out / "thumbs" / "missing.webp") as im:
        r, g, b = np.asarray(im.convert("RGB"), float).reshape(-1, 3).mean(axis=0)
        assert abs(r - g) < 5 and abs(g - b) < 5 and 90 < r < 160
    assert "without a readable image" in result.summary()


def test_tar_shard_sources_and_fewer_than_ten_neighbours(tmp_path, covers_dir, model):
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for n, path in enumerate(_covers(covers_dir, 5, start=500)):
            tar.add(path, arcname=f"{n:04d}.jpg")
            caption = tmp_path / f"{n:04d}.txt"
            caption.write_text(f"game {n}", "utf-8")
            tar.add(caption, arcname=f"{n:04d}.txt")
    coll = _build(shard, tmp_path / "coll", model, k=3)
    result = report(coll, progress=False)
    assert result.unreadable == [] and result.neighbours == 3 and result.thumbnails == 5
    sections = Page(coll / "report" / "index.html").sections
    assert [len(s["neighbours"]) for s in sections] == [3] * 5
    tile_w, tile_h = report_module.TILE_WIDTH, report_module.TILE_HEIGHT
    cap, gap = report_module.CAPTION, report_module.GAP
    with Image.open(coll / "report" / result.grids[0]) as im:
        assert im.size == (6 * tile_w + 9 * gap, (tile_h + cap) + 2 * gap)  # one row
    assert "game 0" in (coll / "report" / "index.html").read_text("utf-8")


@pytest.fixture(scope="module")
def named_coll(tmp_path_factory, covers_dir: Path, model) -> Path:
    """Eight covers, two of them Steam apps (as `steam download` records them), every item
    with a catalogue name; built once, copied by the tests that write its report."""
    tmp_path = tmp_path_factory.mktemp("named")
    images = tmp_path / "images"
    images.mkdir()
    for n, path in enumerate(_covers(covers_dir, 8, start=500)):
        shutil.copy(path, images / (f"{STEAM_IDS[n]}.jpg" if n < 2 else path.name))
    coll = _build(images, tmp_path / "coll", model, k=5)
    with Collection(coll).catalog() as cat:
        cat.upsert(
            [
                replace(
                    it,
                    name=f"Title [{it.id}] & co",
                    meta=app_meta(it.id) if it.id in STEAM_IDS else it.meta,
                )
                for it in cat.items()
            ]
        )
    return coll


def test_base_url_makes_every_image_link_absolute_and_names_are_shown(tmp_path, named_coll, cli):
    coll = shutil.copytree(named_coll, tmp_path / "coll")
    base = "https://example.org/banners/report"
    proc = cli("report", coll, "--base-url", base + "/", "--json", "-q")
    result = json.loads(proc.stdout)
    out = coll / "report"
    assert result["base_url"] == base + "/"
    assert result["bytes"] == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    bb = (out / "similar.bbcode.txt").read_text("utf-8") + (out / "unique.bbcode.txt").read_text(
        "utf-8"
    )
    images = re.findall(r"\[img\](.*?)\[/img\]", bb)
    assert images and all(src.startswith(base + "/thumbs/") for src in images)
    assert "relative" not in bb.splitlines()[0]
    md = (out / "similar.md").read_text("utf-8")
    md_images = re.findall(r"\]\(([^)]*\.webp)\)", md)
    assert md_images and all(src.startswith(base + "/") for src in md_images)
    page = Page(out / "index.html")
    assert page.images and all(src.startswith(base + "/") for src in page.images)
    html_text = (out / "index.html").read_text("utf-8")
    assert "Title [" in html_text and "&amp; co" in html_text  # names, escaped
    assert "Title (620) &amp; co" not in html_text and "Title (620) & co" in bb  # BBCode: ()
    assert f'href="{base}/{result["map_image"]}"' in html_text
    with Image.open(out / result["map_image"]) as im:  # the map, drawn with thumbnails
        assert im.format == "WEBP"
        grey = np.asarray(im.convert("L"), float)
        # eight 40x60 thumbnails (2,400 px each) on the dark background
        assert (np.abs(grey - np.median(grey)) > 20).sum() > 8 * 1500
    # Steam store links for the Steam items only
    stores = set(re.findall(r"store\.steampowered\.com/app/([^/]+)/", bb + md + html_text))
    assert stores == set(STEAM_IDS[:2])


def test_without_base_url_the_shared_texts_say_their_links_are_relative(tmp_path, named_coll, cli):
    coll = shutil.copytree(named_coll, tmp_path / "coll")
    proc = cli("report", coll, "--no-map", "-q")
    assert re.search(r"total size [0-9.]+ MB; image links relative", proc.stdout)
    out = coll / "report"
    for name in ["similar.md", "unique.md", "similar.bbcode.txt", "unique.bbcode.txt"]:
        first = (out / name).read_text("utf-8").splitlines()
        assert any("relative" in line and "--base-url" in line for line in first[:3]), name
    assert "[img]thumbs/" in (out / "similar.bbcode.txt").read_text("utf-8")
    assert not list(out.glob("map.*"))
    bad = cli("report", coll, "--base-url", "example.org/x", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "--base-url" in bad.stderr


def test_each_thumbnail_is_written_once_and_shared(covers_report):
    out = Path(covers_report.out)
    srcs = [src for page in covers_report.pages for src in Page(out / page).images]
    srcs += Page(out / "unique.html").images
    files = {f"thumbs/{p.name}" for p in (out / "thumbs").iterdir()}
    assert set(srcs) == files  # every page points into the one set of thumbnails
    assert len(srcs) > 3 * len(files)  # and each is shown several times


@pytest.mark.slow
def test_the_635_covers_report_is_at_most_15_mb_with_their_titles(tmp_path, covers_dir):
    import csv

    coll = tmp_path / "coll"
    index(covers_dir / "images", coll, "effnet-lite0", progress=False)  # int8, as the CLI
    match(coll, k=10, progress=False)
    with open(covers_dir / "covers.tsv", encoding="utf-8") as fh:
        titles = {Path(r["file"]).stem: r["title"] for r in csv.DictReader(fh, delimiter="\t")}
    with Collection(coll).catalog() as cat:
        cat.upsert([replace(it, name=titles[it.id]) for it in cat.items() if it.id in titles])
    result = report(coll, base_url="https://example.org/covers/", progress=False)
    assert result.queries == 635 and result.thumbnails == 635
    assert result.bytes <= 15_000_000, result.bytes
    html_text = (Path(result.out) / "index.html").read_text("utf-8")
    assert "<b>60 Parsecs</b>" in html_text and "<b>A Hat in Time</b>" in html_text
