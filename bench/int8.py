"""int8 vs fp32 ONNX Runtime on real covers: mean/min cosine of the same image's
vectors and the inference speed, fp32 and int8 alternating in one run (a loaded
machine slows both alike). Usage: python bench/int8.py FOLDER [--calib N] [--test N]"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bannermatch.embed.models import EmbeddingModel, create_model
from bannermatch.embed.models.engines import OnnxEngine
from bannermatch.embed.models.quantize import quantize_int8


def pixels_of(model: EmbeddingModel, files: list[Path]) -> np.ndarray:
    return np.stack([model.preprocess(Image.open(f).convert("RGB")) for f in files])


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(engine: OnnxEngine, x: np.ndarray, batch: int = 8) -> float:
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        engine(x[i : i + batch])
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--test", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--exclude", default="", help="comma-separated node names kept in fp32")
    args = ap.parse_args(argv)
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    model = create_model(engine="onnx", device="cpu")
    if not isinstance(model.engine, OnnxEngine):
        raise SystemExit(f"needs the ONNX engine, got {model.engine.name}")
    fp32_path = model.engine.path
    calib = pixels_of(model, files[:: max(1, len(files) // args.calib)][: args.calib])
    t0 = time.perf_counter()
    exclude = [n for n in args.exclude.split(",") if n] or None  # None: the recipe's
    q_path = quantize_int8(fp32_path, calib, exclude=exclude)
    print(f"kept in fp32: {exclude or 'the recipe: stem conv, pooling head'}")
    print(f"quantise: {time.perf_counter() - t0:.1f} s -> {q_path.name}")
    test = pixels_of(model, files[1::2][: args.test])
    fp32, int8 = OnnxEngine(fp32_path, streams=1), OnnxEngine(q_path, streams=1)
    cos = (unit(fp32(test)) * unit(int8(test))).sum(axis=1)
    print(f"cosine int8 vs fp32 on {len(test)} images: mean {cos.mean():.4f} min {cos.min():.4f}")
    t32, t8 = [], []
    for _ in range(args.rounds):
        t32.append(timed(fp32, test))
        t8.append(timed(int8, test))
    a, b = min(t32), min(t8)
    print(
        f"1 thread, batch 8, best of {args.rounds}: fp32 {len(test) / a:.1f} img/s, "
        f"int8 {len(test) / b:.1f} img/s, ratio {a / b:.2f}x"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
