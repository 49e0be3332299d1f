"""Art-only embeddings (``index --mask-text``): the model that embeds an image with its
text painted over (the masking itself is ``ocr.mask``), under its own model key."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from bannermatch.errors import BannermatchError
from bannermatch.ocr.mask import PAD, check_method, mask_key

if TYPE_CHECKING:
    from bannermatch.embed.index import IndexResult
    from bannermatch.embed.models import EmbeddingModel
    from bannermatch.ocr.engine import OcrResult


@dataclass
class MaskedModel:
    """An embedding model whose rows are the art-only images: its own key and manifest,
    the rest (engine, preprocessing) the plain model's."""

    plain: EmbeddingModel
    method: str
    ocr_settings: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plain, name)

    @property
    def key(self) -> str:
        return mask_key(self.plain.key, self.method)

    def manifest(self) -> dict[str, Any]:
        mask = {"method": self.method, "pad": PAD, "ocr": self.ocr_settings}
        return self.plain.manifest() | {"key": self.key, "text_mask": json.loads(json.dumps(mask))}


def masked_model(
    plain: EmbeddingModel, collection: str | os.PathLike[str], method: str
) -> tuple[EmbeddingModel, dict[str, OcrResult]]:
    """The art-only model of ``plain`` (typed as the plain one: it answers the same), and
    the text the collection's OCR store holds; an error when OCR never ran on it."""
    from bannermatch.ocr.store import OcrStore

    check_method(method)
    store = OcrStore.open(collection)
    if not store.manifest:
        raise BannermatchError(
            f"{collection} has no banner text yet: run `bannermatch index ... --ocr` first "
            "(--mask-text masks the text boxes it finds)"
        )
    return cast("EmbeddingModel", MaskedModel(plain, method, store.manifest)), store.results


@dataclass
class MaskedIndexResult:
    """What ``index --mask-text`` reports: the plain rows' run, then the art-only rows'."""

    plain: IndexResult
    masked: IndexResult

    def summary(self) -> str:
        return f"{self.plain.summary()}\nart only: {self.masked.summary()}"

    def to_dict(self) -> dict[str, Any]:
        return self.plain.to_dict() | {"text_mask": self.masked.to_dict()}
