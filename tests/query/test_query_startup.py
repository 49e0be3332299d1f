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
    assert hit["score"] > 0.999  # Pillow's pixels give the vector PyTorch's kernels gave
