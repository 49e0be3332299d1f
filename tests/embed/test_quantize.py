"""int8 quantisation: a real ONNX model (a small conv net exported by PyTorch),
quantised by ONNX Runtime, its cache reused and rebuilt when its source changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bannermatch.embed.models.engines import OnnxEngine, export_onnx
from bannermatch.embed.models.quantize import int8_path, quantize_int8
from bannermatch.errors import ModelError


def _export(path: Path, seed: int) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    export_onnx(net, path, 32)
    return path


@pytest.fixture
def calib() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(16, 3, 32, 32)).astype(np.float32)


def test_int8_model_runs_close_to_fp32_and_is_cached(tmp_path: Path, calib: np.ndarray) -> None:
    src = _export(tmp_path / "net.onnx", 0)
    out = quantize_int8(src, calib)
    assert out != src and out.is_file()
    assert quantize_int8(src, calib) == out  # the cached file is reused
    mtime = out.stat().st_mtime_ns
    quantize_int8(src, calib)
    assert out.stat().st_mtime_ns == mtime
    a, b = OnnxEngine(src, streams=1)(calib), OnnxEngine(out, streams=1)(calib)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.98
    ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_changed_source_or_recipe_gives_a_new_int8_model(tmp_path: Path, calib: np.ndarray) -> None:
    src = _export(tmp_path / "net.onnx", 0)
    first = quantize_int8(src, calib)
    _export(src, 1)  # the same path, new weights: a stale int8 file must not be reused
    second = quantize_int8(src, calib)
    assert second != first and second.is_file()
    assert int8_path(src, calib[:8]) != second  # another calibration sample
    assert int8_path(src, calib, exclude=["/0/Conv"]) != second  # other fp32 nodes


def test_no_calibration_images_is_one_clear_error(tmp_path: Path) -> None:
    src = _export(tmp_path / "net.onnx", 0)
    with pytest.raises(ModelError, match="calibration"):
        quantize_int8(src, np.zeros((0, 3, 32, 32), np.float32))
