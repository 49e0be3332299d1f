"""``bannermatch index``: scan an input, catalogue it, embed what is new, commit.

Each finished batch is written to ``models/<key>/chunks/`` as one atomic file
and its catalogue rows are committed, so a killed run loses at most the batch
in flight. The final merge writes embeddings, items and manifest together
(:func:`bannermatch.store.collection.write_model_data`) and then drops the chunks.
Rows keep a deterministic order: earlier rows first, then new ones in input order.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from bannermatch.acquire.inputs import (
    InputItem,
    ScannedInput,
    Sidecar,
    label_inputs,
    read_sidecar,
    scan_input,
)
from bannermatch.defaults import BATCH_SIZE, DEFAULT_MODEL
from bannermatch.embed.batches import Batch, Decoded, iter_batches
from bannermatch.embed.models import EmbeddingModel, create_model
from bannermatch.embed.models.engines import resolve_engine
from bannermatch.embed.models.precision import calibrate_in, resolve_precision
from bannermatch.embed.models.preprocess import TORCH_KERNELS_MIN
from bannermatch.errors import BannermatchError, CollectionError
from bannermatch.progress import progress_bar
from bannermatch.store import atomic
from bannermatch.store.catalog import Catalog, Item
from bannermatch.store.collection import EMBEDDINGS, Collection, ModelData, write_model_data

CHUNKS = "chunks"


@dataclass
class IndexResult:
    collection: str
    model_key: str
    scanned: int = 0
    up_to_date: int = 0
    embedded: int = 0
    bad: list[dict[str, str]] = field(default_factory=list)
    removed: int = 0
    count: int = 0
    seconds: float = 0.0
    #: per names sidecar: its path, rows, rows naming an input file, and the others
    names: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"indexed {self.embedded} new image(s) in {self.seconds:.1f}s "
            f"({self.images_per_second:.1f} img/s); {self.up_to_date} up to date, "
            f"{len(self.bad)} bad, {self.removed} removed; "
            f"{self.count} items in {self.collection} [{self.model_key}]"
        ]
        for n in self.names:
            line = f"names from {n['file']}: {n['matched']} of {n['rows']} rows name an input file"
            if n["unmatched"]:
                shown = ", ".join(n["unmatched"][:3])
                more = " ..." if len(n["unmatched"]) > 3 else ""
                line += f"; {len(n['unmatched'])} do not ({shown}{more})"
            lines.append(line)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "model_key": self.model_key,
            "scanned": self.scanned,
            "up_to_date": self.up_to_date,
            "embedded": self.embedded,
            "bad": self.bad,
            "removed": self.removed,
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "names": self.names,
        }


@dataclass
class _Rows:
    """Rows of one model: ids, fingerprints, norms, and the file and row each vector is in
    (the committed ``embeddings.npy`` or a chunk): vectors stay on disk until the merge."""

    ids: list[str] = field(default_factory=list)
    fps: list[str] = field(default_factory=list)
    where: list[tuple[Path, int]] = field(default_factory=list)  # (.npy or chunk .npz, row)
    norms: list[float] = field(default_factory=list)

    def add(self, item_id: str, fp: str, path: Path, row: int, norm: float) -> None:
        self.ids.append(item_id)
        self.fps.append(fp)
        self.where.append((path, row))
        self.norms.append(norm)


def _assign_ids(
    items: list[InputItem], keys: list[str], by_source: dict[str, Item], taken: set[str]
) -> list[str]:
    ids = []
    for it, key in zip(items, keys, strict=True):
        known = by_source.get(key)
        if known is not None:
            ids.append(known.id)
            continue
        rel = it.relpath.rsplit(".", 1)[0] if "." in it.relpath else it.relpath
        for candidate in (it.stem, rel, it.relpath, it.source):
            if candidate not in taken:
                break
        else:  # every natural name is taken (by items of other inputs): number it
            candidate = next(f"{rel}~{n}" for n in itertools.count(2) if f"{rel}~{n}" not in taken)
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _import_rows(
    source: Collection, coll: Collection, cat: Catalog, items: list[InputItem]
) -> None:
    """Carry ids, names, URLs, audit flags and the query set of another collection's
    catalogue over to ``coll`` for the images about to be indexed from it."""
    with source.catalog() as src:
        by_path = {
            os.path.abspath(source.resolve_source(s)): it for s, it in src.by_sources().items()
        }
        queries = src.queries()
    known, taken = set(cat.by_sources()), cat.ids()
    rows = []
    for it in items:
        row, key = by_path.get(os.path.abspath(it.source)), coll.source_key(it.source)
        if row is None or key in known or row.id in taken:
            continue
        taken.add(row.id)
        rows.append(
            Item(id=row.id, name=row.name, source=key, url=row.url, flags=row.flags, meta=row.meta)
        )
    cat.upsert(rows)
    if queries and not cat.queries():
        cat.set_queries(queries, f"from {source.root}")


def _load_chunks(folder: Path, dim: int) -> list[tuple[Path, np.ndarray, list[str], list[str]]]:
    """The chunks a run left: (path, norms, ids, fingerprints); their vectors stay on disk."""
    chunks = []
    for path in sorted((folder / CHUNKS).glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                shape, norms = z["embeddings"].shape, z["norms"]
                meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if shape != (len(meta["ids"]), dim) or norms.shape != (shape[0],):
                raise ValueError(f"{path.name}: shape {shape}")
        except Exception:  # a chunk is written atomically; a bad (or old) one is simply redone
            path.unlink(missing_ok=True)
            continue
        chunks.append((path, norms, meta["ids"], meta["fingerprints"]))
    return chunks


def _write_chunk(folder: Path, number: int, batch: Batch, ids: list[str]) -> Path:
    meta = {"ids": ids, "fingerprints": [d.sha256 for d in batch.ok]}
    path = folder / CHUNKS / f"{number:08d}.npz"
    with atomic.atomic_open(path, "wb") as fh:
        np.savez(
            fh,
            embeddings=batch.embeddings.astype(np.float16),
            norms=batch.norms.astype(np.float32),
            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8),
        )
    return path


def _catalog_row(d: Decoded, item_id: str, source: str, known: Item | None) -> Item:
    """The catalogue row of a decoded input. What the catalogue knew of the item is kept:
    its name and URL, and its audit flags while the image is the same one."""
    it = d.item
    same_image = known is not None and d.sha256 is not None and known.sha256 == d.sha256
    return Item(
        id=item_id,
        name=known.name if known is not None and known.name else it.name or it.stem,
        source=source,
        url=known.url if known is not None else None,
        sha256=d.sha256,
        width=d.width,
        height=d.height,
        mode=d.mode,
        format=d.format,
        status="bad" if d.error else "ok",
        reason=d.error,
        size=it.size,
        mtime=it.mtime,
        flags=known.flags if same_image and known is not None else "",
        meta=known.meta if known is not None else "",
    )


def index(
    input_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    model: str | EmbeddingModel = DEFAULT_MODEL,
    *,
    names: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    progress: bool = True,
    skip_flagged: bool = False,
    address: str | None = None,
    actors: int | None = None,
    text_mask: str | None = None,
    **model_options: Any,
) -> IndexResult:
    """Index the images of ``input_path`` (one input or several: folders, lists of paths,
    .tar shards, collections) into the collection ``out`` with ``model``; ``names``: names
    sidecars (CSV, TSV or JSON) giving items their names and metadata.

    ``engine="ray"`` (among ``model_options``) runs the embedding stage as a Ray Data
    job (:mod:`bannermatch.embed.ray`) on the cluster at ``address`` (see
    :func:`bannermatch.embed.ray.connect`) with ``actors`` embedding actors, ``workers``
    decoding tasks in flight, and ``device`` for the actors; everything else is the same.

    ``text_mask="blur"|"inpaint"|"fill"`` embeds the art-only images instead, the text boxes
    that ``index --ocr`` found painted over, under their own key (:mod:`bannermatch.ocr.mask`),
    on either engine (on Ray, the boxes travel with the inputs to the decoding tasks).
    """
    if isinstance(model, str):  # as the command line: int8 where it is the CPU default
        model_options.setdefault("precision", "auto")
    embed: Embedder = LocalEmbedder(batch_size, workers)
    if model_options.get("engine") == "ray":
        from bannermatch.embed.ray import RayEmbedder

        if isinstance(model, EmbeddingModel):
            raise BannermatchError("engine='ray' takes a model name: each actor loads its own")
        device = model_options.get("device", "auto")
        embed = RayEmbedder(address, actors, device, batch_size, decoders=workers)
        # the driver's model gives the key, the manifest, the preprocessing and the
        # dimension, on the CPU, with the engine ``auto`` picks for the actors' device:
        # the fp32 ONNX export, which loads without timm or PyTorch once exported, or
        # PyTorch's network for actors on GPUs (--device cuda), which need no export. Ray
        # runs fp32, as PyTorch does: int8 is an error
        precision = resolve_precision(model_options.get("precision", "auto"), "torch")
        driver = resolve_engine("auto", device)
        model_options = {**model_options, "engine": driver, "device": "cpu", "precision": precision}
    elif address is not None or actors is not None:
        raise BannermatchError("--address and --actors go with --engine ray")
    try:
        return _index(
            input_path, out, model, embed, progress=progress, skip_flagged=skip_flagged,
            names=names, text_mask=text_mask, **model_options,
        )  # fmt: skip
    finally:
        embed.close()


class Embedder(Protocol):
    """How the batches of an index run are computed: here in threads, or on a cluster."""

    def batches(self, items: list[InputItem], model: EmbeddingModel) -> Iterator[Batch]: ...

    def engine_name(self, model: EmbeddingModel) -> str:
        """The manifest's ``engine`` for the rows embedded."""
        ...

    def close(self) -> None: ...


