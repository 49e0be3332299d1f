"""umap-learn's numba kernels are kept in numba's on-disk cache: once set-up has compiled
them (``compile_kernels``), a process that maps loads them instead of compiling them
again, and maps the same points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bannermatch.present.maps import compile_kernels, compute_map, umap_kernels

#: the kernel of UMAP's layout epochs, the largest it compiles
LAYOUT_KERNEL = "_optimize_layout_euclidean_single_epoch"

SECOND_PROCESS = """
import json, sys
import numpy as np
from bannermatch.present.maps import compute_map, umap_kernels
points, method = compute_map(np.load(sys.argv[1]))
np.save(sys.argv[2], points)
used = lambda attr: sorted(
    k.py_func.__name__ for k in umap_kernels() if sum(getattr(k.stats, attr).values())
)
print(json.dumps({"method": method, "hits": used("cache_hits"), "misses": used("cache_misses")}))
"""


@pytest.mark.integration
def test_a_second_process_loads_the_umap_kernels_from_the_cache(tmp_path: Path) -> None:
    compile_kernels()  # as scripts/setup.sh: compiles and stores the kernels, or loads them
    assert LAYOUT_KERNEL in {k.py_func.__name__ for k in umap_kernels()}
    vectors = np.random.default_rng(7).standard_normal((40, 64)).astype(np.float32)
    points, method = compute_map(vectors)
    assert method == "umap"
    np.save(tmp_path / "vectors.npy", vectors)
    proc = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, tmp_path / "vectors.npy", tmp_path / "p.npy"],
        capture_output=True,
        text=True,
        check=True,
    )
    second = json.loads(proc.stdout)
    assert second["method"] == "umap"
    assert LAYOUT_KERNEL in second["hits"] and LAYOUT_KERNEL not in second["misses"]
    assert {"smooth_knn_dist", "compute_membership_strengths"} <= set(second["hits"])
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), points)  # the same code
