"""``bannermatch report``: static HTML, Markdown and BBCode pages, and image grids.

For each query item (default: every item) the report shows its 10 nearest
neighbours from ``neighbors.npy`` in two rows of five, and a second page lists
the most unique items (ascending similarity to their first neighbour) beside
that neighbour. Layout of the report folder (default ``COLLECTION/report``)::

    index.html, page-2.html, ...   queries, PER_PAGE to a page
    unique.html                    the most unique items and their nearest neighbour
    similar.md, unique.md          the same as Markdown tables of five columns
    similar.bbcode.txt, unique.bbcode.txt   the same as BBCode, for forum posts
    thumbs/<slug>-<hash>.webp      small thumbnails (THUMB_HEIGHT px high), one per image,
                                   shared by every page and grid that shows it
    thumbs/missing.webp            grey placeholder for an image that is no longer readable
    grids/similar-<slug>-<hash>.webp query on the left, 2 x 5 neighbours (first max_grids queries)
    grids/unique.webp              the UNIQUE_GRID_LIMIT most unique items beside their neighbour
    map.webp                       the map of the collection (see :mod:`bannermatch.present.maps`)

Every image is WebP at :data:`QUALITY`, chosen by measurement (docs/performance.md,
"Report weight"): the PNG grids of the first version made the 635 covers' report
weigh 80 MB; JPEG at a quality that looks as good is 1.5-2x the size of WebP.

The report is self-contained: pages use relative links to its own thumbnails,
so the folder can be moved or uploaded as it is; ``base_url`` (``--base-url``) makes
every image link absolute instead (where the folder will be uploaded), which forums
need. Without it the Markdown and BBCode files say in their first line that their
image links are relative. File names are a readable
slug of the id plus a SHA-1 of it (and of the image's sha256 for thumbnails),
safe for any id (slashes, unicode, case-insensitive file systems), and a
thumbnail already made for the same image is reused on the next run. The
folder belongs to the report: a rerun removes the pages, thumbnails and grids
(in ``thumbs/`` and ``grids/``) that it no longer shows.

Steam: an item that is a Steam app (:func:`bannermatch.store.catalog.steam_appid`: from
``steam download`` or metadata that gives its app id) links to its store page; other
items get no store link. Forums only show images from absolute URLs: with
``base_url`` every thumbnail link is absolute; without it the BBCode pages use the URL
an item's banner was downloaded from (the store API's current asset URL) where there
is one, and the thumbnail's relative path otherwise. BBCode has no escape, so square
brackets in names become parentheses there.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bannermatch.acquire.steam.endpoints import store_page_url
from bannermatch.defaults import REPORT_MAX_GRIDS, REPORT_UNIQUE
from bannermatch.errors import BannermatchError, ImageError
from bannermatch.images import load_image
from bannermatch.present.templating import render
from bannermatch.progress import progress_bar
from bannermatch.query.match import shown_score, unique_order
from bannermatch.store import atomic
from bannermatch.store.catalog import Catalog, Item, steam_appid
from bannermatch.store.collection import Collection, ModelData
from bannermatch.tables import md_escape

NEIGHBOURS = 10  # shown per query: two rows of COLUMNS
COLUMNS = 5
PER_PAGE = 100  # queries per HTML page
THUMB_HEIGHT = 225
THUMB_MAX_WIDTH = 450  # very wide images are shrunk to this width instead
TILE_WIDTH, TILE_HEIGHT = 150, 225  # one image in a grid (2:3, like a Steam banner)
CAPTION = 30  # two lines of text under each tile
GAP = 8
UNIQUE_GRID_LIMIT = 100  # pairs in grids/unique.webp
UNIQUE_PAIRS_PER_ROW = 5
BACKGROUND = (24, 26, 31)
TEXT = (225, 225, 225)
DIM_TEXT = (150, 170, 150)
PLACEHOLDER = (128, 128, 128)
EXT = ".webp"
#: WebP quality chosen by measurement on the 635 covers (docs/performance.md)
QUALITY = 80
MISSING_THUMB = f"thumbs/missing{EXT}"
UNIQUE_GRID = f"grids/unique{EXT}"
MAP_IMAGE = f"map{EXT}"
PAGES = ["unique.html", "similar.md", "unique.md", "similar.bbcode.txt", "unique.bbcode.txt"]


def item_name(item: Item | None, item_id: str) -> str:
    """The name the report shows for an item: the catalogue's, else its id."""
    return item.name if item is not None and item.name else item_id


