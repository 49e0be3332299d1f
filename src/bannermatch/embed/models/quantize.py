"""Static int8 quantisation of an exported ONNX model, calibrated on real images.

ONNX Runtime's ``quantize_static`` in QDQ format, weights per channel (signed
int8), activations per tensor (unsigned int8, MinMax over the calibration
batches). On a CPU with AVX-512 VNNI (this project's build machine) the int8
convolutions run on VNNI; without VNNI (AVX2 only) int8 gains less, so any choice
of int8 as a default must be measured on the CPU that runs it.

The quantised model is cached next to its fp32 source under a name that carries
the source's content hash and the calibration's hash, so a changed source or a
different calibration sample gives a new file and never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bannermatch.errors import ModelError
from bannermatch.store import atomic

log = logging.getLogger(__name__)

#: bumped when the quantisation recipe changes (format, calibration method, exclusions)
QUANT_VERSION = 1
CALIBRATION_BATCH = 8


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def int8_path(source: Path, calibration: np.ndarray, exclude: Sequence[str] = ()) -> Path:
    """The cache path of ``source`` quantised with ``calibration`` (float32 NCHW) and
    the nodes ``exclude`` kept in fp32: each of the three in the name's hashes."""
    h = hashlib.sha256(np.ascontiguousarray(calibration, np.float32).tobytes())
    h.update("\n".join(sorted(exclude)).encode())
    cal = h.hexdigest()
    stem = source.name.removesuffix(".onnx")
    return source.with_name(
        f"{stem}-int8q{QUANT_VERSION}-{file_sha256(source)[:12]}-{cal[:12]}.onnx"
    )


class _Batches:
    """The CalibrationDataReader protocol of ONNX Runtime over an in-memory array."""

    def __init__(self, input_name: str, pixels: np.ndarray, batch: int):
        self._it: Iterator[dict[str, np.ndarray]] = (
            {input_name: pixels[i : i + batch]} for i in range(0, len(pixels), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - called by some calibrators only
        raise NotImplementedError


def quantize_int8(
    source: Path,
    calibration: np.ndarray,
    *,
    exclude: Sequence[str] = (),
    input_name: str = "pixels",
) -> Path:
    """Quantise ``source`` to int8 (cached); returns the int8 model's path.

    ``calibration``: preprocessed float32 NCHW images, a sample of the collection's
    own pictures. ``exclude``: node names kept in fp32 (sensitive layers).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ModelError(f"{source.name}: int8 needs at least one calibration image")
    out = int8_path(source, calibration, exclude)
    if out.is_file():
        return out
    tmp_pre = out.with_name(f".{out.name}.{os.getpid()}.pre.tmp")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        quant_pre_process(str(source), str(tmp_pre), skip_symbolic_shape=True)
        quantize_static(
            str(tmp_pre),
            str(tmp),
            _Batches(input_name, calibration, CALIBRATION_BATCH),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(exclude),
        )
        with open(tmp, "rb") as fh:
            atomic.write_bytes(out, fh.read())
    finally:
        tmp.unlink(missing_ok=True)
        tmp_pre.unlink(missing_ok=True)
    log.info("quantised %s to int8 on %d images: %s", source.name, len(calibration), out.name)
    return out