@dataclass
class LocalEmbedder:
    """Decoding threads and the model's own engine (``embed.batches.iter_batches``)."""

    batch_size: int = 64
    workers: int | None = None

    def batches(self, items: list[InputItem], model: EmbeddingModel) -> Iterator[Batch]:
        return iter_batches(items, model, batch_size=self.batch_size, workers=self.workers)

    def engine_name(self, model: EmbeddingModel) -> str:
        return model.engine.name

    def close(self) -> None:
        pass


def _scan_inputs(
    inputs: Sequence[str | os.PathLike[str]], coll: Collection
) -> tuple[ScannedInput, list[str], list[Collection]]:
    """Every input's images in input order (a file reached twice is one item), the folders
    listed whole (their vanished files are gone), and the collections among the inputs."""
    items: list[InputItem] = []
    roots: list[str] = []
    sources: list[Collection] = []
    seen: set[str] = set()
    for path in inputs:
        if (Path(path) / "catalog.sqlite").is_file():  # a collection: index its images
            sources.append(Collection(path))
            path = sources[-1].images_dir
        scanned = _outside(scan_input(path), coll.root, path)
        roots += [scanned.root] if scanned.root is not None else []
        for it in scanned.items:
            if it.source not in seen:
                seen.add(it.source)
                items.append(it)
    return ScannedInput(items, None), roots, sources