def safe_name(item_id: str, salt: str = "") -> str:
    """A file-name-safe, collision-free name for ``item_id``."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", item_id).strip("-")[:40].strip("-") or "item"
    digest = hashlib.sha1(f"{item_id}\0{salt}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


# what goes on the pages ----------------------------------------------------------


@dataclass
class Entry:
    """One item as shown in the report."""

    id: str
    name: str
    thumb: str  # path relative to the report folder
    score: float | None = None
    rank: int | None = None
    image_url: str | None = None  # where the image was downloaded from, if from the web
    appid: str | None = None  # the Steam app the item is (catalog.steam_appid), if any
    base_url: str = ""  # prefix of every image link ("" : relative links)

    @property
    def src(self) -> str:
        """The thumbnail's link as the pages write it."""
        return self.base_url + self.thumb

    @property
    def store(self) -> str | None:
        return store_page_url(self.appid) if self.appid else None


@dataclass
class QueryBlock:
    number: int  # from 1, in query order
    query: Entry
    neighbours: list[Entry]
    anchor: str  # the id of its section in the HTML page
    grid: str | None = None


@dataclass
class UniqueRow:
    item: Entry  # score: similarity to its nearest neighbour
    nearest: Entry


@dataclass
class ReportResult:
    collection: str
    out: str
    model_key: str
    queries: int
    neighbours: int
    unique: int
    pages: list[str]  # HTML pages of queries, relative to ``out``
    files: list[str]  # every page written, relative to ``out``
    grids: list[str]  # grids, relative to ``out``
    thumbnails: int
    bytes: int = 0  # every file of the report folder
    base_url: str | None = None
    map_image: str | None = None
    unreadable: list[str] = field(default_factory=list)  # ids shown with a placeholder
    skipped: list[str] = field(default_factory=list)  # stored query ids without an embedding
    seconds: float = 0.0

    @property
    def index(self) -> str:
        return str(Path(self.out) / "index.html")

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "out": self.out,
            "index": self.index,
            "model_key": self.model_key,
            "queries": self.queries,
            "neighbours": self.neighbours,
            "unique": self.unique,
            "pages": self.pages,
            "files": self.files,
            "grids": self.grids,
            "thumbnails": self.thumbnails,
            "bytes": self.bytes,
            "base_url": self.base_url,
            "map_image": self.map_image,
            "unreadable": self.unreadable,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        lines = [
            f"report of {self.queries} quer{'y' if self.queries == 1 else 'ies'} "
            f"({self.neighbours} neighbours each) and the {self.unique} most unique items: "
            f"{self.index}",
            f"{len(self.pages)} HTML page(s) of queries + unique.html; Markdown: similar.md, "
            "unique.md; BBCode: similar.bbcode.txt, unique.bbcode.txt",
            f"{len(self.grids)} grid image(s) in {Path(self.out) / 'grids'}; "
            f"{self.thumbnails} thumbnail(s); done in {self.seconds:.1f}s",
            f"total size {self.bytes / 1e6:.1f} MB; image links "
            + (f"absolute under {self.base_url}" if self.base_url else "relative (--base-url)"),
        ]
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} id(s) of the stored query set have no embedding: "
                + ", ".join(self.skipped[:5])
                + (" ..." if len(self.skipped) > 5 else "")
            )
        if self.unreadable:
            lines.append(
                f"{len(self.unreadable)} item(s) without a readable image, shown grey: "
                + ", ".join(self.unreadable[:5])
                + (" ..." if len(self.unreadable) > 5 else "")
            )
        return "\n".join(lines)


# the report ------------------------------------------------------------------


