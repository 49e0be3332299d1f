"""One factory returns a model together with its own preprocessing (open_clip style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .. import __version__
from ..errors import ModelError
from .engines import (
    EXPORT_VERSION,
    ONNX_OPSET,
    Engine,
    OnnxEngine,
    TorchEngine,
    cache_dir,
    export_onnx,
    resolve_device,
    resolve_engine,
)
from .network import FeatureExtractor, build_network
from .preprocess import Preprocess
from .registry import DEFAULT_MODEL, ModelSpec, file_sha256, get_spec


@dataclass
class EmbeddingModel:
    """A ready model: ``preprocess`` turns a PIL image into pixels, ``embed`` pixels into
    L2-normalised float32 rows. ``key`` names model, preprocessing and strategy."""

    spec: ModelSpec
    preprocess: Preprocess
    strategy: str
    engine: Engine
    weights_sha256: str

    @property
    def key(self) -> str:
        return model_key(self.spec.name, self.preprocess, self.strategy)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised features of a float32 NCHW batch, run in engine-sized slices."""
        step = self.engine.max_batch
        feats = np.concatenate(
            [
                np.asarray(
                    self.engine(np.ascontiguousarray(pixels[i : i + step], np.float32)), np.float32
                )
                for i in range(0, max(len(pixels), 1), step)
            ]
        )
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        return feats / np.maximum(norms, 1e-12)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed(np.stack([self.preprocess(im) for im in images]))

    def manifest(self) -> dict[str, Any]:
        """What a collection records of the model that embedded it."""
        return {
            "model": self.spec.name,
            "arch": self.spec.arch,
            "weights": {"source": self.spec.weights, "sha256": self.weights_sha256},
            "preprocess": self.preprocess.to_dict(),
            "strategy": self.strategy,
            "dim": self.dim,
            "key": self.key,
            "engine": self.engine.name,
            "bannermatch": __version__,
        }


def model_key(name: str, preprocess: Preprocess, strategy: str) -> str:
    return f"{name}__{preprocess.key}__{strategy}"


def create_model(
    name: str = DEFAULT_MODEL,
    *,
    engine: str = "auto",
    device: str = "cpu",
    strategy: str = "cls",
    fit: str | None = None,
    resize_size: int | None = None,
    crop_size: int | None = None,
    interpolation: str | None = None,
) -> EmbeddingModel:
    """Load a preset with its weights, its preprocessing and an inference engine."""
    import timm
    from timm.data import resolve_data_config

    spec = get_spec(name)
    if strategy not in spec.strategies:
        raise ModelError(
            f"strategy {strategy!r} is not available for {name}; "
            f"choose one of {', '.join(spec.strategies)}"
        )
    device = resolve_device(device)
    engine = resolve_engine(engine, device)
    cfg = resolve_data_config({}, pretrained_cfg=timm.get_pretrained_cfg(spec.arch).to_dict())
    preprocess = Preprocess.from_timm_config(
        cfg, fit=fit, resize_size=resize_size, crop_size=crop_size, interpolation=interpolation
    )
    weights_sha = file_sha256(spec.weights_file())
    if engine == "onnx":
        path = (
            cache_dir()
            / "onnx"
            / f"{spec.arch}-{weights_sha[:16]}-{preprocess.crop_size}px-{strategy}"
            f"-opset{ONNX_OPSET}-v{EXPORT_VERSION}.onnx"
        )
        if not path.is_file():
            export_onnx(FeatureExtractor(build_network(spec), strategy), path, preprocess.crop_size)
        runner: Engine = OnnxEngine(path)
    else:
        runner = TorchEngine(FeatureExtractor(build_network(spec), strategy), device)
    return EmbeddingModel(spec, preprocess, strategy, runner, weights_sha)
