"""``bannermatch models``: the presets, their sizes, and whether their weights are here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bannermatch.defaults import DEFAULT_MODEL
from bannermatch.embed.models.loaders import loader_for
from bannermatch.embed.models.registry import PRESETS
from bannermatch.errors import ModelError
from bannermatch.tables import format_table


@dataclass
class ModelInfo:
    name: str
    source: str
    dim: int | None
    input_size: int | None
    cached: bool
    text: bool
    labels: str | None  # the ImageNet classes its head predicts (label search)
    strategies: list[str]
    description: str
    default: bool


@dataclass
class ModelsResult:
    models: list[ModelInfo]

    def summary(self) -> str:
        rows = [
            [
                m.name + (" (default)" if m.default else ""),
                m.dim or "?",
                m.input_size or "?",
                "yes" if m.cached else "no",
                "yes" if m.text else "no",
                m.labels or "-",
                m.description,
            ]
            for m in self.models
        ]
        table = format_table(
            ["model", "dim", "input", "weights cached", "text tower", "labels", "description"], rows
        )
        return (
            f"{table}\n\nalso: timm:<name>, open_clip:<arch>/<tag>, hub:<owner/repo>:<entrypoint>, "
            "hub:<folder with hubconf.py>:<entrypoint>"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"models": [asdict(m) for m in self.models]}


def list_models() -> ModelsResult:
    """Every preset with its ``cls`` dimension, input size and local weights status."""
    infos = []
    for spec in PRESETS.values():
        try:
            loader = loader_for(spec)
            size: int | None = int(loader.data_config()["input_size"][-1])
            cached, labels = loader.cached(), loader.labels()
        except ModelError:
            size, cached, labels = None, False, None
        infos.append(
            ModelInfo(
                name=spec.name,
                source=spec.source,
                dim=spec.dim,
                input_size=size,
                cached=cached,
                text=spec.text,
                labels=labels,
                strategies=list(spec.strategies),
                description=spec.description,
                default=spec.name == DEFAULT_MODEL,
            )
        )
    return ModelsResult(infos)