def report(
    collection: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    queries: Sequence[str] | None = None,
    queries_file: str | os.PathLike[str] | None = None,
    n_unique: int = REPORT_UNIQUE,
    max_grids: int = REPORT_MAX_GRIDS,
    model: str | None = None,
    base_url: str | None = None,
    with_map: bool = True,
    progress: bool = True,
) -> ReportResult:
    """Write the report of ``collection`` into ``out`` (default ``COLLECTION/report``).

    The query items are ``queries`` (ids) or the ids of ``queries_file`` (one a
    line); else the query set stored in the catalogue, if any; else every item.
    Needs ``bannermatch match`` to have been run. ``base_url``: where the folder will
    be uploaded; every image link of every page then starts with it. ``with_map``: draw
    ``map.webp``, the map of the collection (computed and stored where absent).
    """
    started = time.perf_counter()
    base = check_base_url(base_url)
    _check_counts(n_unique, max_grids, queries, queries_file)
    coll = Collection(collection)
    data = coll.load(model)
    with coll.catalog() as cat:
        picked = _select(data, cat, queries, queries_file, n_unique)
    out_dir = Path(out) if out is not None else coll.root / "report"
    for folder in (out_dir, out_dir / "thumbs", out_dir / "grids"):
        folder.mkdir(parents=True, exist_ok=True)
    thumbs, unreadable = _make_thumbnails(coll, picked.items, out_dir, progress)
    entries = _Entries(data, picked, thumbs, base, max_grids)
    uniques = entries.uniques()
    n_queries = len(picked.query_rows)
    grids = _make_grids(
        list(entries.blocks(0, min(max_grids, n_queries))), uniques, out_dir, progress
    )
    map_image = _draw_map(data, out_dir, thumbs) if with_map else None
    title = f"{coll.root.resolve().name} [{data.key}]"
    pages = _write_pages(out_dir, title, entries, uniques, base, map_image)
    files = [*pages, *PAGES]
    _remove_stale(out_dir, set(files), set(thumbs.values()), set(grids) | {map_image or ""})
    return ReportResult(
        collection=str(coll.root),
        out=str(out_dir),
        model_key=data.key,
        queries=n_queries,
        neighbours=picked.k,
        unique=len(uniques),
        pages=pages,
        files=files,
        grids=grids,
        thumbnails=len(set(thumbs.values())),
        bytes=folder_bytes(out_dir),
        base_url=base or None,
        map_image=map_image,
        unreadable=unreadable,
        skipped=picked.skipped,
        seconds=time.perf_counter() - started,
    )


def _check_counts(n_unique: int, max_grids: int, queries: object, queries_file: object) -> None:
    if n_unique < 0:
        raise BannermatchError("n_unique must be 0 or more")
    if max_grids < 0:
        raise BannermatchError("max_grids must be 0 or more")
    if queries is not None and queries_file is not None:
        raise BannermatchError("give query ids or a queries file, not both")


@dataclass
class _Selection:
    """The rows the report shows: queries and their neighbours, the unique items and
    their nearest ones, and the catalogue rows of all of them."""

    k: int
    query_rows: np.ndarray
    nb_rows: np.ndarray
    nb_scores: np.ndarray
    unique_rows: np.ndarray
    first_rows: np.ndarray
    first_scores: np.ndarray
    items: dict[str, Item | None]
    skipped: list[str]


def _select(
    data: ModelData,
    cat: Catalog,
    queries: Sequence[str] | None,
    queries_file: str | os.PathLike[str] | None,
    n_unique: int,
) -> _Selection:
    nb, sc = data.neighbors()
    if nb.shape[1] == 0:
        raise BannermatchError("the collection has a single item: nothing to compare")
    k = min(NEIGHBOURS, nb.shape[1])
    skipped: list[str] = []
    if queries_file is not None:
        query_rows = _rows_of(read_queries(queries_file), data.row_of, cat, str(queries_file))
    elif queries is not None:
        query_rows = _rows_of(list(dict.fromkeys(queries)), data.row_of, cat, "the queries")
    elif stored := cat.queries():  # the collection's query set, where one was stored
        skipped = [i for i in stored if i not in data.row_of]
        query_rows = np.asarray([data.row_of[i] for i in stored if i in data.row_of], np.int64)
    else:
        query_rows = np.arange(len(data.ids), dtype=np.int64)
    nb_rows = np.asarray(nb[query_rows, :k], np.int64)
    unique_rows = unique_order(sc)[:n_unique]
    first_rows = np.asarray(nb[unique_rows, 0], np.int64)
    shown = np.unique(np.concatenate([query_rows, nb_rows.ravel(), unique_rows, first_rows]))
    return _Selection(
        k=k,
        query_rows=query_rows,
        nb_rows=nb_rows,
        nb_scores=np.asarray(sc[query_rows, :k], np.float32),
        unique_rows=unique_rows,
        first_rows=first_rows,
        first_scores=np.asarray(sc[unique_rows, 0], np.float32),
        items=_catalog_items(cat, [data.ids[r] for r in shown.tolist()]),
        skipped=skipped,
    )