#: item id -> (fingerprint, chunk file, row, norm) of the rows embedded since the last merge
ChunkRows = dict[str, tuple[str, Path, int, float]]


def _index(
    input_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    model: str | EmbeddingModel,
    embed: Embedder,
    *,
    progress: bool,
    skip_flagged: bool,
    names: Sequence[str | os.PathLike[str]] = (),
    text_mask: str | None = None,
    **model_options: Any,
) -> IndexResult:
    started = time.perf_counter()
    coll = Collection(out)
    inputs = [input_path] if isinstance(input_path, (str, os.PathLike)) else list(input_path)
    if not inputs:
        raise BannermatchError("index needs at least one input")
    sidecars = [read_sidecar(n) for n in names]
    scanned, roots, source_colls = _scan_inputs(inputs, coll)
    coll.root.mkdir(parents=True, exist_ok=True)
    emb_model, texts = _run_model(model, coll, text_mask, model_options)
    folder = coll.model_dir(emb_model.key)
    emb_model = calibrate_in(emb_model, folder, scanned.items)  # int8: its stored model
    result = IndexResult(str(coll.root), emb_model.key, scanned=len(scanned.items))
    old = _previous(folder, emb_model)
    chunks = _load_chunks(folder, emb_model.dim)
    chunk_rows = _rows_in_chunks(chunks)
    run = _Run(coll, folder, emb_model, embed, chunk_rows, result)
    with coll.catalog(create=True) as cat:
        for source_coll in source_colls:
            if source_coll.root.resolve() != coll.root.resolve():
                _import_rows(source_coll, coll, cat, scanned.items)
        by_source = cat.by_sources()
        keys = [coll.source_key(it.source) for it in scanned.items]
        ids = _assign_ids(scanned.items, keys, by_source, cat.ids())
        known = {it.id: it for it in by_source.values()}
        flagged = {i for i, it in known.items() if it.flags} if skip_flagged else set()
        old_fps = {i: old.fingerprints[r] for i, r in old.row_of.items()} if old else {}
        todo = [
            (it, i)
            for it, i in zip(scanned.items, ids, strict=True)
            if i not in flagged and not _up_to_date(it, known.get(i), chunk_rows, old_fps.get(i))
        ]
        if text_mask is not None:
            from bannermatch.ocr.mask import with_masks

            todo = with_masks(todo, texts, text_mask)
        result.up_to_date = len(scanned.items) - len(todo)
        run.model = _fit_resampler(run.model, len(todo))
        number = max((int(p.stem) for p, *_ in chunks), default=0)
        embed_seconds = run.embed(cat, todo, known, number, progress)
        if sidecars:
            _apply_labels(cat, sidecars, scanned.items, ids, result)
        if roots:
            _mark_vanished(cat, coll, by_source, set(keys), roots)
        drop = {it.id for it in cat.items() if it.status != "ok"} | flagged
    rows = _merged_rows(old, chunk_rows, drop, ids)
    result.removed = len(set(old_fps) - set(rows.ids))
    run.write(
        rows,
        changed=bool(chunks or result.embedded) or old is None or len(rows.ids) != len(old.ids),
    )
    result.count = len(rows.ids)
    result.seconds = embed_seconds if result.embedded else time.perf_counter() - started
    return result


