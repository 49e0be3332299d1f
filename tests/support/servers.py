"""A small real collection for the server tests, built once per test session."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

#: covers renamed to Steam appIDs, with the names the catalogue gives them
STEAM = {"620": "Portal 2", "400": "Portal", "570": "Dota 2", "1145360": "Hades"}
#: a cover copied into a subfolder under a stem that is taken: its id contains a slash
NESTED_ID = "extra/abzu-0"
N_COVERS = 40
K = 10

_built: dict[str, Path] = {}


def build_collection(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> Path:
    """~45 real covers, indexed and matched (k=10), with names and a query set."""
    if "root" in _built:
        return _built["root"]
    from bannermatch.embed.index import index
    from bannermatch.query.match import match
    from bannermatch.store.catalog import app_meta
    from bannermatch.store.collection import Collection

    base = tmp_path_factory.mktemp("server")
    images = base / "images-in"
    images.mkdir()
    covers = sorted((covers_dir / "images").glob("*.jpg"))
    picked = covers[:N_COVERS]
    for src in picked:
        shutil.copy(src, images / src.name)
    for steam_id, src in zip(STEAM, covers[N_COVERS : N_COVERS + len(STEAM)], strict=True):
        shutil.copy(src, images / f"{steam_id}.jpg")
    (images / "extra").mkdir()
    shutil.copy(covers_dir / "images" / "abzu-0.jpg", images / "extra" / "abzu-0.jpg")
    root = base / "coll"
    index(images, root, progress=False)
    match(root, k=K, progress=False)
    with Collection(root).catalog() as cat:
        renamed = []
        for item in cat.items():
            if item.id in STEAM:  # Steam apps, as `steam download` would have recorded them
                item.name, item.meta = STEAM[item.id], app_meta(item.id)
            elif "/" not in item.id:  # "a-hat-in-time-0" -> "A Hat In Time 0"
                item.name = item.id.replace("-", " ").title()
            renamed.append(item)
        cat.upsert(renamed)
        cat.set_queries(["620", "570", "abzu-0"], "test", replace=True)
    _built["root"] = root
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(base: str, alive: Callable[[], bool], seconds: float) -> None:
    """Wait until ``base/api/info`` answers 200; fail once ``alive()`` is false (the
    server died) or after ``seconds``."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/api/info", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"the server at {base} did not start")
        time.sleep(0.05)


@contextmanager
def running_server(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base, thread.is_alive, 30)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def with_title(image: Image.Image, title: str) -> Image.Image:
    """``image`` with ``title`` pasted on in large white letters with a dark outline."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(24, out.width // 9))
    draw.text(
        (out.width // 12, out.height // 14),
        title,
        fill=(250, 250, 250),
        font=font,
        stroke_width=3,
        stroke_fill=(10, 10, 10),
    )
    return out


#: id -> (photo, title): the same art under two titles, and one title on two paintings
TITLED = {
    "a-starfall": ("astronaut.png", "STARFALL"),
    "a-moonrise": ("astronaut.png", "MOONRISE"),
    "b-starfall": ("rocket.jpg", "STARFALL"),
    "coffee": ("coffee.png", "HARVEST"),
    "chelsea": ("chelsea.png", "WHISKERS"),
}


def build_titled_collection(base: Path, skimage_dir: Path, *index_args: str) -> Path:
    """Five photos with titles pasted on (:data:`TITLED`), indexed with --ocr (and
    ``index_args``) and matched: ``base/in`` the images, ``base/coll`` the collection."""
    from PIL import Image

    from support.cli import run_cli

    folder = base / "in"
    folder.mkdir()
    for item_id, (photo, title) in TITLED.items():
        art = Image.open(skimage_dir / photo).convert("RGB").resize((342, 482))
        with_title(art, title).save(folder / f"{item_id}.png")
    root = base / "coll"
    run_cli("index", folder, "--out", root, "--ocr", "-q", *index_args)
    run_cli("match", root, "-k", "4", "-q")
    return root