@dataclass
class _Entries:
    """Report entries of rows, built on demand to keep memory small."""

    data: ModelData
    picked: _Selection
    thumbs: dict[str, str]
    base: str
    max_grids: int

    def entry(self, row: int, score: float | None = None, rank: int | None = None) -> Entry:
        item_id = self.data.ids[row]
        item = self.picked.items[item_id]
        web = item is not None and (item.url or "").startswith(("http://", "https://"))
        url = item.url if web and item is not None else None
        appid = steam_appid(item) if item is not None else None
        name = item_name(item, item_id)
        return Entry(item_id, name, self.thumbs[item_id], score, rank, url, appid, self.base)

    def block(self, n: int) -> QueryBlock:
        """The ``n``-th query (from 0) with its neighbours."""
        p = self.picked
        query = self.entry(int(p.query_rows[n]))
        neighbours = [
            self.entry(int(r), shown_score(s), rank)
            for rank, (r, s) in enumerate(zip(p.nb_rows[n], p.nb_scores[n], strict=True), 1)
        ]
        grid = f"grids/similar-{safe_name(query.id)}{EXT}" if n < self.max_grids else None
        return QueryBlock(n + 1, query, neighbours, _anchor(query.id), grid)

    def blocks(self, start: int = 0, stop: int | None = None) -> Iterator[QueryBlock]:
        stop = len(self.picked.query_rows) if stop is None else stop
        return (self.block(n) for n in range(start, stop))

    def uniques(self) -> list[UniqueRow]:
        p = self.picked
        rows = zip(p.unique_rows, p.first_rows, p.first_scores, strict=True)
        return [
            UniqueRow(self.entry(int(r), shown_score(s), rank), self.entry(int(f), shown_score(s)))
            for rank, (r, f, s) in enumerate(rows, start=1)
        ]

    def anchors(self) -> dict[str, str]:
        """Where each query's section is, for links from its appearances elsewhere."""
        ids = self.data.ids
        return {
            ids[row]: f"{page_file(n // PER_PAGE)}#{_anchor(ids[row])}"
            for n, row in enumerate(self.picked.query_rows.tolist())
        }


def _write_pages(
    out_dir: Path,
    title: str,
    entries: _Entries,
    uniques: list[UniqueRow],
    base: str,
    map_image: str | None,
) -> list[str]:
    """The HTML pages, Markdown and BBCode files; the names of the similar pages."""
    total = len(entries.picked.query_rows)
    pages = [page_file(p) for p in range(max(1, math.ceil(total / PER_PAGE)))]
    anchors = entries.anchors()
    for p, page in enumerate(pages):
        chunk = list(entries.blocks(p * PER_PAGE, min(total, (p + 1) * PER_PAGE)))
        html_page = similar_html(title, chunk, anchors, pages, p, total, base, map_image)
        atomic.write_text(out_dir / page, html_page)
    atomic.write_text(out_dir / "unique.html", unique_html(title, uniques, anchors, base))
    _write_chunks(out_dir / "similar.md", similar_markdown(title, entries.blocks(), base))
    _write_chunks(out_dir / "unique.md", unique_markdown(title, uniques, base))
    _write_chunks(out_dir / "similar.bbcode.txt", similar_bbcode(entries.blocks(), base))
    _write_chunks(out_dir / "unique.bbcode.txt", unique_bbcode(uniques, base))
    return pages


def _make_thumbnails(
    coll: Collection, items: dict[str, Item | None], out_dir: Path, progress: bool
) -> tuple[dict[str, str], list[str]]:
    """Each item's thumbnail path (made where absent), and the items without an image."""
    thumbs: dict[str, str] = {}
    todo: list[tuple[str, str | None, Path]] = []
    for item_id, item in items.items():
        rel = f"thumbs/{safe_name(item_id, (item.sha256 or '') if item else '')}{EXT}"
        thumbs[item_id] = rel
        if not (out_dir / rel).exists():
            source = coll.resolve_source(item.source) if item and item.source else None
            todo.append((item_id, source, out_dir / rel))
    unreadable: list[str] = []
    bar = progress_bar(len(todo), "thumbnails", enabled=progress)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        made = pool.map(lambda job: make_thumbnail(job[1], job[2]), todo)
        for (item_id, _, _), ok in zip(todo, made, strict=True):
            if not ok:
                unreadable.append(item_id)
                thumbs[item_id] = MISSING_THUMB
            bar.update()
    bar.close()
    if unreadable:
        _write_placeholder(out_dir / MISSING_THUMB)
    return thumbs, unreadable


def _make_grids(
    blocks: list[QueryBlock], uniques: list[UniqueRow], out_dir: Path, progress: bool
) -> list[str]:
    """Write the grids of ``blocks`` and of the unique items; their paths."""
    jobs: list[tuple[str, Callable[[], Image.Image]]] = [
        (b.grid, functools.partial(similar_grid, b, out_dir)) for b in blocks if b.grid
    ]
    if uniques:
        make_unique = functools.partial(unique_grid, uniques[:UNIQUE_GRID_LIMIT], out_dir)
        jobs.append((UNIQUE_GRID, make_unique))
    bar = progress_bar(len(jobs), "grids", enabled=progress, unit="grid")
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for _ in pool.map(lambda job: save_image(job[1](), out_dir / job[0]), jobs):
            bar.update()
    bar.close()
    return [path for path, _ in jobs]


def check_base_url(base_url: str | None) -> str:
    """``base_url`` ending in one slash ("" for none); an error unless it is http(s)."""
    if base_url is None:
        return ""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise BannermatchError(
            f"--base-url must be an absolute http(s) URL without query or fragment, "
            f"not {base_url!r}"
        )
    return base_url.rstrip("/") + "/"


