"""``bannermatch eval IMAGES --copies``: does an altered copy find its original?

Every image of a folder is altered in several ways (``alterations``: crop,
resize, JPEG, flip, colour jitter, overlaid text); each copy is a query, the
originals are the database, as when ``similar COLLECTION altered.jpg`` looks up
a re-uploaded banner. For each copy the originals are ranked by cosine
similarity; its only relevant image is its own original, so

- recall@k: the fraction of copies whose original is among the k nearest;
- AP of a copy is ``1 / rank`` of its original, and mAP their mean (the mean
  reciprocal rank);

overall and per alteration. An original that cannot be decoded is reported and
skipped (no copies are made of it). Ties are ranked by database order.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.acquire.inputs import InputItem, scan_input
from bannermatch.defaults import BATCH_SIZE, DEFAULT_MODEL
from bannermatch.embed.batches import default_workers
from bannermatch.embed.models import EmbeddingModel, create_model
from bannermatch.embed.models.precision import calibrate
from bannermatch.errors import BannermatchError, ImageError
from bannermatch.evaluation.alterations import alter, parse_alterations
from bannermatch.evaluation.groups import (
    BLOCK_ELEMENTS,
    RECALL_KS,
    EvalRun,
    Metrics,
    embed_items,
    metrics_from_ranks,
)
from bannermatch.images import load_image
from bannermatch.progress import progress_bar

#: the file listing the copies of a kept copy set: file, original, alteration
COPIES_TSV = "copies.tsv"


@dataclass
class Copy:
    item: InputItem  # the altered file
    original: int  # the original's number in CopySet.originals
    alteration: str


@dataclass
class CopySet:
    """Originals of a folder and their altered copies on disk."""

    folder: Path
    originals: list[InputItem]  # those that decoded, in folder order
    copies: list[Copy]
    alterations: list[str]
    seed: int
    bad: list[dict[str, str]] = field(default_factory=list)  # originals that did not decode
    #: images added to the database that are no copy's original
    distractors: list[InputItem] = field(default_factory=list)


def make_copies(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    alterations: str | Sequence[str] | None = None,
    seed: int = 0,
    distractors: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> CopySet:
    """Write every alteration of every image of the folder ``images`` into ``out``
    (``<number>-<alteration>.png``, lossless) and list them in ``out/copies.tsv``.
    ``distractors``: a folder of other images, added to the database."""
    names = parse_alterations(alterations)
    folder = Path(images)
    if not folder.is_dir():
        raise BannermatchError(f"images folder not found: {images}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    originals = scan_input(folder).items
    if not originals:
        raise BannermatchError(f"no images in {images}")
    others = []
    if distractors is not None:
        if not Path(distractors).is_dir():
            raise BannermatchError(f"distractors folder not found: {distractors}")
        others = scan_input(distractors).items

    def work(number: int) -> tuple[list[Copy], str | None]:
        item = originals[number]
        try:
            image = load_image(item.source).image
        except ImageError as exc:
            return [], str(exc)
        copies = []
        for name in names:
            path = out / f"{number:06d}-{name}.png"
            alter(image, name, seed, number).save(path, compress_level=1)
            st = path.stat()
            copies.append(
                Copy(
                    InputItem(str(path), path.stem, path.name, st.st_size, st.st_mtime),
                    number,
                    name,
                )
            )
        return copies, None

    copies: list[Copy] = []
    kept: list[InputItem] = []  # the originals that decoded: the database
    bad: list[dict[str, str]] = []
    bar = progress_bar(len(originals), "altering", enabled=progress)
    with ThreadPoolExecutor(default_workers()) as pool:
        for number, (made, error) in enumerate(pool.map(work, range(len(originals)))):
            if error is not None:
                bad.append({"file": originals[number].relpath, "reason": error})
            else:
                copies += [Copy(c.item, len(kept), c.alteration) for c in made]
                kept.append(originals[number])
            bar.update()
    bar.close()
    rows = ["file\toriginal\talteration"] + [
        f"{c.item.relpath}\t{kept[c.original].relpath}\t{c.alteration}" for c in copies
    ]
    (out / COPIES_TSV).write_text("\n".join(rows) + "\n", "utf-8")
    return CopySet(folder, kept, copies, names, seed, bad, others)


def copy_ranks(
    queries: np.ndarray, database: np.ndarray, targets: np.ndarray, *, block: int | None = None
) -> np.ndarray:
    """The 1-based rank of ``database[targets[i]]`` among all database rows for query i
    (most similar first; ties ranked by database order), in blocks of query rows."""
    queries = np.asarray(queries, np.float32)
    database = np.asarray(database, np.float32)
    n = len(database)
    block = block or max(1, BLOCK_ELEMENTS // max(n, 1))
    ranks = np.empty(len(queries), np.int64)
    columns = np.arange(n)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        t = targets[start : start + block]
        scores = q @ database.T
        own = scores[np.arange(len(q)), t][:, None]
        ahead = (scores > own) | ((scores == own) & (columns[None, :] < t[:, None]))
        ranks[start : start + len(q)] = ahead.sum(axis=1) + 1
    return ranks


@dataclass(kw_only=True)
class CopyEvalResult(EvalRun):
    """What ``bannermatch eval --copies`` reports; ``to_dict`` is its JSON. ``metrics``
    are over every copy."""

    alterations: list[str]
    seed: int
    n_images: int  # originals in the database
    n_distractors: int  # other images in the database
    by_alteration: dict[str, Metrics]
    global_by_alteration: dict[str, Metrics] | None = None  # with rerank: before it
    #: --text-bias: the synthetic title check (evaluation.titles)
    titles: dict[str, Any] | None = None

    task = "copies"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "images": self.images,
            **self._model_dict(),
            "seed": self.seed,
            "n_images": self.n_images,
            "n_distractors": self.n_distractors,
            **self.metrics.to_dict(),
            "alterations": {name: m.to_dict() for name, m in self.by_alteration.items()},
            "rerank": self.rerank,
            **({"global_alterations": _dicts(self.global_by_alteration)} if self.rerank else {}),
            **({"titles": self.titles} if self.titles is not None else {}),
            **self._run_dict(),
        }

    def summary(self) -> str:
        from bannermatch.evaluation.titles import title_line
        from bannermatch.tables import format_table

        before = {**(self.global_by_alteration or {}), "all": self.global_metrics}
        rows = [
            [name, m.n_queries, *(m.recall[k] for k in sorted(m.recall)), m.map]
            + ([before[name].recall[1]] if self.rerank and before.get(name) else [])  # type: ignore[union-attr]
            for name, m in [*self.by_alteration.items(), ("all", self.metrics)]
        ]
        ks = sorted(self.metrics.recall)
        headers = ["alteration", "copies", *(f"recall@{k}" for k in ks), "mAP"]
        headers += ["global recall@1"] if self.rerank else []
        table = format_table(headers, rows)
        lines = [
            f"{self.model_key} ({self.engine}): {self.metrics.n_queries} altered copies of "
            f"{self.n_images} images must find their original among "
            f"{self.n_images + self.n_distractors} (seed {self.seed})",
            table,
            *([title_line(self.titles)] if self.titles is not None else []),
            *self._run_lines(),
        ]
        return "\n".join(lines)


def _embed_database(
    copy_set: CopySet, net: EmbeddingModel, batch_size: int, progress: bool
) -> tuple[np.ndarray, list[InputItem], list[InputItem], list[tuple[InputItem, str]]]:
    """The rows of the originals then the distractors, the originals embedded, every item
    embedded (in row order), and the items that failed with their reasons."""
    db, ok, failed = embed_items(copy_set.originals, net, batch_size, progress, "originals")
    if not copy_set.distractors:
        return db, ok, list(ok), failed
    more, more_ok, failed_extra = embed_items(
        copy_set.distractors, net, batch_size, progress, "distractors"
    )
    return np.concatenate([db, more]), ok, [*ok, *more_ok], failed + failed_extra


def evaluate_copy_set(
    copy_set: CopySet,
    *,
    model: str | EmbeddingModel = DEFAULT_MODEL,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    ks: Sequence[int] = RECALL_KS,
    rerank: int | None = None,
    **model_options: Any,
) -> CopyEvalResult:
    """Embed the originals and copies of ``copy_set`` with ``model`` and score them;
    ``rerank=K``: also after the verified re-rank (docs/verification.md)."""
    t0 = time.perf_counter()
    if isinstance(model, EmbeddingModel):
        net = model
    else:
        net = create_model(model, **{k: v for k, v in model_options.items() if v is not None})
        net = calibrate(net, copy_set.originals + copy_set.distractors)  # int8: on these
    t_embed = time.perf_counter()
    db, ok, database, failed = _embed_database(copy_set, net, batch_size, progress)
    n_originals = len(ok)
    row_of = {id(item): row for row, item in enumerate(ok)}
    number_row = {n: row_of.get(id(item)) for n, item in enumerate(copy_set.originals)}
    copies = [c for c in copy_set.copies if number_row[c.original] is not None]
    emb, done, failed_copies = embed_items(
        [c.item for c in copies], net, batch_size, progress, "copies"
    )
    embed_seconds = time.perf_counter() - t_embed
    by_item = {id(c.item): c for c in copies}
    kept = [by_item[id(item)] for item in done]
    if not kept:
        raise BannermatchError(f"nothing to evaluate: no usable image in {copy_set.folder}")
    targets = np.array([number_row[c.original] for c in kept], np.int64)
    ranks = before = copy_ranks(emb, db, targets)
    names = np.array([c.alteration for c in kept])
    cpu = 0.0
    if rerank:
        from bannermatch.evaluation.rerank import reranked_copy_ranks

        sources = [it.source for it in database], [c.item.source for c in kept]
        ranks, cpu = reranked_copy_ranks(*sources, db, emb, targets, rerank)
    bad = list(copy_set.bad)
    bad += [{"file": it.relpath, "reason": reason} for it, reason in failed + failed_copies]
    return CopyEvalResult(
        images=str(copy_set.folder),
        model=net.spec.name,
        model_key=net.key,
        engine=net.engine.name,
        alterations=copy_set.alterations,
        seed=copy_set.seed,
        n_images=n_originals,
        n_distractors=len(db) - n_originals,
        metrics=metrics_from_ranks(ranks, 1.0 / ranks, ks),
        by_alteration=_by_alteration(ranks, names, copy_set.alterations, ks),
        rerank=rerank,
        global_metrics=metrics_from_ranks(before, 1.0 / before, ks) if rerank else None,
        global_by_alteration=(
            _by_alteration(before, names, copy_set.alterations, ks) if rerank else None
        ),
        rerank_cpu_ms=cpu * 1000,
        bad=bad,
        n_read=len(copy_set.originals) + len(copy_set.distractors) + len(copies),
        seconds=time.perf_counter() - t0,
        embed_seconds=embed_seconds,
    )


def _dicts(metrics: dict[str, Metrics] | None) -> dict[str, Any]:
    return {name: m.to_dict() for name, m in (metrics or {}).items()}


def _by_alteration(
    ranks: np.ndarray, names: np.ndarray, alterations: Sequence[str], ks: Sequence[int]
) -> dict[str, Metrics]:
    return {
        name: metrics_from_ranks(ranks[names == name], 1.0 / ranks[names == name], ks)
        for name in alterations
        if (names == name).any()
    }


@contextmanager
def copies_of(
    images: str | os.PathLike[str],
    keep_copies: str | os.PathLike[str] | None = None,
    alterations: str | Sequence[str] | None = None,
    seed: int = 0,
    distractors: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Iterator[CopySet]:
    """:func:`make_copies` into ``keep_copies``, or into a temporary folder that lasts as
    long as the ``with`` block."""
    with tempfile.TemporaryDirectory(prefix="bannermatch-copies-") as tmp:
        yield make_copies(
            images,
            keep_copies or tmp,
            alterations=alterations,
            seed=seed,
            distractors=distractors,
            progress=progress,
        )


def evaluate_copies(
    images: str | os.PathLike[str],
    *,
    alterations: str | Sequence[str] | None = None,
    seed: int = 0,
    keep_copies: str | os.PathLike[str] | None = None,
    distractors: str | os.PathLike[str] | None = None,
    model: str | EmbeddingModel = DEFAULT_MODEL,
    batch_size: int = 64,
    progress: bool = True,
    rerank: int | None = None,
    **model_options: Any,
) -> CopyEvalResult:
    """Copy detection on the folder ``images``: alter every image (into ``keep_copies``,
    or a temporary folder), then measure how often each copy retrieves its original
    among the originals and the images of the folder ``distractors``."""
    t0 = time.perf_counter()
    with copies_of(images, keep_copies, alterations, seed, distractors, progress) as copy_set:
        result = evaluate_copy_set(
            copy_set,
            model=model,
            batch_size=batch_size,
            progress=progress,
            rerank=rerank,
            **model_options,
        )
    result.seconds = time.perf_counter() - t0
    return result
