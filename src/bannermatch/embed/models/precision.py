"""Numeric precision of the CPU engine: fp32, or int8.

``auto`` (the command line's default) is int8 on the ONNX Runtime engine for a model whose
fp32 export has shipped activation ranges (:mod:`.ranges`: the embedded ``effnet-lite0``),
fp32 otherwise, and fp32 on PyTorch (GPU). An int8 model is made from the fp32 ONNX export
by :mod:`.quantize`: with the shipped ranges when there are some (no image run; the same
model on every machine, so every collection of that model gets the same vectors), else
calibrated on up to :data:`CALIBRATION_IMAGES` of the images being indexed (evenly spaced
through them). Either is cached under the user cache folder by content hashes, and kept in
the collection beside the rows it embedded (``models/<key>/int8-<sha>.onnx``, named by the
manifest), so that a query embeds with the very model that wrote the rows, and adding
images to the collection reuses it instead of calibrating again. A stored model is used
again only while its fp32 source and the recipe version are the ones it was made from;
otherwise it is made again and every row re-embedded. int8 and fp32 rows never mix: the
precision is part of the model key (``...__cls-int8``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bannermatch.embed.models.quantize import QUANT_VERSION, quantize_int8
from bannermatch.embed.models.ranges import read_ranges
from bannermatch.embed.models.registry import file_sha256
from bannermatch.errors import ModelError
from bannermatch.store import atomic

if TYPE_CHECKING:
    from bannermatch.acquire.inputs import InputItem
    from bannermatch.embed.models.factory import EmbeddingModel
    from bannermatch.embed.models.preprocess import Preprocess

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "int8")
#: what ``auto`` means on the ONNX Runtime CPU engine for a model with shipped ranges:
#: int8 (recipe v3) passes the quality gate and takes 1.7x less CPU (docs/performance.md)
CPU_DEFAULT = "int8"
#: images calibrated on: enough for stable MinMax ranges, a few seconds of fp32 inference
CALIBRATION_IMAGES = 256


def resolve_precision(precision: str, engine: str, has_ranges: bool = False) -> str:
    """``fp32`` or ``int8`` for ``engine`` (``onnx`` or ``torch``, resolved); ``auto`` is
    :data:`CPU_DEFAULT` on the onnx engine when the fp32 export has shipped ranges
    (``has_ranges``: :func:`.ranges.shipped_ranges`), else fp32."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return CPU_DEFAULT if engine == "onnx" and has_ranges else "fp32"
    if precision == "int8" and engine != "onnx":
        raise ModelError("int8 runs on the onnx engine (CPU) only; use --engine onnx")
    return precision


