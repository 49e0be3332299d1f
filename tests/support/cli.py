"""Running ``bannermatch`` as a user does (a subprocess), and checks of its results."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bannermatch.cli import main


def assert_pillow_close(
    got: np.ndarray, want: np.ndarray, level: float = 1.0, msg: str = ""
) -> None:
    """``got`` holds Pillow's resampled pixels ``want`` as bannermatch resamples bilinear
    and bicubic (PyTorch's antialiased kernels, Pillow's fixed-point filters vectorised):
    every value within 2 levels, and fewer than 1 in 100 off at all. ``level`` is one
    8-bit level in the arrays' units (``1 / (255 * std)`` once normalised)."""
    assert got.shape == want.shape, msg
    off = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert off.max() <= 2 * level * (1 + 1e-5), f"{msg}: {off.max() / level:.2f} levels off"
    assert (off > level / 2).mean() < 0.01, f"{msg}: {(off > level / 2).mean():.2%} off"


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


def run_main(
    *args: str, capsys: pytest.CaptureFixture[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``bannermatch ARGS`` in this process: the CLI's ``main()``, which the console
    script and ``python -m bannermatch.cli`` call; its exit status and output as
    :func:`run_cli` gives them. For a test that runs many commands with the environment
    of the tests: it saves each command a process start, its imports and its model load."""
    capsys.readouterr()  # what came before is not this command's
    logger = logging.getLogger("bannermatch")
    saved = logger.level, logger.propagate, list(logger.handlers)
    for handler in saved[2]:  # the CLI's, left by a main() run before: to this stderr
        if getattr(handler, "bannermatch_cli", False):
            handler.stream = sys.stderr  # (setStream would flush the old, closed one)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse refuses an option
        code = exc.code if isinstance(exc.code, int) else 1
    finally:  # the logging set-up main() made is undone, as at a process's end
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]
    out, err = capsys.readouterr()
    proc = subprocess.CompletedProcess(["bannermatch", *map(str, args)], code, out, err)
    if check and code != 0:
        raise AssertionError(
            f"bannermatch {' '.join(map(str, args))} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
        )
    return proc


def signal_after_chunks(
    *args: str, chunks: Path, n: int, sig: int, seconds: float = 120
) -> tuple[int, str]:
    """Run ``bannermatch ARGS`` in a subprocess and send it ``sig`` once the folder
    ``chunks`` holds ``n`` chunk files: its exit status and stderr.

    A SIGINT this process ignores (pytest started in the background by a non-interactive
    shell: ``cmd &``) would be ignored by the subprocess too, whose Python then never
    raises KeyboardInterrupt: this process handles it while it starts the subprocess."""
    ignored = sig == signal.SIGINT and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bannermatch.cli", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        deadline = time.monotonic() + seconds
        while len(list(chunks.glob("*.npz"))) < n:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no chunk written in time"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def chunked_rows(chunks: Path) -> int:
    """How many embedded rows the chunk files in ``chunks`` hold."""
    return sum(len(np.load(p)["embeddings"]) for p in chunks.glob("*.npz"))


def ocr_blocker(folder: Path) -> Path:
    """A folder that, put first on the import path, makes ``import rapidocr_onnxruntime``
    fail as on an installation without the 'ocr' extra (one of its own needs missing)."""
    package = folder / "rapidocr_onnxruntime"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('No module named pyclipper')\n")
    return folder


def env_without_ocr(folder: Path) -> dict[str, str]:
    """The environment of a ``bannermatch`` subprocess without the 'ocr' extra
    (:func:`ocr_blocker` in ``folder``, first on ``PYTHONPATH``)."""
    path = os.pathsep.join(filter(None, [str(ocr_blocker(folder)), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}
