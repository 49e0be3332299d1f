"""The embedding stage: decode and preprocess in worker threads, embed in batches.

Decoding (PIL releases the GIL while it decodes and resizes) overlaps with
inference through a bounded window of pending jobs; results come back in input
order, so a batch's rows are deterministic. A file that cannot be decoded is
returned as a failure with its reason and never stops the batch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .errors import ImageError
from .images import load_image
from .inputs import InputItem
from .models import EmbeddingModel


@dataclass
class Decoded:
    """One input after decoding: ``pixels`` when it worked, else ``error``."""

    item: InputItem
    pixels: np.ndarray | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None


@dataclass
class Batch:
    """Decoded inputs of one batch, and the embeddings of those that decoded."""

    ok: list[Decoded]
    failed: list[Decoded]
    embeddings: np.ndarray  # float32 (len(ok), D), L2-normalised
    norms: np.ndarray  # float32 (len(ok),), the raw features' norms (see models.factory)


def decode_item(item: InputItem, model: EmbeddingModel) -> Decoded:
    if item.error:
        return Decoded(item, error=item.error)
    try:
        img = load_image(item.source, item.offset, item.size if item.offset >= 0 else -1)
        pixels = model.preprocess(img.image)
    except ImageError as exc:
        return Decoded(item, error=str(exc))
    except Exception as exc:  # a decoder bug must not stop the run; report it precisely
        return Decoded(item, error=f"decoder error: {type(exc).__name__}: {exc}")
    return Decoded(item, pixels, img.sha256, img.width, img.height, img.mode, img.format)


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def iter_batches(
    items: Sequence[InputItem],
    model: EmbeddingModel,
    *,
    batch_size: int = 64,
    workers: int | None = None,
) -> Iterator[Batch]:
    """Embed ``items`` in order, ``batch_size`` inputs (good or bad) per yielded batch."""
    workers = workers or default_workers()
    window = max(batch_size * 2, workers * 4)
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Decoded]] = deque()
        it = iter(items)

        def refill() -> None:
            while len(pending) < window:
                nxt = next(it, None)
                if nxt is None:
                    return
                pending.append(pool.submit(decode_item, nxt, model))

        refill()
        while pending:
            results = []
            while pending and len(results) < batch_size:
                results.append(pending.popleft().result())
                refill()
            ok = [r for r in results if r.pixels is not None]
            failed = [r for r in results if r.pixels is None]
            if ok:
                pixels = np.stack([r.pixels for r in ok])  # type: ignore[misc]
                embeddings, norms = model.embed_with_norms(pixels)
            else:
                embeddings, norms = np.zeros((0, model.dim), np.float32), np.zeros(0, np.float32)
            for r in ok:
                r.pixels = None  # free memory early; the batch keeps only the rows
            yield Batch(ok, failed, embeddings, norms)


def embed_paths(
    paths: Sequence[str], model: EmbeddingModel, *, batch_size: int = 64
) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Embed image files: (rows of the files that decoded, their positions, errors by position)."""
    items = [InputItem(str(p), os.path.basename(p), str(p), -1, 0.0) for p in paths]
    position = {id(it): i for i, it in enumerate(items)}
    rows, kept, errors = [], [], {}
    for batch in iter_batches(items, model, batch_size=batch_size):
        rows.append(batch.embeddings)
        kept.extend(position[id(d.item)] for d in batch.ok)
        errors.update({position[id(d.item)]: d.error or "" for d in batch.failed})
    emb = np.concatenate(rows) if rows else np.zeros((0, model.dim), np.float32)
    return emb, kept, errors
