"""Shared fixtures: real data from ../shared/data, one loaded model, CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# every test session exports its own ONNX model into a fresh cache (tests the export path)
_CACHE = Path(os.environ.setdefault("BANNERMATCH_CACHE", str(ROOT / ".pytest_cache" / "bm-cache")))


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


@pytest.fixture(scope="session")
def model():
    """The embedded default model on the default CPU engine (ONNX Runtime), loaded once."""
    from bannermatch.models import create_model

    return create_model("effnet-lite0")


def run_cli(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``bannermatch ARGS`` in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "bannermatch.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"bannermatch {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli
