"""int8 quantisation: real ONNX models (small conv nets exported by PyTorch), quantised
by ONNX Runtime, on calibration images or on ranges measured once, their cache reused and
rebuilt when their source changes, and the shape arithmetic of TF-"same" padding frozen
before quantising."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bannermatch.embed.models import ranges
from bannermatch.embed.models.engines import OnnxEngine, cpu_threads, export_onnx
from bannermatch.embed.models.quantize import (
    calibrator_threads,
    freeze_shape_arithmetic,
    int8_path,
    quantize_int8,
)
from bannermatch.embed.models.registry import file_sha256
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
    out = quantize_int8(src, calib, exclude=[])  # every conv (the recipe keeps 32 px nets fp32)
    assert out != src and out.is_file()
    assert quantize_int8(src, calib, exclude=[]) == out  # the cached file is reused
    mtime = out.stat().st_mtime_ns
    quantize_int8(src, calib, exclude=[])
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


def test_the_calibrator_runs_on_the_cores_this_process_may_use(tmp_path: Path) -> None:
    """Within ``calibrator_threads()`` ONNX Runtime's calibrator session runs a thread for
    each core this process may use; outside it, ONNX Runtime's default again (0: one for
    each core of the machine)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    src = _export(tmp_path / "net.onnx", 0)

    def threads() -> int:
        calibrator = create_calibrator(
            src,
            augmented_model_path=str(tmp_path / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        return int(calibrator.infer_session.get_session_options().intra_op_num_threads)

    with calibrator_threads():
        assert threads() == cpu_threads()
    assert threads() == 0


def test_no_calibration_images_is_one_clear_error(tmp_path: Path) -> None:
    src = _export(tmp_path / "net.onnx", 0)
    with pytest.raises(ModelError, match="calibration"):
        quantize_int8(src, np.zeros((0, 3, 32, 32), np.float32))


def _same_padding_net(seed: int):  # type: ignore[no-untyped-def]
    """Strided convolutions padded as timm's Conv2dSame pads (from the input's shape)."""
    import math

    import torch
    from torch import nn
    from torch.nn import functional as F

    class SameConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ih, iw = x.shape[-2:]
            ph = max((math.ceil(ih / 2) - 1) * 2 + 3 - ih, 0)
            pw = max((math.ceil(iw / 2) - 1) * 2 + 3 - iw, 0)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return super().forward(x)

    torch.manual_seed(seed)
    return nn.Sequential(
        SameConv(3, 8, 3, stride=2),
        nn.ReLU6(),
        SameConv(8, 16, 3, stride=2),
        nn.ReLU6(),
        SameConv(16, 16, 3, stride=2),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _raw_export(net, path: Path, size: int) -> Path:  # type: ignore[no-untyped-def]
    """``net`` exported as PyTorch exports it, the shape arithmetic left in."""
    import torch

    torch.onnx.export(
        net.eval(),
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["pixels"],
        output_names=["features"],
        dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def test_same_padding_is_frozen_at_export_and_before_quantising(tmp_path: Path) -> None:
    import onnx

    raw = _raw_export(_same_padding_net(0), tmp_path / "raw.onnx", 32)
    assert "Shape" in {n.op_type for n in onnx.load(str(raw)).graph.node}
    frozen = freeze_shape_arithmetic(onnx.load(str(raw)), 32)
    ops = {n.op_type for n in frozen.graph.node}
    assert "Shape" not in ops and "Ceil" not in ops and "Pad" in ops
    x = np.random.default_rng(1).normal(size=(24, 3, 32, 32)).astype(np.float32)
    fixed = tmp_path / "frozen.onnx"
    onnx.save(frozen, str(fixed))
    want = OnnxEngine(raw, streams=1)(x)
    np.testing.assert_allclose(OnnxEngine(fixed, streams=1)(x), want, rtol=1e-5, atol=1e-6)
    exported = tmp_path / "exported.onnx"
    export_onnx(_same_padding_net(0), exported, 32)  # bannermatch's export freezes them
    assert "Shape" not in {n.op_type for n in onnx.load(str(exported)).graph.node}
    got = OnnxEngine(quantize_int8(raw, x[:16], exclude=[]), streams=1)(x)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.mean() > 0.98, cos


def test_the_recipe_keeps_the_high_resolution_convolutions_fp32(tmp_path: Path) -> None:
    import onnx

    from bannermatch.embed.models.quantize import default_exclude

    raw = _raw_export(_same_padding_net(0), tmp_path / "raw.onnx", 32)
    convs = [n.name for n in onnx.load(str(raw)).graph.node if n.op_type == "Conv"]
    kept = default_exclude(freeze_shape_arithmetic(onnx.load(str(raw)), 32))
    assert [c for c in convs if c in kept] == convs[:2]  # outputs 16 and 8 px of 32: fp32
    assert any(k.endswith("GlobalAveragePool") for k in kept)  # the pooling head: fp32


def test_ranges_measured_once_make_the_same_model_and_follow_their_source(
    tmp_path: Path, calib: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _export(tmp_path / "net.onnx", 0)
    folder = tmp_path / "ranges"
    monkeypatch.setattr(ranges, "shipped_dir", lambda: folder)
    measured = ranges.measure_ranges(src, calib)
    shipped = ranges.save_ranges(folder, src, measured, {"images": len(calib)})
    assert ranges.read_ranges(shipped)["ranges"] == measured  # exact float32 round trip
    assert ranges.shipped_ranges(src) == shipped
    made = quantize_int8(src, ranges=shipped, exclude=[])  # no image run
    calibrated = quantize_int8(src, calib, exclude=[])
    assert made != calibrated  # two cache entries, one model, byte for byte
    assert file_sha256(made) == file_sha256(calibrated)
    _export(src, 1)  # new weights: the ranges belong to the old export
    assert ranges.shipped_ranges(src) is None
