"""``store.atomic.made_once``: processes started together make a cached file once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bannermatch.store import atomic

#: a process that makes ``path`` under ``made_once``, slowly, and says whether it had to
MAKER = """
import sys, time
from pathlib import Path
from bannermatch.store import atomic
path = Path(sys.argv[1])
with atomic.made_once(path) as needed:
    print("entered", flush=True)
    if needed:
        time.sleep(0.5)
        atomic.write_text(path, "made by " + sys.argv[2])
print("made" if needed else "found", flush=True)
"""


def test_made_once_makes_a_file_once_for_processes_started_together(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "model.onnx"
    first = subprocess.Popen([sys.executable, "-c", MAKER, path, "a"], stdout=subprocess.PIPE)
    assert first.stdout is not None and first.stdout.readline() == b"entered\n"
    second = subprocess.Popen([sys.executable, "-c", MAKER, path, "b"], stdout=subprocess.PIPE)
    outs = [p.communicate(timeout=30)[0].decode().split() for p in (first, second)]
    assert outs == [["made"], ["entered", "found"]]  # the second waited, then found it made
    assert path.read_text() == "made by a"
    assert list(path.parent.iterdir()) == [path]  # no lock file left


def test_made_once_says_a_made_file_needs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    with atomic.made_once(path) as needed:
        assert needed
    path.write_text("x")
    with atomic.made_once(path) as needed:
        assert not needed
