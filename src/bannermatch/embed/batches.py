"""The embedding stage: decode, preprocess and embed in worker threads, in input order.

Each worker thread takes a job (up to the engine's ``max_batch`` inputs), decodes
and preprocesses its images straight into a batch buffer of its own (PIL and
NumPy release the GIL while they work), then runs the engine on it; at most
``engine.streams`` jobs run the engine at once, so while some threads infer the
others decode. A bounded window of jobs is in flight, and results come back in
input order, so a batch's rows are deterministic and memory stays flat however
many inputs there are. A file that cannot be decoded is returned as a failure
with its reason and never stops the batch, the job or the run.

:func:`embed_simple` is the same computation one image at a time, with no
threads: the reference the pipeline is tested against.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from bannermatch.acquire.inputs import InputItem
from bannermatch.embed.models import EmbeddingModel, Preprocess
from bannermatch.errors import ImageError
from bannermatch.images import load_image


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


def decode_item(item: InputItem, preprocess: Preprocess, out: np.ndarray | None = None) -> Decoded:
    """Read, decode and preprocess one input; into ``out`` (a (3, S, S) float32 view) when
    given. Any failure, even a decoder's own bug, comes back as ``error``, never raised."""
    if item.error:
        return Decoded(item, error=item.error)
    try:
        img = load_image(
            item.source,
            item.offset,
            item.size if item.offset >= 0 else -1,
            draft_size=preprocess.draft_size,
        )
        image = img.image if item.mask is None else item.mask(img.image)
        if out is None:
            pixels = preprocess(image)
        else:
            preprocess.into(image, out)
            pixels = out
    except ImageError as exc:
        return Decoded(item, error=str(exc))
    except Exception as exc:  # a decoder bug must not stop the run; report it precisely
        return Decoded(item, error=f"decoder error: {type(exc).__name__}: {exc}")
    return Decoded(item, pixels, img.sha256, img.width, img.height, img.mode, img.format)


def default_workers(model: EmbeddingModel | None = None) -> int:
    """Threads for decoding: one per core (2 to 8). For embedding with ``model``: one per
    core and one more, at most 32; each runs the engine when a stream is free (on the
    CPU, one stream per core) and decodes the rest of the time."""
    from bannermatch.embed.models.engines import cpu_threads

    if model is not None:
        return min(32, cpu_threads() + 1)
    return max(2, min(8, cpu_threads()))


def _empty(model: EmbeddingModel) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, model.dim), np.float32), np.zeros(0, np.float32)


class _Buffers(threading.local):
    """Each worker thread's own batch buffer, allocated once and reused for every job."""

    array: np.ndarray | None = None


def _job(items: Sequence[InputItem], model: EmbeddingModel, buffers: _Buffers) -> Batch:
    """Decode ``items`` into this thread's buffer, then embed the rows that decoded."""
    size = model.preprocess.crop_size
    if buffers.array is None or len(buffers.array) < len(items):  # the first job is the largest
        buffers.array = model.engine.new_batch(len(items), size)
    buf = buffers.array
    ok: list[Decoded] = []
    failed: list[Decoded] = []
    for item in items:
        d = decode_item(item, model.preprocess, buf[len(ok)])
        (ok if d.error is None else failed).append(d)
    embeddings, norms = model.embed_with_norms(buf[: len(ok)]) if ok else _empty(model)
    for d in ok:
        d.pixels = None  # the buffer is the next job's: keep only the rows
    return Batch(ok, failed, embeddings, norms)


def _merge(parts: list[Batch], model: EmbeddingModel) -> Batch:
    if len(parts) == 1:
        return parts[0]
    ok = [d for p in parts for d in p.ok]
    failed = [d for p in parts for d in p.failed]
    if not ok:
        return Batch(ok, failed, *_empty(model))
    return Batch(
        ok,
        failed,
        np.concatenate([p.embeddings for p in parts]),
        np.concatenate([p.norms for p in parts]),
    )


def iter_batches(
    items: Sequence[InputItem],
    model: EmbeddingModel,
    *,
    batch_size: int = 64,
    workers: int | None = None,
) -> Iterator[Batch]:
    """Embed ``items`` in order, ``batch_size`` inputs (good or bad) per yielded batch."""
    workers = workers or default_workers(model)
    job_size = max(1, min(model.engine.max_batch, batch_size))
    # (batch number, items) per job; a batch's jobs are consecutive
    jobs = (
        (start, items[j : min(j + job_size, start + batch_size, len(items))])
        for start in range(0, len(items), batch_size)
        for j in range(start, min(start + batch_size, len(items)), job_size)
    )
    buffers = _Buffers()
    with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
        pending: deque[tuple[int, Future[Batch]]] = deque()

        def refill() -> None:
            while len(pending) < 2 * workers:
                nxt = next(jobs, None)
                if nxt is None:
                    return
                pending.append((nxt[0], pool.submit(_job, nxt[1], model, buffers)))

        refill()
        try:
            while pending:
                start, parts = pending[0][0], []
                while pending and pending[0][0] == start:
                    parts.append(pending.popleft()[1].result())
                    refill()
                yield _merge(parts, model)
        finally:  # the caller stopped early (or failed): drop the jobs not started
            for _, future in pending:
                future.cancel()


def embed_simple(
    items: Sequence[InputItem], model: EmbeddingModel
) -> tuple[np.ndarray, list[Decoded]]:
    """The pipeline's reference: each input decoded, preprocessed and embedded alone, in
    this thread. Returns the rows of the inputs that decoded, and every input's outcome."""
    rows, done = [], []
    for item in items:
        d = decode_item(item, model.preprocess)
        done.append(d)
        if d.pixels is not None:
            rows.append(model.embed(d.pixels[None])[0])
            d.pixels = None
    emb = np.stack(rows) if rows else _empty(model)[0]
    return emb, done


def embed_paths(
    paths: Sequence[str], model: EmbeddingModel, *, batch_size: int = 64
) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Embed image files: (rows of the files that decoded, their positions, errors by position)."""
    items = [InputItem(str(p), os.path.basename(p), str(p), -1, 0.0) for p in paths]
    position = {id(it): i for i, it in enumerate(items)}
    rows: list[np.ndarray] = []
    kept: list[int] = []
    errors: dict[int, str] = {}
    for batch in iter_batches(items, model, batch_size=batch_size):
        rows.append(batch.embeddings)
        kept.extend(position[id(d.item)] for d in batch.ok)
        errors.update({position[id(d.item)]: d.error or "" for d in batch.failed})
    emb = np.concatenate(rows) if rows else np.zeros((0, model.dim), np.float32)
    return emb, kept, errors
