"""Measure a preset's int8 activation ranges once, on a fixed sample, and write the file
the package ships (``src/bannermatch/embed/models/int8_ranges/``; see
:mod:`bannermatch.embed.models.ranges`).

    PYTHONPATH=src python bench/int8_ranges.py                 # effnet-lite0 on the IGDB covers
    PYTHONPATH=src python bench/int8_ranges.py --check         # remade ranges == shipped ones?

The sample is every image of ``../shared/data/igdb_covers/images`` (252 covers, sorted by
name), decoded and preprocessed as ``index`` does with the preset's default preprocessing,
so that the quality gate, measured on ``covers/`` (635 covers) and its altered copies, is
out of sample. MinMax ranges do not depend on the order or the batch size. Run it again
when the fp32 export (``EXPORT_VERSION``, the weights, PyTorch's exporter) or the recipe
(``QUANT_VERSION``) changes: the file is named and checked by both, and a model whose
export has no ranges file runs fp32 by default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "igdb_covers" / "images"
OUT = ROOT / "src" / "bannermatch" / "embed" / "models" / "int8_ranges"


def main(argv: list[str] | None = None) -> int:
    from bannermatch.acquire.inputs import scan_input
    from bannermatch.embed.models import create_model
    from bannermatch.embed.models.precision import calibration_pixels
    from bannermatch.embed.models.quantize import file_sha256
    from bannermatch.embed.models.ranges import (
        measure_ranges,
        ranges_name,
        read_ranges,
        save_ranges,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="effnet-lite0")
    ap.add_argument("--images", type=Path, default=SAMPLE)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the shipped file")
    args = ap.parse_args(argv)
    model = create_model(args.model, engine="onnx", device="cpu", precision="fp32")
    source = Path(model.engine.path)  # type: ignore[attr-defined]
    items = sorted(scan_input(args.images).items, key=lambda it: it.source)
    started = time.process_time()
    pixels = calibration_pixels(model.preprocess, items)
    ranges = measure_ranges(source, pixels)
    print(f"{len(ranges)} tensors measured on {len(pixels)} images of {args.images} "
          f"in {time.process_time() - started:.1f} CPU-s")  # fmt: skip
    calibration = {
        "images": len(pixels),
        "sample": f"every image of {args.images.relative_to(ROOT.parent)}, sorted by name",
        "preprocess": model.preprocess.key,
        "script": "bench/int8_ranges.py",
    }
    if args.check:
        shipped = args.out / ranges_name(source, file_sha256(source))
        same = shipped.is_file() and read_ranges(shipped)["ranges"] == ranges
        print(json.dumps({"shipped": str(shipped), "identical": same}))
        return 0 if same else 1
    print(save_ranges(args.out, source, ranges, calibration))
    return 0


if __name__ == "__main__":
    sys.exit(main())