def folder_bytes(folder: Path) -> int:
    """The size of every file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _draw_map(data: ModelData, out_dir: Path, thumbs: dict[str, str]) -> str | None:
    """Draw the map image from the stored map (computed where absent); its path."""
    from bannermatch.present.maps import collection_map, draw_map

    if len(data.ids) < 2:
        return None
    points = collection_map(data)
    image = draw_map(points, data.ids, lambda i: out_dir / thumbs[i] if i in thumbs else None)
    save_image(image, out_dir / MAP_IMAGE)
    return MAP_IMAGE


def _write_chunks(path: Path, chunks: Iterable[str]) -> None:
    with atomic.atomic_open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk.encode("utf-8"))


def _workers() -> int:
    return min(8, os.cpu_count() or 1)


def _anchor(item_id: str) -> str:
    return "q-" + safe_name(item_id)


def page_file(page: int) -> str:
    return "index.html" if page == 0 else f"page-{page + 1}.html"


def read_queries(path: str | os.PathLike[str]) -> list[str]:
    """Ids from a file, one a line; blank lines are skipped, repeats kept once."""
    try:
        text = Path(path).read_text("utf-8-sig")
    except OSError as exc:
        raise BannermatchError(f"cannot read queries file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BannermatchError(f"queries file {path} is not UTF-8 text") from None
    ids = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not ids:
        raise BannermatchError(f"queries file {path} lists no ids")
    return ids


def _rows_of(ids: list[str], row_of: dict[str, int], cat: Catalog, origin: str) -> np.ndarray:
    unknown = [i for i in ids if i not in row_of]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        not_embedded = [i for i in unknown if cat.get(i) is not None]
        why = (
            f" ({len(not_embedded)} of them catalogued but without an embedding)"
            if not_embedded
            else ""
        )
        raise BannermatchError(
            f"{len(unknown)} id(s) in {origin} are not in the collection{why}: {shown}"
        )
    return np.asarray([row_of[i] for i in ids], np.int64)


def _catalog_items(cat: Catalog, ids: list[str]) -> dict[str, Item | None]:
    if len(ids) > 1000:
        wanted = set(ids)
        found = {it.id: it for it in cat.items() if it.id in wanted}
        return {i: found.get(i) for i in ids}
    return {i: cat.get(i) for i in ids}


# images ----------------------------------------------------------------------


def make_thumbnail(source: str | None, path: Path) -> bool:
    """Write a thumbnail of ``source`` to ``path``; False if it cannot be read."""
    if not source:
        return False
    size = (THUMB_MAX_WIDTH, THUMB_HEIGHT)
    try:
        im = load_image(source, draft_size=size).image
        im.thumbnail(size, Image.Resampling.LANCZOS)
    except (ImageError, OSError, ValueError):
        return False
    save_image(im.convert("RGB"), path)
    return True


def _write_placeholder(path: Path) -> None:
    im = Image.new("RGB", (TILE_WIDTH, TILE_HEIGHT), PLACEHOLDER)
    draw = ImageDraw.Draw(im)
    draw.text((TILE_WIDTH / 2, TILE_HEIGHT / 2), "no image", fill=TEXT, font=_font(), anchor="mm")
    save_image(im, path)


_fonts = threading.local()  # one font per thread: a FreeType face is not thread-safe


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if not hasattr(_fonts, "font"):
        try:
            _fonts.font = ImageFont.load_default(size=11)
        except (OSError, ImportError):  # Pillow built without FreeType: the bitmap font
            _fonts.font = ImageFont.load_default()
    return _fonts.font


def _fit(text: str, font: Any, width: int) -> str:
    text = " ".join(text.split())
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _tile(canvas: Image.Image, out_dir: Path, entry: Entry, xy: tuple[int, int], top: str) -> None:
    """Paste ``entry``'s thumbnail at ``xy`` with a caption: ``top``, then the name."""
    x, y = xy
    try:
        with Image.open(out_dir / entry.thumb) as im:
            small = ImageOps.contain(im.convert("RGB"), (TILE_WIDTH, TILE_HEIGHT))
    except OSError:
        small = Image.new("RGB", (TILE_WIDTH, TILE_HEIGHT), PLACEHOLDER)
    canvas.paste(
        small, (x + (TILE_WIDTH - small.width) // 2, y + (TILE_HEIGHT - small.height) // 2)
    )
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((x, y + TILE_HEIGHT + 2), _fit(top, font, TILE_WIDTH), fill=DIM_TEXT, font=font)
    draw.text((x, y + TILE_HEIGHT + 15), _fit(entry.name, font, TILE_WIDTH), fill=TEXT, font=font)


def similar_grid_size(n_neighbours: int) -> tuple[int, int]:
    rows = max(1, math.ceil(n_neighbours / COLUMNS))
    width = GAP + TILE_WIDTH + 3 * GAP + COLUMNS * TILE_WIDTH + (COLUMNS - 1) * GAP + GAP
    return width, rows * (TILE_HEIGHT + CAPTION) + (rows + 1) * GAP


def similar_grid(block: QueryBlock, out_dir: Path) -> Image.Image:
    """The query on the left, its neighbours in rows of five with rank and score."""
    canvas = Image.new("RGB", similar_grid_size(len(block.neighbours)), BACKGROUND)
    _tile(canvas, out_dir, block.query, (GAP, GAP), "query")
    left = GAP + TILE_WIDTH + 3 * GAP
    for i, nb in enumerate(block.neighbours):
        row, col = divmod(i, COLUMNS)
        xy = (left + col * (TILE_WIDTH + GAP), GAP + row * (TILE_HEIGHT + CAPTION + GAP))
        _tile(canvas, out_dir, nb, xy, f"#{nb.rank}: {nb.score:.3f}")
    return canvas


def unique_grid_size(n_items: int) -> tuple[int, int]:
    per_row = min(UNIQUE_PAIRS_PER_ROW, max(1, n_items))
    rows = max(1, math.ceil(n_items / per_row))
    pair = 2 * TILE_WIDTH + GAP
    width = GAP + per_row * pair + (per_row - 1) * 3 * GAP + GAP
    return width, rows * (TILE_HEIGHT + CAPTION) + (rows + 1) * GAP


def unique_grid(rows: list[UniqueRow], out_dir: Path) -> Image.Image:
    """Pairs (unique item, its nearest neighbour), most unique first, five pairs a row."""
    canvas = Image.new("RGB", unique_grid_size(len(rows)), BACKGROUND)
    per_row = min(UNIQUE_PAIRS_PER_ROW, len(rows))
    for i, pair in enumerate(rows):
        r, c = divmod(i, per_row)
        x = GAP + c * (2 * TILE_WIDTH + GAP + 3 * GAP)
        y = GAP + r * (TILE_HEIGHT + CAPTION + GAP)
        _tile(canvas, out_dir, pair.item, (x, y), f"#{pair.item.rank}")
        _tile(
            canvas,
            out_dir,
            pair.nearest,
            (x + TILE_WIDTH + GAP, y),
            f"nearest: {pair.item.score:.3f}",
        )
    return canvas


def save_image(im: Image.Image, path: Path) -> None:
    """Every image of the report: WebP at :data:`QUALITY`, written atomically."""
    with atomic.atomic_open(path, "wb") as fh:
        im.save(fh, format="WEBP", quality=QUALITY, method=4)


def _remove_stale(out_dir: Path, pages: set[str], thumbs: set[str], grids: set[str]) -> None:
    """Drop what an earlier, larger report left behind in the folders this module owns."""
    for path in out_dir.glob("page-*.html"):
        if re.fullmatch(r"page-[0-9]+\.html", path.name) and path.name not in pages:
            path.unlink(missing_ok=True)
    for path in (out_dir / "thumbs").glob("*.*"):
        if path.suffix in (".jpg", EXT) and f"thumbs/{path.name}" not in thumbs:
            path.unlink(missing_ok=True)
    for path in (out_dir / "grids").glob("*.*"):
        if path.suffix in (".png", ".jpg", EXT) and f"grids/{path.name}" not in grids:
            path.unlink(missing_ok=True)
    for path in out_dir.glob("map.*"):
        if path.name not in grids:
            path.unlink(missing_ok=True)


# HTML (Jinja2 templates: templates/report_*.html) -------------------------------


def _href(entry: Entry, anchors: dict[str, str]) -> str | None:
    return entry.store or anchors.get(entry.id)


def _nav(
    pages: list[str], current: int | None, map_link: str | None = None
) -> list[dict[str, str | None]]:
    """The links between pages: previous, numbers (with gaps), next, the other pages.
    ``text`` is trusted markup (entities); hrefs are escaped by the template."""
    links: list[dict[str, str | None]] = []
    if current is not None and current > 0:
        links.append({"href": pages[current - 1], "text": "&laquo; previous", "rel": "prev"})
    shown = {0, len(pages) - 1}
    if current is not None:
        shown |= set(range(max(0, current - 3), min(len(pages), current + 4)))
    last = -1
    for p in sorted(shown):
        if p > last + 1:
            links.append({"href": None, "text": "&hellip;", "rel": None})
        links.append({"href": None if p == current else pages[p], "text": str(p + 1), "rel": None})
        last = p
    if current is not None and current < len(pages) - 1:
        links.append({"href": pages[current + 1], "text": "next &raquo;", "rel": "next"})
    links.append({"href": "unique.html", "text": "most unique", "rel": None})
    if map_link:
        links.append({"href": map_link, "text": "map", "rel": None})
    links.append({"href": "similar.md", "text": "Markdown", "rel": None})
    links.append({"href": "similar.bbcode.txt", "text": "BBCode", "rel": None})
    return links


def similar_html(
    title: str,
    blocks: list[QueryBlock],
    anchors: dict[str, str],
    pages: list[str],
    current: int,
    total: int,
    base: str = "",
    map_image: str | None = None,
) -> str:
    """One page of queries, each with its neighbours in two rows of five."""
    first = current * PER_PAGE
    return render(
        "report_similar.html",
        title=f"Similar images: {title}",
        links=_nav(pages, current, base + map_image if map_image else None),
        blocks=blocks,
        first=first + 1 if blocks else 0,
        last=first + len(blocks),
        total=total,
        base=base,
        href_of=lambda entry: _href(entry, anchors),
    )


def unique_html(title: str, rows: list[UniqueRow], anchors: dict[str, str], base: str = "") -> str:
    """The most unique items, each beside its nearest neighbour."""
    return render(
        "report_unique.html",
        title=f"Most unique images: {title}",
        links=_nav(["index.html"], None),
        rows=rows,
        unique_grid=base + UNIQUE_GRID,
        href_of=lambda entry: _href(entry, anchors),
    )


# Markdown --------------------------------------------------------------------


def _md_image(entry: Entry) -> str:
    image = f"![{md_escape(entry.name)}]({entry.src})"
    return f"[{image}]({entry.store})" if entry.store else image


def _md_title(entry: Entry) -> str:
    name = md_escape(entry.name)
    return f"[{name}]({entry.store})" if entry.store else name


def _md_table(cells: list[str]) -> list[str]:
    rows = [cells[i : i + COLUMNS] for i in range(0, len(cells), COLUMNS)]
    width = len(rows[0]) if rows else 0
    lines = []
    for n, row in enumerate(rows):
        row = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(row) + " |")
        if n == 0:
            lines.append("|" + "|".join([":-:"] * width) + "|")
    return lines