def shipped_int8(source: Path, ranges: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The int8 model made from the fp32 export ``source`` and its shipped ``ranges``
    (:func:`.ranges.shipped_ranges`; made once, cached), and its description for the
    manifest; None without shipped ranges."""
    if ranges is None:
        return None
    path = quantize_int8(source, ranges=ranges)
    sha = file_sha256(path)
    shipped = read_ranges(ranges)
    info = {
        "sha256": sha,
        "source_sha256": shipped["source_sha256"],  # checked by shipped_ranges
        "recipe": QUANT_VERSION,
        "ranges": ranges.name,
        "calibration_images": int(shipped["calibration"].get("images", 0)),
        "file": f"int8-{sha[:16]}.onnx",
    }
    return path, info


def calibration_sample(items: Sequence[InputItem], n: int = CALIBRATION_IMAGES) -> list[InputItem]:
    """Up to ``n`` of ``items``, evenly spaced (input order: a stable choice)."""
    if len(items) <= n:
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]


def calibration_pixels(preprocess: Preprocess, items: Sequence[InputItem]) -> np.ndarray:
    """The preprocessed pixels of ``items``, decoded as the pipeline decodes them; an
    image that does not decode is left out."""
    from bannermatch.embed.batches import decode_item

    out = np.empty((len(items), 3, preprocess.crop_size, preprocess.crop_size), np.float32)
    n = 0
    for item in items:
        if decode_item(item, preprocess, out[n]).error is None:
            n += 1
    return out[:n]


def stored_int8(folder: Path, manifest: dict[str, Any] | None) -> Path | None:
    """The int8 model that ``manifest`` (of ``folder``) names, when it is there intact."""
    info = (manifest or {}).get("int8")
    if not info:
        return None
    path = folder / info["file"]
    if not path.is_file() or file_sha256(path) != info["sha256"]:
        return None
    return path


def calibrate(
    model: EmbeddingModel,
    items: Sequence[InputItem],
    *,
    store: Path | None = None,
    manifest: dict[str, Any] | None = None,
) -> EmbeddingModel:
    """``model`` with its int8 engine, for a model created with ``precision="int8"``
    (others are returned as they are). A model made from shipped ranges is ready: with
    ``store``, a copy is kept there. Otherwise the int8 model named by ``manifest`` in
    ``store`` is used when its fp32 source and recipe are current, else one is calibrated
    on ``items`` (cached) and, with ``store``, kept there."""
    if model.precision != "int8":
        return model
    if model.engine_precision == "int8":  # shipped ranges (or a stored model: a query)
        if store is not None and model.int8:
            _keep(Path(model.engine.path), store, model.int8, manifest)  # type: ignore[attr-defined]
        return model
    source = Path(model.engine.path)  # type: ignore[attr-defined]
    source_sha = file_sha256(source)
    info = (manifest or {}).get("int8") or {}
    path = stored_int8(store, manifest) if store is not None else None
    current = info.get("source_sha256") == source_sha and info.get("recipe") == QUANT_VERSION
    if path is None or not current:
        pixels = calibration_pixels(model.preprocess, calibration_sample(items))
        made = quantize_int8(source, pixels)
        sha = file_sha256(made)
        info = {
            "sha256": sha,
            "source_sha256": source_sha,
            "recipe": QUANT_VERSION,
            "calibration_images": len(pixels),
            "file": f"int8-{sha[:16]}.onnx",
        }
        path = made if store is None else _keep(made, store, info, None)
    return with_int8_engine(model, path, info)


def _keep(made: Path, store: Path, info: dict[str, Any], manifest: dict[str, Any] | None) -> Path:
    """The int8 model ``made`` (described by ``info``) copied into the model folder
    ``store``, unless the one ``manifest`` names there is already it; the copy's path."""
    stored = stored_int8(store, manifest)
    if stored is not None and (manifest or {}).get("int8", {}).get("sha256") == info["sha256"]:
        return stored
    path = store / info["file"]
    store.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_open(path) as fh, open(made, "rb") as src:
        shutil.copyfileobj(src, fh)
    return path


def with_int8_engine(model: EmbeddingModel, path: Path, info: dict[str, Any]) -> EmbeddingModel:
    """``model`` running the int8 ONNX file ``path`` (described by ``info``)."""
    from bannermatch.embed.models.engines import OnnxEngine

    return dataclasses.replace(model, engine=OnnxEngine(path, precision="int8"), int8=info)


def calibrate_in(model: EmbeddingModel, folder: Path, items: Sequence[InputItem]) -> EmbeddingModel:
    """:func:`calibrate` for an index run into the model folder ``folder`` of a collection:
    the int8 model its manifest names is reused while it is current."""
    import json

    try:
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        manifest = None
    return calibrate(model, items, store=folder, manifest=manifest)


def int8_options(manifest: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """The :func:`create_model` options that rebuild the model of ``manifest`` (of the
    model folder ``folder``): its precision, and for int8 the stored model's file; one made
    from shipped ranges is made again from them when its copy is missing (the caller
    checks that it is the same: :func:`check_int8`)."""
    precision = manifest.get("precision", "fp32")  # written before int8: fp32
    if precision != "int8":
        return {"precision": precision}
    path = stored_int8(folder, manifest) if folder is not None else None
    if path is None and "ranges" in manifest.get("int8", {}):
        return {"precision": "int8"}
    if path is None:
        raise ModelError(
            f"{manifest.get('key')}: its int8 model is missing or damaged; "
            "run `bannermatch index` again to re-embed it"
        )
    return {"precision": "int8", "int8_file": path}


def check_int8(model: EmbeddingModel, manifest: dict[str, Any]) -> None:
    """Refuse ``model`` when it runs another int8 model than the one that wrote the rows
    of ``manifest`` (a model made again from shipped ranges that came out different)."""
    want = (manifest.get("int8") or {}).get("sha256")
    have = (model.int8 or {}).get("sha256")
    if want and have and want != have:
        raise ModelError(
            f"{manifest.get('key')}: its int8 model is missing, and the one made again from "
            "the shipped ranges differs; run `bannermatch index` again to re-embed it"
        )
