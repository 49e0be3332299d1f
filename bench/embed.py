"""Embedding throughput: `bannermatch index` against the engine's ceiling and the
pipeline people use today, on the same images, model and weights, in one run.

    .venv/bin/python bench/embed.py                  # 5,000 images (covers + igdb covers, repeated)
    .venv/bin/python bench/embed.py -n 1000 --skip-reference
    .venv/bin/python bench/embed.py --gpu            # the GPU figures, where there is a GPU
    .venv/bin/python bench/embed.py --size 1200x1800 --skip-reference   # Steam's 2x banners

(a) ``bannermatch index`` as a user runs it: images/s of the embedding phase and of
    the whole command (model load included), and the process's peak RSS, at ``n``
    images and at a fifth of them (memory must not grow with the count); and again
    with ``--full-decode``, every JPEG pixel decoded (the default decodes large JPEGs
    at a reduced scale: docs/models.md);
(b) the engine alone on ready float32 tensors (ONNX Runtime, the CPU default): the
    ceiling. Measured in two configurations, before and after (a) (the machine may be
    shared: its load changes), and the better one counts: ``bannermatch``'s (one
    single-threaded stream per core, side by side) and ONNX Runtime's usual one (one
    call at a time, its own threads on every core);
(c) the original feature-extractor's pipeline, written here as it was: torchvision
    ``ImageFolder`` + ``DataLoader(num_workers=2, batch_size=256)`` + Resize/CenterCrop/
    ToTensor/Normalize + a PyTorch forward, all features held in memory; same model and
    weights (EfficientNet-Lite0 through bannermatch's loader), same preprocessing config.

With ``--gpu`` and a CUDA GPU, it also measures ``bannermatch index --device cuda``
(PyTorch, half precision, page-locked batches) against the same engine on ready
tensors; without a GPU it says so and skips them.

On a shared machine the CPU a process gets changes from minute to minute, and with
it every images/s figure; so each figure is also given per CPU-second the process
used (threads and child processes included), which the machine's other jobs change
much less, and the ratios are printed both ways. For (a) against (b), the CPU-seconds
of `index`'s start-up (measured by indexing one image: imports, model load, set-up)
are left out, as (b) has none; (a) against (c) compares whole commands. Peak RSS is
each command's own memory high-water mark (VmHWM; the reference's DataLoader workers
are separate processes and are not added to it). The ONNX model is exported (once,
into the user's cache) before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from support import MEASURED, PEAK, peak_mb

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

REFERENCE = textwrap.dedent(
    """
    import sys, time, torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    from bannermatch.embed.models import create_model

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
    """
)


def _sources() -> list[Path]:
    sources = sorted((SHARED / "covers" / "images").glob("*.jpg"))
    sources += sorted((SHARED / "igdb_covers" / "images").glob("*.jpg"))
    if not sources:
        sys.exit(f"needs the shared covers in {SHARED}")
    return sources


def _resized(sources: list[Path], size: tuple[int, int], folder: Path) -> list[Path]:
    """The sources resized to ``size`` (Lanczos) and saved as JPEG (quality 90), as
    Steam's 2x library banners (1200x1800) are."""
    from PIL import Image

    folder.mkdir(parents=True)
    out = []
    for i, src in enumerate(sources):
        path = folder / f"{i:04d}.jpg"
        with Image.open(src) as im:
            im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(path, quality=90)
        out.append(path)
    return out


def _images(n: int, folder: Path, sources: list[Path]) -> Path:
    """``n`` symlinks to ``sources`` (repeated as needed) in ``folder/all/``."""
    target = folder / "all"
    target.mkdir(parents=True)
    for i in range(n):
        (target / f"{i:06d}.jpg").symlink_to(sources[i % len(sources)])
    return folder


