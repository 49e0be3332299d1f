"""``bannermatch eval``: retrieval quality of a model on a folder of grouped images.

A TSV file names each image's group (for the covers data: the game). Every
image whose group has two or more usable members is a query; the database is
every usable image of the folder, listed in the TSV or not (unlisted images are
distractors: they can be retrieved but never count as a hit). An image never
retrieves itself. For each query the other images are ranked by cosine
similarity, and

- recall@k: the fraction of queries with at least one same-group image among
  their k nearest other images;
- AP: the mean, over the query's same-group images, of the precision at each
  one's rank in the full ranking of all other images; mAP is the mean AP;
- first-hit rank: the rank of the nearest same-group image (1 is best).

Ranking is a blocked matrix product over float32 rows: ``block x N`` scores at
a time, never ``N x N``. Ties are broken by row order (folder order).
"""

from __future__ import annotations

import csv
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.acquire.inputs import InputItem, scan_input
from bannermatch.defaults import BATCH_SIZE, DEFAULT_MODEL
from bannermatch.embed.batches import iter_batches
from bannermatch.embed.models import EmbeddingModel, create_model
from bannermatch.embed.models.precision import calibrate
from bannermatch.errors import BannermatchError
from bannermatch.evaluation.text import TextEval, embedder, prepare_texts, text_line, text_metrics
from bannermatch.progress import progress_bar

#: The recall@k cut-offs reported.
RECALL_KS = (1, 5, 10)
#: Scores kept in memory at once while ranking (block rows x N columns).
BLOCK_ELEMENTS = 1 << 21
#: A file listed in the TSV that is not on disk.
NOT_FOUND = "file not found"


@dataclass(frozen=True)
class Metrics:
    """Retrieval metrics over the queries of one embedding matrix."""

    n_queries: int
    recall: dict[int, float]
    map: float
    mean_first_rank: float
    median_first_rank: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_queries": self.n_queries,
            **{f"recall@{k}": round(v, 6) for k, v in sorted(self.recall.items())},
            "mAP": round(self.map, 6),
            "mean_first_rank": round(self.mean_first_rank, 3),
            "median_first_rank": self.median_first_rank,
        }


@dataclass(kw_only=True)
class EvalRun:
    """What every evaluation reports beside its own figures: the images and model, the
    files it skipped, and its time."""

    images: str
    model: str
    model_key: str
    engine: str
    metrics: Metrics
    bad: list[dict[str, str]] = field(default_factory=list)
    n_read: int = 0  # files read and decoded or refused during embedding
    seconds: float = 0.0
    embed_seconds: float = 0.0
    rerank: int | None = None  # top K verified with local features (docs/verification.md)
    global_metrics: Metrics | None = None  # with rerank: the figures before it
    rerank_cpu_ms: float = 0.0  # with rerank: mean verification CPU time a query

    @property
    def images_per_second(self) -> float:
        return self.n_read / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def _model_dict(self) -> dict[str, Any]:
        return {"model": self.model, "model_key": self.model_key, "engine": self.engine}

    def _run_dict(self) -> dict[str, Any]:
        verified = {
            "global": self.global_metrics.to_dict() if self.global_metrics else None,
            "rerank_cpu_ms": round(self.rerank_cpu_ms, 2),
        }
        return {
            **(verified if self.rerank else {}),
            "n_bad": len(self.bad),
            "bad": self.bad,
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }

    def _run_lines(self) -> list[str]:
        before = self.global_metrics
        verified = (
            [
                f"verified re-rank of the top {self.rerank} (+ local-feature candidates): "
                f"{self.rerank_cpu_ms:.1f} ms CPU a query; before it: recall@1 "
                f"{before.recall.get(1, float('nan')):.4f}, mAP {before.map:.4f}"
            ]
            if self.rerank and before
            else []
        )
        return [
            *verified,
            f"{self.seconds:.1f}s in all, embedding at {self.images_per_second:.1f} img/s; "
            f"{len(self.bad)} bad file(s) skipped",
            *(f"skipped {b['file']}: {b['reason']}" for b in self.bad),
        ]


@dataclass(kw_only=True)
class EvalResult(EvalRun):
    """What ``bannermatch eval`` reports; ``to_dict`` is its JSON."""

    groups: str
    n_images: int
    n_listed: int
    n_distractors: int
    n_groups: int
    text: dict[str, Any] | None = None  # --text-bias, --mask-text, ... (evaluation.text)

    task = "groups"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "images": self.images,
            "groups": self.groups,
            **self._model_dict(),
            "n_images": self.n_images,
            "n_listed": self.n_listed,
            "n_distractors": self.n_distractors,
            "n_groups": self.n_groups,
            "rerank": self.rerank,
            **self.metrics.to_dict(),
            **({"text": self.text} if self.text is not None else {}),
            **self._run_dict(),
        }

    def summary(self) -> str:
        m = self.metrics
        recalls = "  ".join(f"recall@{k} {v:.4f}" for k, v in sorted(m.recall.items()))
        lines = [
            f"{self.model_key} ({self.engine}): {self.n_images} images "
            f"({self.n_distractors} not in the TSV), {self.n_groups} groups, "
            f"{m.n_queries} queries",
            f"{recalls}  mAP {m.map:.4f}",
            f"rank of the first same-group image: mean {m.mean_first_rank:.2f}, "
            f"median {m.median_first_rank:g}",
            *([text_line(self.text)] if self.text is not None else []),
            *self._run_lines(),
        ]
        return "\n".join(lines)


