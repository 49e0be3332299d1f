"""Embedding throughput: `bannermatch index` against the engine's ceiling and the
pipeline people use today, on the same images, model and weights, in one run.

    .venv/bin/python bench/embed.py                  # 5,000 images (covers + igdb covers, repeated)
    .venv/bin/python bench/embed.py -n 1000 --skip-reference

(a) ``bannermatch index`` as a user runs it: images/s of the embedding phase and of
    the whole command (model load included), and the process's peak RSS;
(b) the engine alone on ready float32 tensors (ONNX Runtime, the CPU default): the ceiling;
(c) the original feature-extractor's pipeline, written here as it was: torchvision
    ``ImageFolder`` + ``DataLoader(num_workers=2, batch_size=256)`` + Resize/CenterCrop/
    ToTensor/Normalize + a PyTorch forward, all features held in memory; same model and
    weights (EfficientNet-Lite0 through bannermatch's loader), same preprocessing config.

Peak RSS is each command's own ``ru_maxrss`` (the reference's DataLoader workers are
separate processes and are not added to it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

REFERENCE = textwrap.dedent(
    """
    import sys, time, torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    from bannermatch.models import create_model

    # the same network and weights as bannermatch, as a plain PyTorch module
    net = create_model("effnet-lite0", engine="torch").engine.module.eval()
    tf = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ])
    loader = DataLoader(datasets.ImageFolder(sys.argv[1], tf), batch_size=256, num_workers=2)
    feats = []
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in loader:
            feats.append(net(x))
    seconds = time.perf_counter() - start
    print(sum(len(f) for f in feats), seconds)
    import resource
    print("MAXRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    """
)
#: runs a module as ``python -m`` would and reports the process's peak RSS on stderr
MEASURED = (
    "import atexit, resource, runpy, sys; "
    "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " file=sys.stderr)); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def _images(n: int, folder: Path) -> Path:
    """``n`` symlinks to the shared covers (repeated as needed) in ``folder/all/``."""
    sources = sorted((SHARED / "covers" / "images").glob("*.jpg"))
    sources += sorted((SHARED / "igdb_covers" / "images").glob("*.jpg"))
    if not sources:
        sys.exit(f"needs the shared covers in {SHARED}")
    target = folder / "all"
    target.mkdir(parents=True)
    for i in range(n):
        (target / f"{i:06d}.jpg").symlink_to(sources[i % len(sources)])
    return folder


def _run(code: str, *args: str) -> tuple[str, float, float]:
    """stdout, wall seconds and peak RSS (MB) of ``python -c code args``."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(args[:3])} failed:\n{proc.stderr[-2000:]}")
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("MAXRSS")]
    return proc.stdout, wall, int(peak[-1]) / 1024


def bench_index(images: Path, out: Path) -> dict[str, float]:
    stdout, wall, rss = _run(
        MEASURED, "bannermatch.cli", "index", str(images), "--out", str(out), "-q", "--json"
    )
    result = json.loads(stdout)
    return {
        "images": result["embedded"],
        "embed_rate": result["images_per_second"],
        "command_rate": result["embedded"] / wall,
        "rss_mb": rss,
    }


def bench_engine(seconds: float = 20.0) -> dict[str, float]:
    from bannermatch.models import create_model

    model = create_model("effnet-lite0")
    batch = (
        np.random.default_rng(0)
        .standard_normal((model.engine.max_batch, 3, 224, 224))
        .astype(np.float32)
    )
    model.embed(batch)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.embed(batch)
        done += len(batch)
    return {"rate": done / (time.perf_counter() - start), "batch": len(batch)}


def bench_reference(images: Path) -> dict[str, float]:
    stdout, wall, rss = _run(REFERENCE, str(images))
    count, loop = stdout.split()
    return {
        "images": int(count),
        "loop_rate": int(count) / float(loop),
        "command_rate": int(count) / wall,
        "rss_mb": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="images (default: 5000)")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="bm-bench-embed-") as tmp:
        images = _images(args.n, Path(tmp) / "images")
        print(f"{args.n} images; {os.cpu_count()} CPU cores")
        a = bench_index(images, Path(tmp) / "coll")
        print(
            f"(a) bannermatch index: {a['embed_rate']:.1f} img/s embedding, "
            f"{a['command_rate']:.1f} img/s whole command, peak RSS {a['rss_mb']:.0f} MB"
        )
        b = bench_engine()
        print(f"(b) engine ceiling (ONNX Runtime, batch {b['batch']}): {b['rate']:.1f} img/s")
        print(f"    (a)/(b) = {a['embed_rate'] / b['rate']:.0%}")
        if not args.skip_reference:
            c = bench_reference(images)
            print(
                f"(c) reference pipeline: {c['loop_rate']:.1f} img/s loop, "
                f"{c['command_rate']:.1f} img/s whole command, peak RSS {c['rss_mb']:.0f} MB"
            )
            print(
                f"    (a)/(c) = {a['embed_rate'] / c['loop_rate']:.2f}x (loops), "
                f"{a['command_rate'] / c['command_rate']:.2f}x (whole commands)"
            )


if __name__ == "__main__":
    main()