def _run(code: str, *args: str) -> tuple[str, float, float, float]:
    """stdout, wall seconds, CPU seconds (its children's included) and peak RSS (MB) of
    ``python -c code args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        sys.exit(f"{' '.join(args[:3])} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout, wall, cpu, peak_mb(proc.stderr)


def bench_index(images: Path, out: Path, *extra: str, startup_cpu: float = 0.0) -> dict[str, float]:
    """``index`` as a user runs it; ``embed_cpu_rate`` leaves out ``startup_cpu``, the
    CPU-seconds of a run that embeds one image (imports, model load, collection set-up)."""
    stdout, wall, cpu, rss = _run(
        MEASURED, "bannermatch.cli", "index", str(images), "--out", str(out), "-q", "--json", *extra
    )
    result = json.loads(stdout)
    return {
        "images": result["embedded"],
        "embed_rate": result["images_per_second"],
        "command_rate": result["embedded"] / wall,
        "cpu": cpu,
        "cpu_rate": result["embedded"] / cpu,
        "embed_cpu_rate": result["embedded"] / max(cpu - startup_cpu, 1e-9),
        "rss_mb": rss,
    }


def _rate(engine: Any, streams: int, batch: np.ndarray, seconds: float) -> tuple[float, float]:
    """Images per second, and per CPU-second of this process, of ``streams`` threads each
    calling ``engine(batch)`` for ``seconds``."""
    done = [0] * streams

    def loop(i: int) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            engine(batch)
            done[i] += len(batch)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(streams)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start), sum(done) / (time.process_time() - cpu)


class Ceiling:
    """The engine alone on ready tensors, in each configuration, measured in rounds."""

    def __init__(self) -> None:
        from bannermatch.embed.models import create_model
        from bannermatch.embed.models.engines import OnnxEngine

        model = create_model("effnet-lite0", device="cpu")  # exports the ONNX model once
        engine = model.engine
        assert isinstance(engine, OnnxEngine)
        size = model.preprocess.crop_size
        rng = np.random.default_rng(0)

        def batch(n: int) -> np.ndarray:
            return rng.standard_normal((n, 3, size, size)).astype(np.float32)

        # (engine, concurrent calls, batch): bannermatch's configuration, and the usual one
        # at the batch bannermatch used with it before (16)
        self.configs = {
            f"{engine.streams} single-threaded streams, batch {engine.max_batch}": (
                engine,
                engine.streams,
                batch(engine.max_batch),
            ),
            "one call at a time, threads on every core, batch 16": (
                OnnxEngine(engine.path, streams=1),
                1,
                batch(16),
            ),
        }
        self.rates: dict[str, list[tuple[float, float]]] = {name: [] for name in self.configs}
        for eng, _, x in self.configs.values():
            eng(x)  # warm-up

    def measure(self, seconds: float = 5.0, rounds: int = 2) -> None:
        for _ in range(rounds):
            for name, (eng, streams, x) in self.configs.items():
                self.rates[name].append(_rate(eng, streams, x, seconds))

    def mean(self, name: str) -> tuple[float, float]:
        """Mean images/s and images per CPU-second of a configuration."""
        rates = np.asarray(self.rates[name])
        return float(rates[:, 0].mean()), float(rates[:, 1].mean())

    def best(self) -> tuple[float, float]:
        """The best images/s and the best images per CPU-second, over the configurations."""
        means = [self.mean(name) for name in self.rates]
        return max(m[0] for m in means), max(m[1] for m in means)


def bench_reference(images: Path) -> dict[str, float]:
    stdout, wall, cpu, rss = _run(PEAK + REFERENCE, str(images))
    count, loop = stdout.split()
    return {
        "images": int(count),
        "loop_rate": int(count) / float(loop),
        "command_rate": int(count) / wall,
        "cpu_rate": int(count) / cpu,
        "rss_mb": rss,
    }


def bench_gpu(images: Path, out: Path) -> None:
    from bannermatch.embed.models.engines import cuda_available

    if not cuda_available():
        print("GPU: no CUDA GPU here: the GPU figures are skipped")
        return
    import torch

    from bannermatch.embed.models import create_model

    model = create_model("effnet-lite0", device="cuda")
    batch = model.engine.new_batch(model.engine.max_batch, model.preprocess.crop_size)
    batch[:] = np.random.default_rng(0).standard_normal(batch.shape).astype(np.float32)
    model.embed(batch)  # warm-up
    torch.cuda.synchronize()
    ceiling, _ = _rate(model.engine, 1, batch, 10.0)
    a = bench_index(images, out, "--device", "cuda")
    name = torch.cuda.get_device_name()
    print(f"GPU ({name}, PyTorch half precision, batch {len(batch)}):")
    print(
        f"(a) bannermatch index --device cuda: {a['embed_rate']:.1f} img/s embedding, "
        f"{a['command_rate']:.1f} img/s whole command, peak RSS {a['rss_mb']:.0f} MB"
    )
    print(f"(b) engine ceiling on ready tensors: {ceiling:.1f} img/s")
    print(f"    (a)/(b) = {a['embed_rate'] / ceiling:.0%} (decoding on {os.cpu_count()} cores)")


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="images (default: 5000)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="also the GPU figures, if a GPU")
    parser.add_argument(
        "--size",
        default=None,
        help="WxH: the images resized to this size first (e.g. 1200x1800, Steam's 2x banners)",
    )
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    with tempfile.TemporaryDirectory(prefix="bm-bench-embed-") as tmp:
        sources = _sources()
        if args.size:
            w, h = (int(v) for v in args.size.lower().split("x"))
            sources = _resized(sources, (w, h), Path(tmp) / "resized")
        images = _images(args.n, Path(tmp) / "images", sources)
        small = _images(max(1, args.n // 5), Path(tmp) / "small", sources)
        size = f" resized to {args.size}" if args.size else ""
        print(f"{args.n} images{size}; {os.cpu_count()} CPU cores; load average {_load()}")
        one = _images(1, Path(tmp) / "one", sources)
        startup = bench_index(one, Path(tmp) / "coll-one")["cpu"]
        ceiling = Ceiling()
        ceiling.measure()
        a = bench_index(images, Path(tmp) / "coll", startup_cpu=startup)
        a_small = bench_index(small, Path(tmp) / "coll-small")
        a_full = bench_index(images, Path(tmp) / "coll-full", "--full-decode", startup_cpu=startup)
        ceiling.measure()
        print(
            f"(a) bannermatch index: {a['embed_rate']:.1f} img/s embedding, "
            f"{a['command_rate']:.1f} img/s whole command; {a['embed_cpu_rate']:.1f} img per "
            f"CPU-second of embedding ({a['cpu_rate']:.1f} with the start-up's "
            f"{startup:.1f} CPU-seconds); peak RSS {a['rss_mb']:.0f} MB "
            f"({a_small['rss_mb']:.0f} MB at {a_small['images']} images)"
        )
        print(
            f"    the same with --full-decode (every JPEG pixel): {a_full['embed_rate']:.1f} "
            f"img/s, {a_full['embed_cpu_rate']:.1f} img per CPU-second: the draft makes "
            f"`index` {a['embed_cpu_rate'] / a_full['embed_cpu_rate']:.2f}x as fast per "
            "CPU-second"
        )
        for config in ceiling.rates:
            rate, cpu_rate = ceiling.mean(config)
            print(
                f"(b) engine on ready tensors, {config}: {rate:.1f} img/s, "
                f"{cpu_rate:.1f} img per CPU-second"
            )
        rate, cpu_rate = ceiling.best()
        print(
            f"    (a)/(b) = {a['embed_rate'] / rate:.0%} of the best images/s, "
            f"{a['embed_cpu_rate'] / cpu_rate:.0%} of the best images per CPU-second "
            f"(--full-decode: {a_full['embed_rate'] / rate:.0%}, "
            f"{a_full['embed_cpu_rate'] / cpu_rate:.0%})"
        )
        if not args.skip_reference:
            c = bench_reference(images)
            print(
                f"(c) reference pipeline: {c['loop_rate']:.1f} img/s loop, "
                f"{c['command_rate']:.1f} img/s whole command, {c['cpu_rate']:.1f} img per "
                f"CPU-second (its DataLoader workers' included); peak RSS {c['rss_mb']:.0f} MB"
            )
            print(
                f"    (a)/(c) = {a['embed_rate'] / c['loop_rate']:.2f}x (loops), "
                f"{a['command_rate'] / c['command_rate']:.2f}x (whole commands), "
                f"{a['cpu_rate'] / c['cpu_rate']:.2f}x (per CPU-second); "
                f"peak RSS {a['rss_mb'] / c['rss_mb']:.2f}x"
            )
        if args.gpu:
            bench_gpu(images, Path(tmp) / "coll-gpu")
        print(f"load average at the end {_load()}")


if __name__ == "__main__":
    main()
