"""Static int8 quantisation of an exported ONNX model, on activation ranges measured on
real images: calibrated here, or measured once and shipped (:mod:`.ranges`).

The recipe (``QUANT_VERSION`` 3; docs/performance.md has the measurements):

1. **Shape arithmetic frozen.** timm's TF-"same" padding is exported as arithmetic on
   the input's shape (Shape, Gather, Div, Ceil, Clip, ...) feeding each strided
   convolution's ``Pad``. ``quantize_static`` quantises that arithmetic too (its Clip,
   Mul and Add are ordinary float ops to it), which corrupts the pads: the feature
   maps come out 12x12 instead of 14x14 and the int8 vectors drift to a mean cosine of
   0.89 to fp32 whatever else the recipe does. The model's input size is fixed by its
   preprocessing, so every tensor that depends on the input's shape alone is computed
   once (at batch 1 and 2, which must agree) and stored as a constant.
2. ONNX Runtime's ``quant_pre_process`` (shape inference and its graph optimiser).
3. ``quantize_static``, QDQ format: weights signed int8 per channel, activations
   unsigned int8 per tensor, MinMax ranges over the calibration images (Percentile
   99.99 clips the ReLU6 ranges and loses; reduce_range loses; signed activations
   and the QOperator format measure the same).
4. Kept in fp32 (``default_exclude``): every convolution whose output is at least a
   quarter of the input's side (at 224 px: the stem and the first two stages, 112 and
   56 px; 10 of EfficientNet-Lite0's 49 convolutions) and the pooling head after the last
   convolution, so the vector itself is not rounded to 256 levels. The early, wide
   feature maps carry the largest activation ranges (up to +-100 after the first
   depthwise convolution), and their rounding error is what every later layer amplifies:
   keeping them fp32 lifts the mean cosine to fp32 from 0.977 (the stem alone) to 0.997
   (worst image 0.915 -> 0.989) for 1.3x the int8 CPU time (still 1.7x less than fp32).
   Keeping instead the residual ``Add`` nodes, the last 1x1 convolution or the depthwise
   convolutions in fp32 did not help (the last lost: 0.844).

On a CPU with AVX-512 VNNI (this project's build machine) the int8 convolutions run on
VNNI (u8 x s8 dot products accumulated in 32 bits); with AVX2 only, ONNX Runtime's
u8s8 kernels may saturate 16-bit intermediate sums and int8 gains less, so any choice
of int8 as a default must be measured on the CPU that runs it.

The quantised model is cached next to its fp32 source under a name that carries the
recipe version, the source's content hash and the calibration's hash (or the ranges
file's), so a changed source, sample, ranges file or recipe gives a new file and never
reuses a stale one. The same source and ranges give the same bytes: from shipped ranges,
every machine makes the model a calibration on the same images made.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bannermatch.embed.models.engines import cpu_threads
from bannermatch.embed.models.registry import file_sha256
from bannermatch.errors import ModelError
from bannermatch.store import atomic

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

#: bumped when the quantisation recipe changes (format, calibration method, exclusions)
QUANT_VERSION = 3
#: images a calibration call runs: ONNX Runtime's calibrator returns every intermediate
#: tensor of the call, so its memory grows with the batch (a 256-image calibration peaks at
#: 1.13 GB with batches of 8, 0.52 GB with 2, in the same time); MinMax ranges do not
#: depend on it
CALIBRATION_BATCH = 2
#: ops after which nothing is quantised: the pooling head that makes the vector
HEAD_OPS = ("GlobalAveragePool", "Flatten", "ReduceMean", "Reshape")


def int8_path(source: Path, calibration: np.ndarray, exclude: Sequence[str] | None = None) -> Path:
    """The cache path of ``source`` quantised with ``calibration`` (float32 NCHW) and
    the nodes ``exclude`` kept in fp32 (None: the recipe's): each in the name's hashes."""
    h = hashlib.sha256(np.ascontiguousarray(calibration, np.float32).tobytes())
    h.update("\n".join(sorted(exclude or ())).encode() if exclude is not None else b"default")
    cal = h.hexdigest()
    stem = source.name.removesuffix(".onnx")
    return source.with_name(
        f"{stem}-int8q{QUANT_VERSION}-{file_sha256(source)[:12]}-{cal[:12]}.onnx"
    )


def _shape_tensors(graph: onnx.GraphProto) -> tuple[set[str], list[str]]:
    """The tensors computed from the input's shape and constants alone, and those of them
    that ordinary (data) nodes read: the values to freeze."""
    shaped: set[str] = set()
    constant = {i.name for i in graph.initializer}
    for node in graph.node:  # nodes are in topological order
        ins = [i for i in node.input if i]
        if node.op_type == "Constant":
            constant.update(node.output)
        elif node.op_type == "Shape" or (
            ins and all(i in shaped or i in constant for i in ins) and any(i in shaped for i in ins)
        ):
            shaped.update(node.output)
    read: list[str] = []
    for node in graph.node:
        if node.output[0] in shaped or node.op_type in {"Shape", "Constant"}:
            continue
        read += [i for i in node.input if i in shaped and i not in read]
    return shaped, read


def freeze_shape_arithmetic(model: onnx.ModelProto, input_size: int) -> onnx.ModelProto:
    """``model`` with every value that depends only on its input's shape (at
    ``input_size`` square) and not on the batch size stored as a constant, and the
    arithmetic no longer needed removed. ONNX Runtime then folds the constant pads into
    the convolutions: the fp32 export runs 1.36x faster (docs/performance.md)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    _, read = _shape_tensors(graph)
    if not read:
        return model
    probe = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in probe.graph.value_info}
    probe.graph.output.extend(helper.make_tensor_value_info(t, types[t], None) for t in read)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = graph.input[0].name
    one, two = (
        session.run(read, {name: np.zeros((b, 3, input_size, input_size), np.float32)})
        for b in (1, 2)
    )
    frozen: set[str] = set()
    for tensor, a, b in zip(read, one, two, strict=True):
        if np.array_equal(a, b):  # a batch-dependent value (a Reshape's target) stays live
            graph.initializer.append(numpy_helper.from_array(a, tensor))
            frozen.add(tensor)
    live: set[str] = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in live for o in node.output) and not set(node.output) <= frozen:
            keep.append(node)
            live.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    used = [i for i in graph.initializer if i.name in live]
    del graph.initializer[:]
    graph.initializer.extend(used)
    return model