# the groups file ------------------------------------------------------------


def read_groups(
    path: str | os.PathLike[str], file_column: str = "file", group_column: str = "group"
) -> dict[str, str]:
    """``{file: group}`` from a quote-free TSV with a header row.

    Rows with an empty file are ignored; an empty group means "no group" (the
    image is a distractor). A file listed twice with different groups is an error.
    """
    p = Path(path)
    if not p.is_file():
        raise BannermatchError(f"groups file not found: {path}")
    with open(p, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        columns = reader.fieldnames or []
        for column in (file_column, group_column):
            if column not in columns:
                hint = " (is it tab-separated?)" if len(columns) == 1 else ""
                raise BannermatchError(
                    f"{path}: no column {column!r}; its columns are: "
                    f"{', '.join(columns) or '(none: the file is empty)'}{hint}"
                )
        groups: dict[str, str] = {}
        for row in reader:
            name = (row.get(file_column) or "").strip()
            group = (row.get(group_column) or "").strip()
            if not name:
                continue
            if groups.setdefault(name, group) != group:
                raise BannermatchError(
                    f"{path}:{reader.line_num}: {name} is listed again with another group "
                    f"({groups[name]!r}, then {group!r})"
                )
    return groups


# metrics --------------------------------------------------------------------


def query_rows(labels: np.ndarray) -> np.ndarray:
    """Rows whose label (>= 0) is shared by at least one other row; -1 is no group."""
    labels = np.asarray(labels)
    grouped = labels >= 0
    counts = np.bincount(labels[grouped], minlength=1) if grouped.any() else np.zeros(1, int)
    return np.flatnonzero(grouped & (counts[np.where(grouped, labels, 0)] >= 2))


def first_hits_and_ap(
    emb: np.ndarray,
    labels: np.ndarray,
    queries: np.ndarray,
    *,
    block: int | None = None,
    scores_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of the first same-group image (1-based) and AP of each query row.

    Scores ``block x N`` rows at a time (``scores_of(rows)`` when given, else cosine of the
    rows); the query itself is ranked last and dropped.
    """
    emb = np.asarray(emb, np.float32)
    labels = np.asarray(labels)
    n = len(emb)
    block = block or max(1, BLOCK_ELEMENTS // max(n, 1))
    first = np.empty(len(queries), np.int64)
    ap = np.empty(len(queries), np.float64)
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        scores = emb[rows] @ emb.T if scores_of is None else scores_of(rows)
        scores[np.arange(len(rows)), rows] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, : n - 1]
        hits = labels[order] == labels[rows][:, None]
        ranks = np.arange(1, n, dtype=np.float64)
        precision = np.cumsum(hits, axis=1) / ranks
        first[start : start + len(rows)] = hits.argmax(axis=1) + 1
        ap[start : start + len(rows)] = (precision * hits).sum(axis=1) / hits.sum(axis=1)
    return first, ap


def retrieval_metrics(
    emb: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    ks: Sequence[int] = RECALL_KS,
    block: int | None = None,
) -> Metrics:
    """recall@k, mAP and first-hit ranks of L2-normalised rows grouped by ``labels``.

    ``labels[i]`` is row i's group number, or -1 for a row with no group.
    """
    labels = np.asarray(labels, np.int64)
    if len(labels) != len(emb):
        raise ValueError(f"{len(labels)} labels for {len(emb)} rows")
    queries = query_rows(labels)
    if len(queries) == 0:
        raise BannermatchError("nothing to evaluate: no group has two usable images")
    first, ap = first_hits_and_ap(emb, labels, queries, block=block)
    return metrics_from_ranks(first, ap, ks)


def metrics_from_ranks(first: np.ndarray, ap: np.ndarray, ks: Sequence[int]) -> Metrics:
    """Metrics from each query's first-hit rank (1-based) and AP."""
    return Metrics(
        n_queries=len(first),
        recall={k: float(np.mean(first <= k)) for k in ks},
        map=float(ap.mean()),
        mean_first_rank=float(first.mean()),
        median_first_rank=float(np.median(first)),
    )


# the evaluation -------------------------------------------------------------


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def _database(folder: Path, listed: dict[str, str]) -> tuple[list[InputItem], list[dict]]:
    """The folder's images plus listed files the scan skipped; listed files not on disk."""
    scanned = scan_input(folder)
    items = list(scanned.items)
    seen = {_norm(it.source) for it in items}
    missing = []
    for name in listed:
        path = folder / name
        if _norm(path) in seen:
            continue
        if not path.is_file():
            missing.append({"file": name, "reason": NOT_FOUND})
            continue
        seen.add(_norm(path))
        st = path.stat()
        items.append(InputItem(str(path), path.stem, name, st.st_size, st.st_mtime))
    return items, missing


def embed_items(
    items: list[InputItem],
    model: EmbeddingModel,
    batch_size: int,
    progress: bool,
    desc: str = "embedding",
) -> tuple[np.ndarray, list[InputItem], list[tuple[InputItem, str]]]:
    """Rows of the items that decoded, those items, and the others with their reasons."""
    rows: list[np.ndarray] = []
    ok: list[InputItem] = []
    failed: list[tuple[InputItem, str]] = []
    bar = progress_bar(len(items), desc, enabled=progress)
    for batch in iter_batches(items, model, batch_size=batch_size):
        rows.append(batch.embeddings)
        ok.extend(d.item for d in batch.ok)
        failed.extend((d.item, d.error or "undecodable") for d in batch.failed)
        bar.update(len(batch.ok) + len(batch.failed))
    bar.close()
    emb = np.concatenate(rows) if rows else np.zeros((0, model.dim), np.float32)
    return emb, ok, failed


def _relpath(item: InputItem, folder: Path) -> str:
    try:
        return Path(item.source).relative_to(folder).as_posix()
    except ValueError:
        return item.relpath


def _labels(ok: list[InputItem], folder: Path, listed: dict[str, str]) -> tuple[np.ndarray, int]:
    """Group numbers of the embedded rows (-1: no group), and how many groups make queries."""
    group_of = {_norm(folder / name): group for name, group in listed.items() if group}
    numbers: dict[str, int] = {}
    labels = np.full(len(ok), -1, np.int64)
    for row, item in enumerate(ok):
        group = group_of.get(_norm(item.source))
        if group is not None:
            labels[row] = numbers.setdefault(group, len(numbers))
    sizes = Counter(labels[labels >= 0].tolist())
    return labels, sum(1 for s in sizes.values() if s >= 2)


def evaluate(
    images: str | os.PathLike[str],
    groups: str | os.PathLike[str],
    *,
    file_column: str = "file",
    group_column: str = "group",
    model: str | EmbeddingModel = DEFAULT_MODEL,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    ks: Sequence[int] = RECALL_KS,
    rerank: int | None = None,
    text: TextEval | None = None,
    **model_options: Any,
) -> EvalResult:
    """Embed the folder ``images`` and measure how well same-group images find each other.

    ``model`` is a preset name (built with ``model_options``: engine, device,
    strategy, fit, resize_size, crop_size, interpolation) or a loaded model.
    """
    t0 = time.perf_counter()
    listed = read_groups(groups, file_column, group_column)
    folder = Path(images)
    if not folder.is_dir():
        raise BannermatchError(f"images folder not found: {images}")
    folder = Path(os.path.abspath(folder))
    items, bad = _database(folder, listed)
    # the banners' text (bannermatch.evaluation.text): read, and masked for --mask-text
    items, texts, text_figures = prepare_texts(items, text, bool(rerank), progress)
    if isinstance(model, EmbeddingModel):
        net = model
    else:
        options = {k: v for k, v in model_options.items() if v is not None}
        net = calibrate(create_model(model, **options), items)  # int8: on these images
    t_embed = time.perf_counter()
    emb, ok, failed = embed_items(items, net, batch_size, progress)
    embed_seconds = time.perf_counter() - t_embed
    bad += [{"file": _relpath(it, folder), "reason": reason} for it, reason in failed]
    labels, n_groups = _labels(ok, folder, listed)
    metrics = before = retrieval_metrics(emb, labels, ks=ks)
    cpu = 0.0
    if text is not None and text.active:
        run = embedder(net, batch_size, progress)
        metrics, figures = text_metrics(emb, ok, labels, texts, text, run, ks)
        text_figures = figures | text_figures
    if rerank:  # the top `rerank` verified with local features (docs/verification.md)
        from bannermatch.evaluation.rerank import reranked_on_files

        metrics, cpu = reranked_on_files([it.source for it in ok], emb, labels, rerank, ks)
    listed_keys = {_norm(folder / name) for name in listed}
    n_listed = sum(_norm(it.source) in listed_keys for it in ok)
    return EvalResult(
        images=str(images),
        groups=str(groups),
        model=net.spec.name,
        model_key=net.key,
        engine=net.engine.name,
        n_images=len(ok),
        n_listed=n_listed,
        n_distractors=len(ok) - n_listed,
        n_groups=n_groups,
        rerank=rerank,
        global_metrics=before if rerank else None,
        rerank_cpu_ms=cpu * 1000,
        text=text_figures if text is not None and text.active else None,
        metrics=metrics,
        bad=bad,
        n_read=len(items),
        seconds=time.perf_counter() - t0,
        embed_seconds=embed_seconds,
    )
