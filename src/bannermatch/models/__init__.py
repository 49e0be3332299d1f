"""Models: presets, preprocessing, engines, and the factory that ties them together."""

from .factory import EmbeddingModel, create_model, model_key
from .preprocess import Preprocess
from .registry import DEFAULT_MODEL, PRESETS, ModelSpec, get_spec

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