def _run_model(
    model: str | EmbeddingModel,
    coll: Collection,
    text_mask: str | None,
    model_options: dict[str, Any],
) -> tuple[EmbeddingModel, Any]:
    """The model a run embeds with (the art-only one with ``text_mask``, bannermatch.embed.
    masked) and, for it, the collection's banner text (else None)."""
    emb_model = (
        model
        if isinstance(model, EmbeddingModel)
        else create_model(model, few_images=True, **model_options)  # see _fit_resampler
    )
    if text_mask is None:
        return emb_model, None
    from bannermatch.embed.masked import masked_model

    return masked_model(emb_model, coll.root, text_mask)


def _rows_in_chunks(chunks: list[tuple[Path, np.ndarray, list[str], list[str]]]) -> ChunkRows:
    """Each row the chunk files of an unfinished run hold: id -> (fingerprint, file, row,
    norm)."""
    return {
        item_id: (fp, path, r, float(norms[r]))
        for path, norms, ids, fps in chunks
        for r, (item_id, fp) in enumerate(zip(ids, fps, strict=True))
    }


def _fit_resampler(model: EmbeddingModel, count: int) -> EmbeddingModel:
    """``model`` resampling with PyTorch's kernels only when the run embeds enough images
    to repay their import (about 1.3 s); below that, with Pillow's own filters, whose rows
    agree with them to a cosine of 0.99997 (docs/performance.md). Decided by the count
    alone, whoever made the model, so the same images give the same rows."""
    from bannermatch.embed.masked import MaskedModel

    if isinstance(model, MaskedModel):  # the art-only model resamples as its plain one
        plain = _fit_resampler(model.plain, count)
        return cast("EmbeddingModel", MaskedModel(plain, model.method, model.ocr_settings))
    preprocess = dataclasses.replace(model.preprocess)
    return dataclasses.replace(
        model, preprocess=preprocess.load(torch_kernels=count >= TORCH_KERNELS_MIN)
    )


