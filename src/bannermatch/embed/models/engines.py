"""Inference engines behind one call: float32 NCHW pixels in, float32 features out.

``torch`` runs the network in PyTorch (CPU or CUDA, half precision on CUDA);
``onnx`` runs it in ONNX Runtime on the CPU from a model exported once and
cached under the user's cache folder, its parity with PyTorch checked at export.

An engine says how many calls may run at once (``streams``) and how large a
call is worth making (``max_batch``); the embedding pipeline runs that many
calls side by side, each in its own thread, while other threads decode. On the
CPU, ONNX Runtime runs one single-threaded stream per core: the streams never
wait on each other, so decoding threads that share the cores slow them down
without stalling them (one session with two threads of its own loses a third of
its speed on a loaded 2-core machine, waiting for its slower thread).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from bannermatch.errors import ModelError
from bannermatch.store import atomic

if TYPE_CHECKING:
    from torch import nn

ENGINES = ("auto", "onnx", "torch")
ONNX_OPSET = 17
#: cosine similarity that ONNX features must reach against PyTorch's at export
PARITY_MIN_COSINE = 0.9999
#: 3: the input-shape arithmetic frozen to constants (same outputs, 1.36x faster here)
EXPORT_VERSION = 3


def cache_dir() -> Path:
    """Where exported models live: ``$BANNERMATCH_CACHE`` or the user cache folder."""
    env = os.environ.get("BANNERMATCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("bannermatch"))


def cpu_threads() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cores = min(cores or 1, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


class Engine(Protocol):
    name: str
    #: the largest batch worth running at once: on a CPU, small batches stay in cache
    #: (ONNX Runtime, one stream per core on 2 cores: the same images/s at batches of 4
    #: to 32, and 415 MB at 8 against 732 MB at 16)
    max_batch: int
    #: how many calls may run at once, each from its own thread, to use the device fully
    streams: int
    #: the width of the feature rows
    dim: int

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...

    def new_batch(self, n: int, size: int) -> np.ndarray:
        """A float32 (n, 3, size, size) array to preprocess into and call with, allocated
        where the engine reads fastest (page-locked memory for a GPU)."""
        ...


class TorchEngine:
    def __init__(self, module: nn.Module, input_size: int, device: str = "cpu"):
        import torch

        self.device = torch.device(device)
        self.half = self.device.type == "cuda"
        self.name = f"torch-{self.device.type}"
        self.max_batch = 128 if self.half else 16
        self.streams = 1  # one CUDA stream; on the CPU, PyTorch's own threads
        module = module.to(self.device).eval()
        if self.half:
            module = module.half().to(memory_format=torch.channels_last)
        else:
            torch.set_num_threads(cpu_threads())
        self.module = module
        self.dim = int(self(np.zeros((1, 3, input_size, input_size), np.float32)).shape[1])

    def new_batch(self, n: int, size: int) -> np.ndarray:
        import torch

        pinned = self.half and torch.cuda.is_available()
        return torch.empty((n, 3, size, size), dtype=torch.float32, pin_memory=pinned).numpy()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(pixels)
            if self.half:
                # from page-locked memory (new_batch's) the copy runs without a staging copy
                x = x.pin_memory().to(self.device, non_blocking=True).half()
                x = x.contiguous(memory_format=torch.channels_last)
            return self.module(x).float().cpu().numpy()


class OnnxEngine:
    max_batch = 8

    def __init__(self, path: Path, streams: int | None = None, precision: str = "fp32"):
        import onnxruntime as ort

        self.path = path
        #: ``fp32``, or ``int8`` for a model quantised by :mod:`.quantize`
        self.precision = precision
        self.name = "onnx-cpu" if precision == "fp32" else f"onnx-cpu-{precision}"
        self.streams = streams or cpu_threads()
        opts = ort.SessionOptions()
        # one session, called from ``streams`` threads at once: each call on its own core
        opts.intra_op_num_threads = max(1, cpu_threads() // self.streams)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[1])

    def new_batch(self, n: int, size: int) -> np.ndarray:
        return np.empty((n, 3, size, size), np.float32)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: pixels})[0]


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def export_onnx(module: nn.Module, path: Path, input_size: int, what: str = "") -> None:
    """Export ``module`` to ``path`` (atomically) after checking parity with PyTorch."""
    import warnings

    import onnxruntime as ort
    import torch

    module = module.float().eval()
    gen = torch.Generator().manual_seed(0)
    probe = torch.randn(4, 3, input_size, input_size, generator=gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    what = what or path.name
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (probe,),
                    str(tmp),
                    input_names=["pixels"],
                    output_names=["features"],
                    dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                    opset_version=ONNX_OPSET,
                    dynamo=False,
                )
        except Exception as exc:  # the message may carry the whole traced graph: one line
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ModelError(
                f"{what}: cannot export to ONNX ({type(exc).__name__}: {reason}); "
                "use --engine torch"
            ) from None
        _freeze(tmp, input_size)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {"pixels": probe.numpy()})[0]
        with torch.inference_mode():
            want = module(probe).numpy()
        worst = float(_cosine_rows(got, want).min())
        if worst < PARITY_MIN_COSINE:
            raise ModelError(
                f"{what}: ONNX export disagrees with PyTorch (cosine {worst:.6f}); "
                "use --engine torch"
            )
        with open(tmp, "rb") as fh:
            atomic.write_bytes(path, fh.read())
    finally:
        tmp.unlink(missing_ok=True)


def _freeze(path: Path, input_size: int) -> None:
    """Store the export's input-shape arithmetic (TF-"same" pads) as constants, in place:
    the input size is fixed by the preprocessing (``quantize.freeze_shape_arithmetic``)."""
    import onnx

    from bannermatch.embed.models.quantize import freeze_shape_arithmetic

    model = onnx.load(str(path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return  # weights in external files (past 2 GB): left as exported
    onnx.save(freeze_shape_arithmetic(model, input_size), str(path))


def resolve_engine(engine: str, device: str) -> str:
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "torch" if device.startswith("cuda") else "onnx"
    if engine == "onnx" and device != "cpu":
        raise ModelError("the onnx engine runs on the CPU only; use --engine torch for a GPU")
    return engine


#: files that a GPU driver makes on Linux (NVIDIA's; AMD's ROCm, which PyTorch calls CUDA)
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/kfd")


def cuda_available() -> bool:
    """Whether PyTorch sees a GPU; on Linux without a GPU driver, answered without
    importing PyTorch (which costs seconds and half a gigabyte)."""
    if sys.platform.startswith("linux") and not any(map(os.path.exists, GPU_DRIVER_FILES)):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda") and not cuda_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ModelError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return device
