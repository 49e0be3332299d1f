"""What the benchmarks share: measuring a child process's peak memory, and writing a
synthetic collection of random unit vectors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bannermatch.store.collection import Collection

#: makes a process report its own peak RSS (kB) on stderr as it exits: its memory's
#: high-water mark, VmHWM (``ru_maxrss`` of a forked child also counts its parent's)
PEAK = textwrap.dedent(
    """
    import atexit, sys

    def _peak():
        try:
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
        except (OSError, StopIteration):
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    atexit.register(lambda: print("MAXRSS", _peak(), file=sys.stderr))
    """
)
#: runs a module as ``python -m`` would, reporting its peak RSS
MEASURED = PEAK + (
    "import runpy\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)
#: the model key of :func:`write_random_unit`'s rows
RANDOM_KEY = "synthetic__random-unit__cls"


def peak_mb(stderr: str) -> float:
    """The peak RSS (MB) that a process started with :data:`PEAK` reported."""
    peak = [line.split()[1] for line in stderr.splitlines() if line.startswith("MAXRSS")]
    return int(peak[-1]) / 1024


def write_random_unit(coll: Collection, ids: list[str], dim: int, seed: int) -> Path:
    """Rows of random unit vectors (float16, as ``index`` stores them) for ``ids``, under
    :data:`RANDOM_KEY`; returns the embeddings file."""
    from bannermatch.store.collection import EMBEDDINGS, write_model_data

    n = len(ids)
    manifest = {
        "model": "synthetic",
        "arch": "random unit vectors",
        "weights": {"source": "none", "sha256": ""},
        "preprocess": {},
        "strategy": "cls",
        "dim": dim,
        "key": RANDOM_KEY,
        "engine": "none",
    }
    gen = np.random.default_rng(seed)

    def write_embeddings(path: Path) -> None:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
        for start in range(0, n, 8192):
            block = gen.standard_normal((min(8192, n - start), dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start : start + len(block)] = block
        out.flush()

    folder = coll.model_dir(RANDOM_KEY)
    write_model_data(folder, manifest, ids, [""] * n, write_embeddings)
    return folder / EMBEDDINGS