def default_exclude(model: onnx.ModelProto) -> list[str]:
    """The nodes the recipe keeps in fp32: every convolution whose output is at least a
    quarter of the input's side (EfficientNet-Lite0 at 224 px: the stem and the first two
    stages, 112 and 56 px, 10 of its 49 convolutions), and the pooling head after the last
    convolution."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    side = inferred.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    dims = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in inferred.graph.value_info
    }
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    out = [
        nodes[i].name
        for i in convs
        if side and (dims.get(nodes[i].output[0]) or [0])[-1] * 4 >= side
    ]
    last = convs[-1] if convs else len(nodes)
    out += [n.name for n in nodes[last + 1 :] if n.op_type in HEAD_OPS]
    return out


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


def ranges_int8_path(source: Path, ranges: Path, exclude: Sequence[str] | None = None) -> Path:
    """The cache path of ``source`` quantised with the ranges file ``ranges``
    (:mod:`.ranges`) and the nodes ``exclude`` kept in fp32 (None: the recipe's)."""
    h = hashlib.sha256(ranges.read_bytes())
    h.update("\n".join(sorted(exclude or ())).encode() if exclude is not None else b"default")
    stem = source.name.removesuffix(".onnx")
    return source.with_name(
        f"{stem}-int8q{QUANT_VERSION}-{file_sha256(source)[:12]}-r{h.hexdigest()[:12]}.onnx"
    )


def quantize_int8(
    source: Path,
    calibration: np.ndarray | None = None,
    *,
    ranges: Path | None = None,
    exclude: Sequence[str] | None = None,
    input_name: str = "pixels",
    ranges_out: Path | None = None,
) -> Path:
    """Quantise ``source`` to int8 (cached); returns the int8 model's path.

    ``calibration``: preprocessed float32 NCHW images, a sample of the collection's
    own pictures; or ``ranges``: a ranges file measured once (:mod:`.ranges`), and no
    image is run. ``exclude``: node names kept in fp32 (None: :func:`default_exclude`).
    ``ranges_out``: where to write the ranges a calibration measured (ONNX Runtime's
    calibration cache; the model is then made again even when cached).
    """
    if ranges is None and (calibration is None or len(calibration) == 0):
        raise ModelError(f"{source.name}: int8 needs at least one calibration image")
    if ranges is not None:
        out = ranges_int8_path(source, ranges, exclude)
    else:
        assert calibration is not None
        out = int8_path(source, calibration, exclude)
    if out.is_file() and ranges_out is None:
        return out
    import onnx  # only to make the model: 0.5 s to import

    tmp = {t: out.with_name(f".{out.name}.{os.getpid()}.{t}.tmp") for t in ("frozen", "pre", "q")}
    try:
        model = onnx.load(str(source))
        side = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value or (
            calibration.shape[-1] if calibration is not None else 0
        )
        if not side:
            raise ModelError(f"{source.name}: its input has no fixed size to quantise at")
        onnx.save(freeze_shape_arithmetic(model, int(side)), str(tmp["frozen"]))
        del model
        cache = ranges_out
        if ranges is not None:
            from bannermatch.embed.models.ranges import read_ranges, write_ort_cache

            cache = out.with_name(f".{out.name}.{os.getpid()}.ranges.tmp")
            tmp["ranges"] = cache
            write_ort_cache(read_ranges(ranges)["ranges"], cache)
        _quantize(tmp["frozen"], tmp["pre"], tmp["q"], calibration, cache, exclude, input_name)
        with open(tmp["q"], "rb") as fh:
            atomic.write_bytes(out, fh.read())
    finally:
        for t in tmp.values():
            t.unlink(missing_ok=True)
    how = f"the ranges of {ranges.name}" if ranges else f"{len(calibration)} images"  # type: ignore[arg-type]
    log.info("quantised %s to int8 with %s: %s", source.name, how, out.name)
    return out


def _quantize(
    frozen: Path,
    pre: Path,
    out: Path,
    calibration: np.ndarray | None,
    cache: Path | None,
    exclude: Sequence[str] | None,
    input_name: str,
) -> None:
    """``quantize_static`` with the recipe: on ``calibration``'s images, or with the ranges
    of ONNX Runtime's calibration cache ``cache`` when it exists (written there when not)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(frozen), str(pre), skip_symbolic_shape=True)
    if exclude is None:
        exclude = default_exclude(onnx.load(str(pre)))
    with calibrator_threads():
        quantize_static(
            str(pre),
            str(out),
            None if calibration is None else _Batches(input_name, calibration, CALIBRATION_BATCH),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(exclude),
            **({} if cache is None else {"calibration_cache_path": str(cache)}),
        )


_CALIBRATOR_LOCK = threading.Lock()


@contextlib.contextmanager
def calibrator_threads() -> Iterator[None]:
    """Within the block, ONNX Runtime's calibrator runs its session on the cores this
    process may use (:func:`.engines.cpu_threads`).

    Its ``CalibraterBase.create_inference_session`` takes no options: a thread for each
    core of the machine, which wait on each other in a process allowed fewer (a CPU set,
    a container's quota): 1.9x the time on one core of two. Its own method, with the
    thread count set, stands in for it until the block ends."""
    import onnxruntime
    from onnxruntime.quantization.calibrate import CalibraterBase

    def create_inference_session(self: CalibraterBase) -> None:
        opts = onnxruntime.SessionOptions()
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = cpu_threads()
        self.infer_session = onnxruntime.InferenceSession(
            self.augmented_model_path, sess_options=opts, providers=self.execution_providers
        )

    original = getattr(CalibraterBase, "create_inference_session", None)
    if original is None:  # another ONNX Runtime: its own way, whatever it is
        yield
        return
    with _CALIBRATOR_LOCK:
        CalibraterBase.create_inference_session = create_inference_session
        try:
            yield
        finally:
            CalibraterBase.create_inference_session = original
