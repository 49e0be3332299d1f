"""``eval`` with the banners' text: how much the neighbours follow it, and the remedies.

``bannermatch eval IMAGES --groups TSV`` with

- ``--text-bias``: the share of each query's top-5 neighbours from another group whose
  text shares a word of 4+ letters with the query's (:func:`.textsim.text_bias`), beside
  recall and mAP, with what a text-blind ranking would give (``text_bias_chance``);
- ``--mask-text blur|inpaint|fill``: the art-only embeddings (:mod:`.mask`), queries and
  database alike;
- ``--query-transform mirror|flip|mirror+flip``: the queries embedded turned, the
  database as it is (the original tools' mitigation);
- ``--text-weight W``: rank by ``(1 - W) * image + W * text`` similarity (:mod:`.textsim`);
- ``--ocr-from COLLECTION``: the text a collection's ``index --ocr`` stored, matched by
  the images' SHA-256, instead of reading every image again (what it lacks is read).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bannermatch.errors import BannermatchError
from bannermatch.mirror import transform_image
from bannermatch.ocr.engine import OcrResult
from bannermatch.ocr.mask import TextMask, boxes_of, check_method
from bannermatch.progress import progress_bar
from bannermatch.textsim import BIAS_K, TextSimilarity, check_weight, combine, text_bias, top_k

if TYPE_CHECKING:
    from bannermatch.acquire.inputs import InputItem
    from bannermatch.embed.models import EmbeddingModel
    from bannermatch.evaluation.groups import Metrics

TRANSFORMS = {"mirror": (True, False), "flip": (False, True), "mirror+flip": (True, True)}


@dataclass(frozen=True)
class TextEval:
    """What ``eval`` does with the text (all off: a plain evaluation)."""

    bias: bool = False
    mask: str | None = None
    transform: str | None = None
    text_weight: float = 0.0
    ocr_from: str | None = None

    def __post_init__(self) -> None:
        if self.mask is not None:
            check_method(self.mask)
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise BannermatchError(
                f"unknown query transform {self.transform!r}; choose one of {', '.join(TRANSFORMS)}"
            )
        check_weight(self.text_weight)

    @property
    def active(self) -> bool:
        return self.bias or self.mask is not None or bool(self.transform) or self.text_weight > 0

    @property
    def needs_text(self) -> bool:
        return self.bias or self.mask is not None or self.text_weight > 0


@dataclass(frozen=True)
class _Turn:
    """A picklable image transform for :attr:`InputItem.mask` (masking first, if any)."""

    mirror: bool
    flip: bool
    before: TextMask | None = None

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.before is not None:
            image = self.before(image)
        return transform_image(image, self.mirror, self.flip)


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def read_texts(
    items: Sequence[InputItem], ocr_from: str | None, progress: bool, workers: int | None = None
) -> tuple[dict[str, OcrResult], dict[str, float]]:
    """source -> OCR text of each item (from ``ocr_from``'s store by SHA-256, else read);
    and the timing: images read, seconds."""
    from bannermatch.ocr.read import read_image
    from bannermatch.ocr.store import OcrStore

    by_sha: dict[str, OcrResult] = {}
    if ocr_from is not None:
        store = OcrStore.open(ocr_from)
        if not store.manifest:
            raise BannermatchError(f"{ocr_from} has no banner text: run `index --ocr` on it")
        by_sha = {store.sha256[i]: r for i, r in store.results.items() if store.sha256.get(i)}
    texts: dict[str, OcrResult] = {}
    todo = []
    for it in items:
        found = by_sha.get(_sha256(it.source) or "") if by_sha else None
        if found is not None:
            texts[it.source] = found
        elif not it.error:
            todo.append(it.source)
    t0 = time.perf_counter()
    bar = progress_bar(len(todo), "reading text", enabled=progress)
    with ThreadPoolExecutor(workers) as pool:
        for source, out in zip(todo, pool.map(read_image, todo), strict=True):
            if isinstance(out, OcrResult):
                texts[source] = out
            bar.update(1)
    bar.close()
    return texts, {"ocr_read": len(todo), "ocr_seconds": round(time.perf_counter() - t0, 3)}


def prepare_texts(
    items: list[InputItem], options: TextEval | None, rerank: bool, progress: bool
) -> tuple[list[InputItem], dict[str, OcrResult], dict[str, Any]]:
    """The items to embed (masked for ``--mask-text``), their text and its timing; the
    items as they are when ``options`` need no text."""
    if options is None or not options.needs_text:
        return items, {}, {}
    if rerank:
        raise BannermatchError("--rerank does not combine with the text options")
    texts, figures = read_texts(items, options.ocr_from, progress)
    if options.mask:
        items = masked_items(items, texts, options.mask)
    return items, texts, figures


def masked_items(
    items: Sequence[InputItem], texts: dict[str, OcrResult], method: str
) -> list[InputItem]:
    import dataclasses

    return [
        dataclasses.replace(it, mask=TextMask(boxes_of(texts.get(it.source)), method))
        for it in items
    ]


def text_metrics(
    emb: np.ndarray,
    ok: list[InputItem],
    labels: np.ndarray,
    texts: dict[str, OcrResult],
    options: TextEval,
    embed: Callable[[list[InputItem]], np.ndarray],
    ks: Sequence[int],
) -> tuple[Metrics, dict[str, Any]]:
    """The metrics of the ranking ``options`` give, and the text figures beside them.
    ``embed(items)`` embeds items as the database was (for the turned queries)."""
    from bannermatch.evaluation.groups import first_hits_and_ap, metrics_from_ranks, query_rows

    query_emb = emb
    if options.transform:
        mirror, flip = TRANSFORMS[options.transform]
        turned = [_turned(it, mirror, flip) for it in ok]
        query_emb = embed(turned)
    strings = [texts[it.source].text if it.source in texts else "" for it in ok]
    similarity = TextSimilarity(strings) if options.text_weight > 0 else None
    database = np.asarray(emb, np.float32)

    def scores_of(rows: np.ndarray) -> np.ndarray:
        image = np.asarray(query_emb[rows], np.float32) @ database.T
        if similarity is None:
            return image
        return combine(image, similarity.of_rows(rows), options.text_weight)

    queries = query_rows(labels)
    first, ap = first_hits_and_ap(database, labels, queries, scores_of=scores_of)
    figures: dict[str, Any] = {
        "mask": options.mask,
        "query_transform": options.transform,
        "text_weight": options.text_weight,
        "n_with_text": sum(bool(s.strip()) for s in strings),
    }
    if options.bias:
        neighbours = np.concatenate(
            [
                top_k(scores_of(block), block, BIAS_K)
                for block in np.array_split(queries, max(1, len(queries) // 256))
            ]
        )
        figures |= text_bias(neighbours, queries, labels, strings)
    return metrics_from_ranks(first, ap, ks), figures


def _turned(item: InputItem, mirror: bool, flip: bool) -> InputItem:
    import dataclasses

    before = item.mask if isinstance(item.mask, TextMask) else None
    return dataclasses.replace(item, mask=_Turn(mirror, flip, before))


def embedder(
    model: EmbeddingModel, batch_size: int, progress: bool
) -> Callable[[list[InputItem]], np.ndarray]:
    """Items -> their rows, all of which must decode (they did once already)."""
    from bannermatch.evaluation.groups import embed_items

    def run(items: list[InputItem]) -> np.ndarray:
        emb, _, failed = embed_items(items, model, batch_size, progress, "embedding queries")
        if failed:
            raise BannermatchError(f"{failed[0][0].source} no longer decodes: {failed[0][1]}")
        return emb

    return run


def text_line(figures: dict[str, Any]) -> str:
    """The summary's line of an evaluation with the text options."""
    how = [
        f"art only ({figures['mask']})" if figures.get("mask") else "",
        f"queries {figures['query_transform']}" if figures.get("query_transform") else "",
        f"text weight {figures['text_weight']:g}" if figures.get("text_weight") else "",
    ]
    line = ", ".join(h for h in how if h) or "plain"
    if "text_bias" in figures:
        line += (
            f"; text bias {figures['text_bias']:.4f} (of {figures['other_group_neighbours']} "
            f"top-{BIAS_K} neighbours from another group, {figures['sharing_a_word']} share a "
            f"word; chance {figures['text_bias_chance']:.4f})"
        )
    return f"{line}; {figures.get('n_with_text', 0)} images with text"
