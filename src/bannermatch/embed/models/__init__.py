"""Models: presets, preprocessing, engines, and the factory that ties them together.

The factory (and with it PyTorch) is imported on first use, so that commands
which only read a collection start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bannermatch.defaults import DEFAULT_MODEL
from bannermatch.embed.models.preprocess import Preprocess
from bannermatch.embed.models.registry import PRESETS, ModelSpec, get_spec

if TYPE_CHECKING:
    from bannermatch.embed.models.factory import EmbeddingModel, create_model, model_key

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "EmbeddingModel",
    "ModelSpec",
    "Preprocess",
    "create_model",
    "get_spec",
    "model_key",
]


def __getattr__(name: str) -> Any:
    if name in {"EmbeddingModel", "create_model", "model_key"}:
        from bannermatch.embed.models import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'bannermatch.embed.models' has no attribute {name!r}")
