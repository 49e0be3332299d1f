"""int8 activation ranges computed once and shipped with the package.

A static int8 model needs the range of every activation it rounds. Measured on each
collection's own images, that costs a calibration per new collection (about 30 s and 1 GB
on 2 cores) and gives every collection a slightly different model, so rows of two
collections of the same preset would not be comparable. Instead the ranges of a preset are
measured once, on a fixed sample (MinMax, the recipe of :mod:`.quantize`), by
``bench/int8_ranges.py``, and shipped as a small JSON file in ``int8_ranges/``, named and
checked by the content hash of the fp32 ONNX export they were measured on and by the
recipe version (``QUANT_VERSION``). Quantising then needs no images: the int8 model is made
from the fp32 export and these ranges in a few seconds, identical on every machine that
exports the same bytes, and cached by content hash like any quantised model.

A model whose export has no shipped ranges (another preset, another input size or
strategy, another PyTorch exporting other bytes) runs fp32 by default, or, with an
explicit ``--precision int8``, is calibrated on the collection's images as before.

The file: ``{"format": 1, "source": <export file name>, "source_sha256": ...,
"recipe": QUANT_VERSION, "method": "MinMax", "calibration": {...where the sample came
from...}, "onnxruntime": <version measured with>, "ranges": {tensor: [lowest, highest]}}``;
float32 values written as their exact doubles (they read back to the same float32), each
a number or a list as ONNX Runtime's calibrator shaped it.
"""

from __future__ import annotations

import inspect
import json
import logging
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.embed.models.quantize import QUANT_VERSION, ranges_int8_path
from bannermatch.embed.models.registry import file_sha256
from bannermatch.errors import ModelError
from bannermatch.store import atomic

log = logging.getLogger(__name__)

#: the format of a ranges file
RANGES_FORMAT = 1
#: the package folder of the shipped ranges
RANGES_PACKAGE = "bannermatch.embed.models.int8_ranges"


def ranges_name(source: Path, source_sha: str) -> str:
    """The file name of the ranges measured on the fp32 export ``source``."""
    stem = source.name.removesuffix(".onnx")
    return f"{stem}-{source_sha[:16]}-q{QUANT_VERSION}.json"


def shipped_dir() -> Path:
    """The folder of the shipped ranges files (inside the installed package)."""
    return Path(str(resources.files(RANGES_PACKAGE)))


def supported() -> bool:
    """Whether this ONNX Runtime takes precomputed ranges (``quantize_static``'s
    ``calibration_cache_path``); without it, shipped ranges are not used."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def shipped_ranges(source: Path) -> Path | None:
    """The shipped ranges file of the fp32 export ``source`` at the current recipe, or
    None (none shipped, or this ONNX Runtime cannot use them)."""
    sha = file_sha256(source)
    suffix = f"-{sha[:16]}-q{QUANT_VERSION}.json"
    found = sorted(p for p in shipped_dir().glob("*.json") if p.name.endswith(suffix))
    if not found:
        return None
    data = read_ranges(found[0])
    if data.get("source_sha256") != sha or data.get("recipe") != QUANT_VERSION:
        return None
    # the int8 model made from them is cached: nothing to ask of this ONNX Runtime, whose
    # quantisation module takes 0.7 s to import
    if ranges_int8_path(source, found[0]).is_file() or supported():
        return found[0]
    log.info("%s: this ONNX Runtime cannot take precomputed ranges", source.name)
    return None


def read_ranges(path: Path) -> dict[str, Any]:
    """The parsed ranges file ``path``; a damaged file is a :class:`ModelError`."""
    try:
        data = json.loads(path.read_text("utf-8"))
        ok = data.get("format") == RANGES_FORMAT and isinstance(data.get("ranges"), dict)
    except (OSError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise ModelError(f"{path}: not a bannermatch int8 ranges file (format {RANGES_FORMAT})")
    return dict(data)


def write_ort_cache(ranges: dict[str, list[Any]], path: Path) -> None:
    """``ranges`` as ONNX Runtime's calibration cache (``TensorsData``, MinMax) at ``path``."""
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        TensorsData,
        save_tensors_data,
    )

    data = {
        name: (np.array(lo, np.float32), np.array(hi, np.float32))
        for name, (lo, hi) in ranges.items()
    }
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), path)


def read_ort_cache(path: Path) -> dict[str, list[Any]]:
    """The MinMax ranges of ONNX Runtime's calibration cache ``path``."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    out: dict[str, list[Any]] = {}
    for name, data in load_tensors_data(path).items():
        lo, hi = data.range_value
        out[name] = [_f32(lo), _f32(hi)]
    return out


def _f32(value: Any) -> Any:
    """A float32 value (or array, its shape kept) as Python floats: the exact doubles of
    the float32 values, which read back to the same float32."""
    return np.asarray(value, np.float32).tolist()


def measure_ranges(source: Path, calibration: np.ndarray) -> dict[str, list[Any]]:
    """The MinMax ranges the recipe measures on ``calibration`` (float32 NCHW pixels)
    for the fp32 export ``source``: one calibration as :func:`.quantize.quantize_int8` runs
    it, its ranges kept."""
    from bannermatch.embed.models.quantize import quantize_int8

    with tempfile.TemporaryDirectory(prefix="bannermatch-ranges-") as tmp:
        cache = Path(tmp) / "ranges.json"
        quantize_int8(source, calibration, ranges_out=cache)
        return read_ort_cache(cache)


def save_ranges(
    out_dir: Path, source: Path, ranges: dict[str, list[Any]], calibration: dict[str, Any]
) -> Path:
    """Write the ranges file of ``source`` into ``out_dir`` (atomically); its path."""
    import onnxruntime

    sha = file_sha256(source)
    doc = {
        "format": RANGES_FORMAT,
        "source": source.name,
        "source_sha256": sha,
        "recipe": QUANT_VERSION,
        "method": "MinMax",
        "calibration": calibration,
        "onnxruntime": onnxruntime.__version__,
    }
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(ranges.items())]
    text = json.dumps(doc, indent=1)[:-2] + ',\n "ranges": {\n' + ",\n".join(lines) + "\n }\n}\n"
    path = out_dir / ranges_name(source, sha)
    atomic.write_bytes(path, text.encode("utf-8"))
    return path