def _previous(folder: Path, emb_model: EmbeddingModel) -> ModelData | None:
    """The rows a previous run stored under this key, when they can be kept: None after a
    damaged journal, or when the model's preprocessing, text masking or int8 model changed
    (then every row is embedded again). Interrupted chunk writes are rolled back."""
    (folder / CHUNKS).mkdir(parents=True, exist_ok=True)
    rebuild = False
    try:
        atomic.recover(folder)
    except CollectionError:  # a damaged journal: the stored rows cannot be trusted
        atomic.discard(folder)
        rebuild = True
    try:
        atomic.recover(folder / CHUNKS)
    except CollectionError:
        atomic.discard(folder / CHUNKS)
    if rebuild or not (folder / "manifest.json").exists():
        return None
    try:
        old = ModelData.load(folder)
    except CollectionError:  # damaged or inconsistent: rebuilt from the images
        return None
    if old.manifest.get("model") != emb_model.spec.name:
        raise CollectionError(
            f"{folder} holds {old.manifest.get('model')}, not {emb_model.spec.name}"
        )
    now = emb_model.manifest()
    same = (
        old.norms is not None  # norms.npy missing: embed again
        and old.manifest.get("text_mask") == now.get("text_mask")
        and old.manifest.get("preprocess") == json.loads(json.dumps(emb_model.preprocess.to_dict()))
        and old.manifest.get("int8") == emb_model.int8
    )
    return old if same else None


def _up_to_date(
    item: InputItem, row: Item | None, chunk_rows: ChunkRows, old_fp: str | None
) -> bool:
    """Whether ``item`` needs no embedding: unchanged on disk and embedded (or known bad)."""
    if row is None or (row.size, row.mtime) != (item.size, item.mtime):
        return False
    if row.status == "bad":
        return True
    embedded = chunk_rows[row.id][0] if row.id in chunk_rows else old_fp  # a chunk is newer
    return row.status == "ok" and embedded is not None and embedded == row.sha256


@dataclass
class _Run:
    """One ``index`` run's embedding into chunks, and the merge that ends it."""

    coll: Collection
    folder: Path
    model: EmbeddingModel
    embedder: Embedder
    chunk_rows: ChunkRows
    result: IndexResult

    def embed(
        self,
        cat: Catalog,
        todo: list[tuple[InputItem, str]],
        known: dict[str, Item],
        number: int,
        progress: bool,
    ) -> float:
        """Embed ``todo`` into chunk files (catalogue rows updated batch by batch); the
        seconds it took."""
        id_of = {id(it): i for it, i in todo}
        bar = progress_bar(len(todo), "embedding", enabled=progress)
        t0 = time.perf_counter()
        for batch in self.embedder.batches([it for it, _ in todo], self.model):
            cat.upsert(
                _catalog_row(d, i, self.coll.source_key(d.item.source), known.get(i))
                for d, i in ((d, id_of[id(d.item)]) for d in batch.ok + batch.failed)
            )
            if batch.ok:
                number += 1
                self._keep(batch, [id_of[id(d.item)] for d in batch.ok], number)
            for d in batch.failed:
                item_id = id_of[id(d.item)]
                self.result.bad.append(
                    {"id": item_id, "source": d.item.source, "reason": d.error or ""}
                )
                self.chunk_rows.pop(item_id, None)
            self.result.embedded += len(batch.ok)
            bar.update(len(batch.ok) + len(batch.failed))
            if self.result.bad:
                bar.set_postfix(bad=len(self.result.bad))
        bar.close()
        return time.perf_counter() - t0

    def _keep(self, batch: Batch, batch_ids: list[str], number: int) -> None:
        path = _write_chunk(self.folder, number, batch, batch_ids)
        for r, (item_id, d) in enumerate(zip(batch_ids, batch.ok, strict=True)):
            self.chunk_rows[item_id] = (d.sha256 or "", path, r, float(batch.norms[r]))

    def write(self, rows: _Rows, *, changed: bool) -> None:
        """Merge the rows into the model's files (an emptied collection is written too, so
        that no removed row outlives its item), then drop the chunks."""
        folder, model = self.folder, self.model
        if changed and (rows.ids or (folder / "manifest.json").exists()):
            write_model_data(
                folder,
                {**model.manifest(), "engine": self.embedder.engine_name(model)},
                rows.ids,
                rows.fps,
                lambda p: _write_embeddings(p, rows, model.dim),
                norms=np.asarray(rows.norms, np.float32),
            )
        for p in (folder / CHUNKS).glob("*.npz"):
            p.unlink()


def _mark_vanished(
    cat: Catalog, coll: Collection, by_source: dict[str, Item], seen: set[str], roots: list[str]
) -> None:
    """Items under the listed folders whose file is gone become ``missing``."""
    prefixes = tuple(os.path.join(r, "") for r in roots)
    vanished = [
        it
        for src, it in by_source.items()
        if src not in seen
        and it.status != "missing"
        and os.path.abspath(coll.resolve_source(src)).startswith(prefixes)
    ]
    for it in vanished:
        it.status, it.reason = "missing", "file no longer exists"
    cat.upsert(vanished)


