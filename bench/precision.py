"""fp32 against int8 on the CPU, side by side in one run (a loaded machine slows both alike;
compare the ratios, and CPU-seconds per image, steadier than images per second).

    PYTHONPATH=src python bench/precision.py                    # engine, stages, index: covers
    PYTHONPATH=src python bench/precision.py --synthetic 20000  # and a synthetic folder in /tmp
    PYTHONPATH=src python bench/precision.py --gate             # and the quality gate (minutes)

1. engine: the ONNX model on ready tensors, one single-threaded stream, batches of 8, fp32
   and int8 alternating (best of ``--rounds``), and variants of the fp32 session (graph
   optimisation level, two intra-op threads, the pads frozen to constants);
2. stages: CPU-seconds per image of each stage of ``index`` on the covers, one thread:
   read, decode (reduced-size JPEG decoding as ``index`` does), resize, normalise, infer
   (fp32, int8), write (the rows' chunk file);
3. index: ``bannermatch index`` of the 887 covers (covers + igdb covers) as a user runs
   it, ``--precision fp32``, the default (``auto``: int8 from the shipped ranges) and the
   default's first run (a cache without the int8 model: it quantises) alternating:
   images/s of the embedding phase, CPU-seconds per image of the whole process, peak
   RSS; and of ``--synthetic N`` images, generated once;
4. (``--gate``) the quality gate, int8 (the default's model) against fp32;
5. (``--sections quantise``) the one-time making of the int8 model from the shipped ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from support import MEASURED, peak_mb

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FOLDERS = [SHARED / "covers" / "images", SHARED / "igdb_covers" / "images"]


def covers_items() -> list:  # type: ignore[type-arg]
    from bannermatch.acquire.inputs import scan_input

    return [it for f in FOLDERS for it in scan_input(f).items]


def models() -> dict:  # type: ignore[type-arg]
    from bannermatch.embed.models import create_model
    from bannermatch.embed.models.precision import calibrate

    fp32 = create_model("effnet-lite0", device="cpu", engine="onnx", precision="fp32")
    int8 = calibrate(create_model("effnet-lite0", device="cpu", precision="int8"), covers_items())
    return {"fp32": fp32, "int8": int8}


def cpu_rate(run: Callable[[], int]) -> tuple[float, float]:
    """(images/s, CPU-seconds per image) of one call of ``run`` (returns its image count)."""
    w, c = time.perf_counter(), time.thread_time()
    n = run()
    return n / (time.perf_counter() - w), (time.thread_time() - c) / n


def session(path: Path, level: str = "all", threads: int = 1):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def engine_section(nets: dict, pixels: np.ndarray, rounds: int) -> None:  # type: ignore[type-arg]
    import onnx

    from bannermatch.embed.models.quantize import freeze_shape_arithmetic

    src = nets["fp32"].engine.path
    frozen = Path(tempfile.mkdtemp()) / "frozen.onnx"
    onnx.save(freeze_shape_arithmetic(onnx.load(str(src)), pixels.shape[-1]), str(frozen))
    variants = {
        "fp32": session(src),
        "int8": session(nets["int8"].engine.path),
        "fp32, pads frozen": session(frozen),
        "fp32, basic graph optimisation": session(src, "basic"),
        "int8, basic graph optimisation": session(nets["int8"].engine.path, "basic"),
        "fp32, 2 intra-op threads": session(src, threads=2),
        "int8, 2 intra-op threads": session(nets["int8"].engine.path, threads=2),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, s in variants.items():

            def run(s=s) -> int:  # type: ignore[no-untyped-def]
                for i in range(0, len(pixels), 8):
                    s.run(None, {"pixels": pixels[i : i + 8]})
                return len(pixels)

            rate, cpu = cpu_rate(run)
            if name not in best or rate > best[name][0]:
                best[name] = (rate, cpu)
    base = best["fp32"][0]
    print(f"\n1. engine on {len(pixels)} ready tensors, batch 8, best of {rounds} (alternating)")
    for name, (rate, cpu) in best.items():
        ms = 1000 * cpu
        print(f"  {name:34s} {rate:7.1f} img/s  {ms:6.2f} thread-CPU-ms/img  {rate / base:.2f}x")


def stages_section(nets: dict, n: int) -> np.ndarray:  # type: ignore[type-arg]
    from bannermatch.images import decode_bytes, read_source

    items = covers_items()[:: max(1, len(covers_items()) // n)][:n]
    pre = nets["fp32"].preprocess
    t = dict.fromkeys(("read", "decode", "resize", "normalise", "write"), 0.0)
    out = np.empty((len(items), 3, pre.crop_size, pre.crop_size), np.float32)
    for i, it in enumerate(items):
        c0 = time.thread_time()
        data = read_source(it.source)
        c1 = time.thread_time()
        img = decode_bytes(data, draft_size=pre.draft_size).image
        c2 = time.thread_time()
        resized = pre.resize(img)
        c3 = time.thread_time()
        pre.normalize_into(resized, out[i]) if pre.fit != "pad" else pre.into(img, out[i])
        c4 = time.thread_time()
        t["read"] += c1 - c0
        t["decode"] += c2 - c1
        t["resize"] += c3 - c2
        t["normalise"] += c4 - c3
    infer = {}
    for name, net in nets.items():
        c = time.thread_time()
        for i in range(0, len(out), 8):
            net.engine(out[i : i + 8])
        infer[name] = (time.thread_time() - c) / len(out)
    rows = nets["fp32"].embed(out[:64]).astype(np.float16)
    c = time.thread_time()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(len(out) // 64 + 1):
            np.savez(Path(tmp) / f"{k}.npz", rows=rows)
    t["write"] = time.thread_time() - c
    print(f"\n2. CPU-ms per image by stage, one thread, {len(items)} covers")
    note = " (pad: resize measured alone; normalise = the pad's whole resize + normalise)"
    for name, v in t.items():
        print(f"  {name:10s} {1000 * v / len(items):6.2f}" + (note if name == "normalise" else ""))
    for name, v in infer.items():
        print(f"  infer {name} {1000 * v:6.2f}")
    return out


def index_run(inputs: list[Path], precision: str, out: Path, cache: Path | None = None) -> dict:  # type: ignore[type-arg]
    cmd = [sys.executable, "-c", MEASURED, "bannermatch.cli", "index", *map(str, inputs)]
    cmd += ["--out", str(out), "--precision", precision, "--json", "-q"]
    env = {**os.environ, **({"BANNERMATCH_CACHE": str(cache)} if cache else {})}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if status != 0:
        raise SystemExit(f"index failed: {stderr[-2000:]}")
    result = json.loads(stdout)
    result["cpu_per_image"] = (usage.ru_utime + usage.ru_stime) / max(1, result["embedded"])
    result["peak_mb"] = peak_mb(stderr)
    result["whole_per_second"] = result["embedded"] / wall
    return result


def fp32_export() -> Path:
    from bannermatch.embed.models import create_model

    model = create_model("effnet-lite0", device="cpu", engine="onnx", precision="fp32")
    return Path(model.engine.path)  # type: ignore[attr-defined]


#: (label, --precision, a fresh cache holding only the fp32 export: the first run, which
#: quantises): fp32, the default (auto: int8 from the shipped ranges), the default's first run
VARIANTS = (("fp32", "fp32", False), ("auto", "auto", False), ("auto, first run", "auto", True))


def index_section(label: str, inputs: list[Path], rounds: int) -> None:
    import shutil

    best: dict[str, dict] = {}  # type: ignore[type-arg]
    export = fp32_export()
    for _ in range(rounds):
        for name, precision, fresh in VARIANTS:
            with tempfile.TemporaryDirectory() as tmp:
                cache = None
                if fresh:  # the export and timm's config in place, no int8 model yet
                    cache = Path(tmp) / "cache"
                    (cache / "onnx").mkdir(parents=True)
                    shutil.copy(export, cache / "onnx" / export.name)
                    shutil.copytree(export.parents[1] / "configs", cache / "configs")
                r = index_run(inputs, precision, Path(tmp) / "c", cache)
            old = best.get(name)
            if old is None or r["images_per_second"] > old["images_per_second"]:
                best[name] = r
    print(f"\n3. bannermatch index, {label}, best of {rounds} (alternating)")
    for p, r in best.items():
        print(
            f"  {p} [{r['model_key'].rsplit('__', 1)[-1]}]: {r['embedded']} images, "
            f"{r['images_per_second']:.1f} img/s (embedding), {r['seconds']:.2f} s embedding, "
            f"{r['whole_per_second']:.1f} img/s (whole command), "
            f"{1000 * r['cpu_per_image']:.2f} CPU-ms/img (whole process), "
            f"peak {r['peak_mb']:.0f} MB"
        )
    ratio = best["auto"]["images_per_second"] / best["fp32"]["images_per_second"]
    print(f"  auto/fp32: {ratio:.2f}x img/s")


def quantise_section(rounds: int) -> None:
    """The one-time cost of the default's int8 model: made from the fp32 export and the
    shipped ranges (no image run), into an empty cache."""
    import shutil

    from bannermatch.embed.models.quantize import quantize_int8
    from bannermatch.embed.models.ranges import shipped_ranges

    export = fp32_export()
    ranges = shipped_ranges(export)
    if ranges is None:
        print("\n5. no shipped ranges for this export")
        return
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / export.name
            shutil.copy(export, copy)
            w, c = time.perf_counter(), time.process_time()
            quantize_int8(copy, ranges=ranges)
            times.append((time.perf_counter() - w, time.process_time() - c))
    w, c = min(times)
    print(f"\n5. int8 model from the shipped ranges: {w:.2f} s wall, {c:.2f} CPU-s", end="")
    print(f" (best of {rounds})")


def synthetic(n: int) -> Path:
    """``n`` JPEGs under /tmp: the covers shifted, scaled and recoloured (made once)."""
    from PIL import Image, ImageEnhance

    folder = Path(tempfile.gettempdir()) / f"bannermatch-synthetic-{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    folder.mkdir(exist_ok=True)
    sources = [p for f in FOLDERS for p in sorted(f.iterdir())]
    rng = np.random.default_rng(0)
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        w, h = im.size
        dx, dy = rng.integers(0, w // 10), rng.integers(0, h // 10)
        im = im.crop((dx, dy, w - w // 10 + dx, h - h // 10 + dy))
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.6, 1.4)))
        im.save(folder / f"{i:06d}.jpg", quality=90)
    return folder


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stages", type=int, default=200, help="images for sections 1 and 2")
    ap.add_argument("--synthetic", type=int, default=0, help="also index N synthetic images")
    ap.add_argument("--sections", default="stages,engine,index", help="which of them to run")
    ap.add_argument("--gate", action="store_true", help="also run the quality gate")
    args = ap.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}")
    sections = args.sections.split(",")
    if "stages" in sections or "engine" in sections:
        nets = models()
        pixels = stages_section(nets, args.stages)
        if "engine" in sections:
            engine_section(nets, pixels, args.rounds)
    if "index" in sections:
        index_section("the 887 covers", FOLDERS, args.rounds)
    if "quantise" in sections:
        quantise_section(args.rounds)
    if args.synthetic:
        index_section(f"{args.synthetic} synthetic images", [synthetic(args.synthetic)], 1)
    if args.gate:
        from bannermatch.evaluation.precision import run_gate

        covers = SHARED / "covers"
        gate = run_gate(
            covers / "images", covers / "covers.tsv", FOLDERS[1], distractors=covers / "images"
        )
        print("\n4. quality gate\n" + gate.summary())
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main(sys.argv[1:])
