"""An image query from the CLI starts without PyTorch: ONNX Runtime runs the cached
export and Pillow resamples the one image, its vector the indexed one's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.cli import run_cli


def test_similar_image_does_not_import_torch_and_finds_itself(
    served_root: Path, covers_dir: Path
) -> None:
    image = covers_dir / "images" / "abzu-0.jpg"  # in the collection (extra/abzu-0.jpg)
    run_cli("similar", served_root, image, "-k", "1", "-q")  # the export cached, if not yet
    cmd = [sys.executable, "-X", "importtime", "-m", "bannermatch.cli", "similar"]
    args = [str(served_root), str(image), "-k", "1", "--json"]
    proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "onnxruntime" in imported
    assert "torch" not in imported and "timm" not in imported
    hit = json.loads(proc.stdout)["results"][0]
    # Pillow's pixels give the vector PyTorch's kernels gave: within 2 levels, which the
    # int8 default (the collection's) turns into 0.997 where fp32 gives 0.9999
    assert hit["id"].endswith("abzu-0") and hit["score"] > 0.995


def test_help_imports_no_numpy_and_the_package_still_names_its_functions() -> None:
    cmd = [sys.executable, "-X", "importtime", "-m", "bannermatch.cli", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "bannermatch" in imported and "bannermatch.cli.steam" in imported
    assert (
        not {"numpy", "bannermatch.evaluation.audit", "bannermatch.present.report", "tqdm"}
        & imported
    )
    code = (
        "import bannermatch as bm, bannermatch.present.report, bannermatch.evaluation.audit; "
        "print(bm.report.__name__, bm.audit.__name__, bm.demo.__name__, bm.index.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["report", "audit", "demo", "index"]  # functions, not modules
