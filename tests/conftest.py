"""Shared fixtures: real data from ../shared/data, one loaded model, CLI runners."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import ROOT, SHARED_DATA
from support.cli import run_cli, run_main
from support.cores import pin_worker

# every test session exports its own ONNX model into a fresh cache (tests the export path)
_CACHE = Path(os.environ.setdefault("BANNERMATCH_CACHE", str(ROOT / ".pytest_cache" / "bm-cache")))


#: fixtures that mean a test runs the CLI, a server or a browser, builds a collection or
#: loads a real network
INTEGRATION = frozenset(
    {
        "cli",
        "cli_here",
        "tmp_path_factory",
        "page",
        "browser",
        "served",
        "client",
        "model",
        "tiny_clip",
        "hub_dir",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker on a core of its own (:func:`support.cores.pin_worker`)."""
    pin_worker()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` the tests whose fixtures run the CLI, a server or a browser, or
    build a collection (module fixtures do, through ``tmp_path_factory``); the others are
    the quick unit tests of ``scripts/test.sh --fast``. The files holding slow tests
    run first."""
    for item in items:
        if INTEGRATION & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    # the files holding slow tests first: xdist hands out files in this order (with
    # --no-loadscope-reorder, as scripts/test.sh runs it), and the longest ones started
    # last would leave one worker running alone at the end
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared test data), which is absent")
    return path


@pytest.fixture(scope="session")
def covers_dir() -> Path:
    """635 real 342x482 game covers; ``covers.tsv`` beside ``images/`` has same-game groups."""
    return _shared("covers")


@pytest.fixture(scope="session")
def igdb_dir() -> Path:
    return _shared("igdb_covers")


@pytest.fixture(scope="session")
def edge_cases_dir() -> Path:
    return _shared("edge_cases")


@pytest.fixture(scope="session")
def skimage_dir() -> Path:
    """The photos shipped inside scikit-image's wheel."""
    skimage = pytest.importorskip("skimage")
    return Path(skimage.__file__).parent / "data"


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> Path:
    """A small real collection to serve (``server_support.build_collection``), per module."""
    from support.servers import build_collection

    return build_collection(tmp_path_factory, covers_dir)


@pytest.fixture(scope="module")
def served(served_root: Path):  # type: ignore[no-untyped-def]
    """``served_root`` opened as the server opens it."""
    from bannermatch.present.server import ServedCollection

    return ServedCollection.open(served_root)


@pytest.fixture(scope="session")
def model():
    """The embedded default model on the default CPU engine (ONNX Runtime), loaded once."""
    from bannermatch.embed.models import create_model

    return create_model("effnet-lite0", device="cpu")


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def cli_here(capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """``run_cli`` in this process (``support.cli.run_main``): for tests that run many
    commands; ``cli`` runs one as a user does, in a process of its own."""
    return functools.partial(run_main, capsys=capsys)


#: a tiny open_clip architecture (random weights only): 64 px images, 32-d joint space
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The name of a tiny open_clip model registered for this test session (random weights)."""
    import json

    import open_clip

    path = tmp_path_factory.mktemp("open_clip") / "bm-tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return "open_clip:bm-tiny-clip/random"


HUBCONF = '''
dependencies = ["torch"]

import torch
from torch import nn


class Tiny(nn.Module):
    """A small CNN that returns one 24-d vector per image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, stride=2)

    def forward(self, x):
        return self.conv(x).relu().mean(dim=(2, 3))


def tiny(pretrained=True):
    model = Tiny()
    if pretrained:  # what a real entrypoint does: fixed weights from its release
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.linspace(-0.5, 0.5, p.numel()).reshape(p.shape))
    return model
'''


@pytest.fixture(scope="session")
def hub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local torch.hub folder: hubconf.py with the entrypoint ``tiny``."""
    folder = tmp_path_factory.mktemp("hub")
    (folder / "hubconf.py").write_text(HUBCONF)
    return folder