RELATIVE_NOTE = (
    "Image links are relative to the report folder; "
    "run `bannermatch report --base-url URL` to make them absolute for posting."
)


def similar_markdown(title: str, blocks: Iterable[QueryBlock], base: str = "") -> Iterator[str]:
    """The queries as Markdown, one chunk a query: tables of five columns, two rows."""
    note = "" if base else f"> {RELATIVE_NOTE}\n\n"
    yield f"# Similar images: {md_escape(title)}\n\n{note}"
    for block in blocks:
        q = block.query
        ident = "" if q.name == q.id else f" (`{q.id.replace('`', '')}`)"
        cells = [
            f"{_md_image(nb)}<br>{nb.rank}. {md_escape(nb.name)} ({nb.score:.3f})"
            for nb in block.neighbours
        ]
        lines = [f"## {block.number}. {_md_title(q)}{ident}", "", _md_image(q), ""]
        yield "\n".join([*lines, *_md_table(cells), "", ""])


def unique_markdown(title: str, rows: list[UniqueRow], base: str = "") -> Iterator[str]:
    note = "" if base else f"> {RELATIVE_NOTE}\n\n"
    yield (
        f"# Most unique images: {md_escape(title)}\n\n{note}"
        "| # | item | nearest neighbour | similarity |\n|--:|:-:|:-:|--:|\n"
    )
    for row in rows:
        it, nb = row.item, row.nearest
        yield (
            f"| {it.rank} | {_md_image(it)}<br>{_md_title(it)} | "
            f"{_md_image(nb)}<br>{_md_title(nb)} | {it.score:.3f} |\n"
        )