def _merged_rows(
    old: ModelData | None, chunk_rows: ChunkRows, drop: set[str], ids: list[str]
) -> _Rows:
    """The previous run's rows, each in its place (from this run's chunk when it embedded
    the item again), then the new items' rows in input order, less ``drop``. A row keeps
    its place when it is embedded again, so a resumed run (or one killed while dropping
    its chunks) orders its rows as one uninterrupted run does."""
    rows = _Rows()
    if old is not None:
        assert old.norms is not None
        for r, item_id in enumerate(old.ids):
            if item_id in drop:
                continue
            if item_id in chunk_rows:
                rows.add(item_id, *chunk_rows[item_id])
            else:
                rows.add(
                    item_id, old.fingerprints[r], old.folder / EMBEDDINGS, r, float(old.norms[r])
                )
    known = old.row_of if old is not None else {}
    order = {i: n for n, i in enumerate(ids)}
    for item_id in sorted(chunk_rows, key=lambda i: (order.get(i, len(order)), i)):
        if item_id not in drop and item_id not in known:
            rows.add(item_id, *chunk_rows[item_id])
    return rows


def _apply_labels(
    cat: Catalog,
    sidecars: list[Sidecar],
    items: list[InputItem],
    ids: list[str],
    result: IndexResult,
) -> None:
    """Names and metadata from the sidecars onto the items they name; rows naming no
    input file are counted and reported."""
    labels = label_inputs(sidecars, zip(items, ids, strict=True))
    current = {it.id: it for it in cat.items()}
    rows = {}
    for item_id, label in labels.items():
        item = current.get(item_id)
        if item is None:
            continue
        meta = item.metadata | label.meta
        rows[item_id] = (label.name or item.name, json.dumps(meta) if meta else "")
    cat.set_labels(rows)
    for sc in sidecars:
        result.names.append(
            {
                "file": str(sc.path),
                "rows": len(sc.labels),
                "matched": len(sc.labels) - len(sc.unmatched),
                "unmatched": sc.unmatched,
            }
        )


def _outside(scanned: ScannedInput, root: Path, input_path: str | os.PathLike[str]) -> ScannedInput:
    """Leave out the files of the collection being written (its report grids, say) when it
    lies inside the input folder, unless the input is inside the collection itself."""
    prefix = os.path.join(os.path.abspath(root), "")
    if os.path.join(os.path.abspath(input_path), "").startswith(prefix):
        return scanned
    kept = [it for it in scanned.items if not it.source.startswith(prefix)]
    return scanned if len(kept) == len(scanned.items) else ScannedInput(kept, scanned.root)


def _write_embeddings(path: Path, rows: _Rows, dim: int) -> None:
    """Write the rows' vectors to ``path`` as a float16 ``.npy``, in order, a run of
    consecutive rows of one file at a time: memory holds one chunk, not the collection
    (plain reads and writes, whose pages do not stay in the process as a memory map's do)."""
    header = {"descr": "<f2", "fortran_order": False, "shape": (len(rows.ids), dim)}
    chunk: tuple[Path | None, np.ndarray | None] = (None, None)
    with open(path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        start = 0
        while start < len(rows.where):
            src, first = rows.where[start]
            stop = start + 1
            while (
                stop < len(rows.where)
                and stop - start < 8192
                and rows.where[stop] == (src, first + stop - start)
            ):
                stop += 1
            if src.suffix == ".npz":
                if chunk[0] != src:
                    with np.load(src, allow_pickle=False) as z:
                        chunk = (src, z["embeddings"])
                assert chunk[1] is not None
                part = chunk[1][first : first + stop - start]
            else:
                part = _read_npy_rows(src, first, stop - start)
            out.write(np.ascontiguousarray(part, "<f2").tobytes())
            start = stop


def _read_npy_rows(path: Path, first: int, count: int) -> np.ndarray:
    """Rows ``first .. first + count`` of a 2-d ``.npy`` file, read without mapping it."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(fh)
        fh.seek(first * shape[1] * dtype.itemsize, os.SEEK_CUR)
        return np.fromfile(fh, dtype, count * shape[1]).reshape(count, shape[1])