# BBCode ----------------------------------------------------------------------


def bb_escape(text: str) -> str:
    return " ".join(text.split()).replace("[", "(").replace("]", ")")


def _bb_image(entry: Entry) -> str:
    """The thumbnail (absolute with a base URL; else the banner's download URL where it
    has one, the relative path otherwise), linked to the store for Steam apps."""
    src = entry.src if entry.base_url else (entry.image_url or entry.thumb)
    image = f"[img]{src}[/img]"
    return f"[url={entry.store}]{image}[/url]" if entry.store else image


def _bb_title(entry: Entry) -> str:
    name = bb_escape(entry.name)
    return f"[url={entry.store}]{name}[/url]" if entry.store else name


def similar_bbcode(blocks: Iterable[QueryBlock], base: str = "") -> Iterator[str]:
    """The queries as BBCode, one chunk a query: the query, then rows of five images."""
    if not base:
        yield f"{RELATIVE_NOTE}\n\n"
    for block in blocks:
        q = block.query
        ident = "" if q.name == q.id else f" ({bb_escape(q.id)})"
        lines = [f"[b]{block.number}. {_bb_title(q)}[/b]{ident}", _bb_image(q), ""]
        for start in range(0, len(block.neighbours), COLUMNS):
            row = block.neighbours[start : start + COLUMNS]
            lines.append(" ".join(_bb_image(nb) for nb in row))
        lines.append(
            " | ".join(f"{nb.rank}. {_bb_title(nb)} ({nb.score:.3f})" for nb in block.neighbours)
        )
        yield "\n".join(lines) + "\n\n"


def unique_bbcode(rows: list[UniqueRow], base: str = "") -> Iterator[str]:
    if not base:
        yield f"{RELATIVE_NOTE}\n\n"
    for row in rows:
        yield (
            f"[b]{row.item.rank}. {_bb_title(row.item)}[/b] - nearest: {_bb_title(row.nearest)} "
            f"({row.item.score:.3f})\n{_bb_image(row.item)} {_bb_image(row.nearest)}\n\n"
        )
