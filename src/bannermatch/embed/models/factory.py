"""One factory returns a model together with its own preprocessing (open_clip style)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bannermatch import __version__
from bannermatch.defaults import DEFAULT_MODEL
from bannermatch.embed.models.engines import (
    EXPORT_VERSION,
    ONNX_OPSET,
    Engine,
    OnnxEngine,
    TorchEngine,
    cache_dir,
    export_onnx,
    resolve_device,
    resolve_engine,
)
from bannermatch.embed.models.loaders import Built, LabelHead, loader_for
from bannermatch.embed.models.precision import resolve_precision, shipped_int8
from bannermatch.embed.models.preprocess import Preprocess
from bannermatch.embed.models.ranges import shipped_ranges
from bannermatch.embed.models.registry import AUGMENTS, ModelSpec, get_spec
from bannermatch.embed.models.weights import Weights, random_requested
from bannermatch.errors import BannermatchError, ModelError
from bannermatch.ocr.mask import split_key
from bannermatch.store import atomic
from bannermatch.store.collection import safe_name

if TYPE_CHECKING:
    from bannermatch.embed.models.network import FeatureExtractor

#: guards the creation of a model's engine threads
_POOL_LOCK = threading.Lock()


def _no_network() -> Built:
    """The network of a model made without one (not by :func:`create_model`)."""
    raise ModelError("this model was made without its PyTorch network (use create_model)")


@dataclass
class EmbeddingModel:
    """A ready model: ``preprocess`` turns a PIL image into pixels, ``embed`` pixels into
    L2-normalised float32 rows. ``key`` names model, preprocessing and strategy."""

    spec: ModelSpec
    preprocess: Preprocess
    strategy: str
    engine: Engine
    weights: Weights
    augment: str = "none"
    #: the ImageNet classes a classifier head predicts from these features (label search)
    labels: str | None = None
    #: builds (once) the PyTorch network, for the text tower and the classifier head
    network: Callable[[], Built] = field(default=_no_network, repr=False)
    #: ``fp32`` or ``int8`` (part of the key); an int8 model runs once calibrated
    precision: str = "fp32"
    #: the int8 model's file, hashes, recipe and calibration (models.precision.calibrate)
    int8: dict[str, Any] | None = None
    _executor: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.engine.streams)

    @property
    def key(self) -> str:
        return model_key(
            self.spec.name, self.preprocess, self.strategy, self.augment, self.precision
        )

    @property
    def engine_precision(self) -> str:
        """The precision the engine runs at (an int8 model's is fp32 until calibrated)."""
        return str(getattr(self.engine, "precision", "fp32"))

    @property
    def weights_sha256(self) -> str:
        return self.weights.sha256

    @property
    def dim(self) -> int:
        return self.engine.dim

    def embed_with_norms(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """L2-normalised features of a float32 NCHW batch, and the raw features' norms.

        The batch runs in engine-sized slices, side by side on the engine's streams; any
        thread may call this, and at most ``engine.streams`` calls run the engine at once.
        """
        step = self.engine.max_batch
        slices = [pixels[i : i + step] for i in range(0, max(len(pixels), 1), step)]
        if len(slices) == 1 or self.engine.streams == 1:
            feats = [self._run(x) for x in slices]
        else:
            feats = list(self._pool().map(self._run, slices))
        out = np.concatenate(feats) if len(feats) > 1 else feats[0]
        norms = np.linalg.norm(out, axis=1)
        return out / np.maximum(norms, 1e-12)[:, None], norms.astype(np.float32)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        if self.engine_precision != self.precision:
            raise ModelError(
                f"{self.key}: the int8 model is not calibrated yet "
                "(bannermatch.embed.models.precision.calibrate)"
            )
        with self._slots:
            return np.asarray(self.engine(np.ascontiguousarray(pixels, np.float32)), np.float32)

    def _pool(self) -> ThreadPoolExecutor:
        with _POOL_LOCK:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.engine.streams, "engine")
            return self._executor

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised features of a float32 NCHW batch."""
        return self.embed_with_norms(pixels)[0]

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.embed(np.stack([self.preprocess(im) for im in images]))

    # text: CLIP's text tower, or ImageNet labels ------------------------------

    @property
    def has_text(self) -> bool:
        """Whether texts embed into the space of the image rows (CLIP, ``cls`` strategy)."""
        return self.spec.text and self.strategy == "cls"

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings, comparable by cosine with the image rows."""
        if not self.has_text:
            raise ModelError(
                f"{self.key} has no text tower in its image space "
                "(text search needs a CLIP model with --strategy cls)"
            )
        built = self.network()
        assert built.text is not None
        return built.text(list(texts))

    def label_head(self) -> LabelHead | None:
        """The ImageNet classifier that reads these features (``cls`` strategy only)."""
        if self.strategy != "cls" or self.spec.text:
            return None
        return self.network().head

    def manifest(self) -> dict[str, Any]:
        """What a collection records of the model that embedded it."""
        return {
            "model": self.spec.name,
            "source": self.spec.source,
            "arch": self.spec.arch,
            "weights": {
                "source": self.weights.source,
                "sha256": self.weights.sha256,
                "random": self.weights.random,
            },
            "preprocess": self.preprocess.to_dict(),
            "strategy": self.strategy,
            "augment": self.augment,
            "dim": self.dim,
            "key": self.key,
            "engine": self.engine.name,
            "text": self.has_text,
            "labels": self.labels,
            "bannermatch": __version__,
            "precision": self.precision,
            **({"int8": self.int8} if self.int8 else {}),
        }


def model_key(
    name: str, preprocess: Preprocess, strategy: str, augment: str = "none", precision: str = "fp32"
) -> str:
    suffix = "" if augment == "none" else f"-{augment}"
    suffix += "" if precision == "fp32" else f"-{precision}"
    return f"{safe_name(name)}__{preprocess.key}__{strategy}{suffix}"


def create_model(
    name: str = DEFAULT_MODEL,
    *,
    engine: str = "auto",
    device: str = "auto",
    strategy: str = "cls",
    augment: str = "none",
    fit: str | None = None,
    resize_size: int | None = None,
    crop_size: int | None = None,
    keep_ratio: bool | None = None,
    interpolation: str | None = None,
    draft: bool | None = None,
    pretrained: bool | None = None,
    few_images: bool = False,
    precision: str = "fp32",
    int8_file: Path | None = None,
) -> EmbeddingModel:
    """Load a model with its weights, its preprocessing and an inference engine.

    ``name``: a preset, ``timm:<name>``, ``open_clip:<arch>/<tag>`` or
    ``hub:<owner/repo or dir>:<entrypoint>``. Weights come from the libraries'
    caches, downloaded on first use; offline, a missing file is a quick
    :class:`ModelError`. ``device="auto"`` picks CUDA when there is a GPU (the
    ``auto`` engine then runs PyTorch in half precision, channels-last), else the
    CPU (the ``auto`` engine then runs ONNX Runtime, the model exported once).
    ``pretrained=False`` (or ``BANNERMATCH_RANDOM_WEIGHTS=1``) builds seeded
    random weights instead: for tests only. ``few_images``: for a query of an image or
    two, resample with Pillow rather than import PyTorch for its faster kernels.
    ``precision``: ``fp32``, ``int8`` or ``auto`` (int8 on the ONNX Runtime engine for a
    model with shipped int8 ranges, else fp32: :mod:`.precision`); an int8 model runs
    ``int8_file`` (a stored quantised model), or the model made from its shipped ranges,
    or, without either, is calibrated by :func:`.precision.calibrate`.
    """
    spec = get_spec(name)
    _check_choices(spec, name, strategy, augment)
    device = resolve_device(device)
    engine = resolve_engine(engine, device)
    resolve_precision(precision, engine)  # a bad choice fails before any loading
    loader = loader_for(spec)
    weights = loader.weights(random_requested(pretrained))
    config = loader.data_config()
    preprocess = Preprocess.from_timm_config(
        {**config, "fit": spec.fit} if spec.fit else config,
        fit=fit,
        resize_size=resize_size,
        crop_size=crop_size,
        keep_ratio=keep_ratio,
        interpolation=interpolation,
        draft=draft,
    )
    net = _Network(loader, weights, preprocess.crop_size, strategy, augment)
    int8: dict[str, Any] | None = None
    if engine == "onnx":  # before PyTorch's kernels load: a first quantisation then adds
        # 25 MB less to the peak of the index run (docs/performance.md, int8)
        runner, precision, int8 = _onnx_engine(net, spec, name, precision, int8_file)
    else:
        runner, precision = TorchEngine(net.extractor(), net.size, device), "fp32"
    preprocess = preprocess.load(torch_kernels=not few_images)
    labels = loader.labels() if strategy == "cls" and not spec.text else None
    return EmbeddingModel(
        spec, preprocess, strategy, runner, weights, augment, labels, net.network, precision, int8
    )


def _check_choices(spec: ModelSpec, name: str, strategy: str, augment: str) -> None:
    if strategy not in spec.strategies:
        raise ModelError(
            f"strategy {strategy!r} is not available for {name}; "
            f"choose one of {', '.join(spec.strategies)}"
        )
    if augment not in AUGMENTS:
        raise ModelError(f"unknown augment {augment!r}; choose one of {', '.join(AUGMENTS)}")


class _Network:
    """The PyTorch network of a model, built on first use only (the ONNX engine of an
    exported model never needs it)."""

    def __init__(self, loader: Any, weights: Weights, size: int, strategy: str, augment: str):
        self.loader, self.weights, self.size = loader, weights, size
        self.strategy, self.augment = strategy, augment
        self._built: Built | None = None

    def network(self) -> Built:
        if self._built is None:
            from bannermatch.embed.models.heads import remember

            self._built = self.loader.build(self.weights, self.size)
            remember(self.loader.spec.arch, self.weights.sha256, self._built.head)
        return self._built

    def extractor(self) -> FeatureExtractor:
        from bannermatch.embed.models.network import FeatureExtractor

        built = self.network()
        return FeatureExtractor(
            built.image,
            built.kind,
            self.strategy,
            augment=self.augment,
            patch_size=built.patch_size,
            input_size=self.size,
        )


def _onnx_engine(
    net: _Network, spec: ModelSpec, name: str, precision: str, int8_file: Path | None
) -> tuple[Engine, str, dict[str, Any] | None]:
    """The ONNX Runtime engine, its precision (``auto`` resolved) and its int8 model's
    description: a stored int8 model; else the one made from the fp32 export's shipped
    ranges (int8 or auto); else the fp32 export (cached per weights, size, strategy, opset
    and export version; exported on first use), which an int8 model calibrates from."""
    if precision == "int8" and int8_file is not None:  # a stored model: no fp32 needed
        return OnnxEngine(int8_file, precision="int8"), "int8", None
    tag = net.strategy if net.augment == "none" else f"{net.strategy}-{net.augment}"
    path = (
        cache_dir() / "onnx" / f"{safe_name(spec.arch)}-{net.weights.sha256[:16]}-{net.size}px"
        f"-{tag}-opset{ONNX_OPSET}-v{EXPORT_VERSION}.onnx"
    )
    if not path.is_file():
        with atomic.made_once(path) as needed:
            if needed:
                export_onnx(net.extractor(), path, net.size, name)
    # one look-up (it hashes the export) for both uses; fp32 needs none
    ranges = shipped_ranges(path) if precision != "fp32" else None
    precision = resolve_precision(precision, "onnx", has_ranges=ranges is not None)
    shipped = shipped_int8(path, ranges) if precision == "int8" else None
    if shipped is not None:
        return OnnxEngine(shipped[0], precision="int8"), "int8", shipped[1]
    return OnnxEngine(path), precision, None


def create_model_for(
    manifest: dict[str, Any],
    *,
    engine: str = "auto",
    device: str = "cpu",
    few_images: bool = False,
    folder: Path | None = None,
    text_only: bool = False,
) -> Any:
    """The model that wrote ``manifest``: same preset, preprocessing, strategy and weights
    (random weights too, for a collection a test built with them); for an int8 manifest,
    the int8 model stored beside it in ``folder`` (or made again from shipped ranges).
    ``text_only``: for the text tower and the label head only, which read no pixels: the
    fp32 network whatever precision the image rows were embedded at."""
    from bannermatch.embed.models.precision import check_int8, int8_options

    pre = manifest["preprocess"]
    options = {k: pre[k] for k in ("fit", "resize_size", "crop_size", "interpolation") if k in pre}
    if "keep_ratio" in pre:
        options["keep_ratio"] = pre["keep_ratio"]
    options["draft"] = pre.get("draft", False)  # written before drafts: every pixel decoded
    model = create_model(
        manifest["model"],
        engine=engine,
        device=device,
        strategy=manifest["strategy"],
        augment=manifest.get("augment", "none"),
        pretrained=False if manifest.get("weights", {}).get("random") else None,
        few_images=few_images,
        **options,
        **({"precision": "fp32"} if text_only else int8_options(manifest, folder)),
    )
    key = model.key
    if text_only:  # the key the rows were written under: the network is the same
        precision = manifest.get("precision", "fp32")
        key = model_key(model.spec.name, model.preprocess, model.strategy, model.augment, precision)
    else:
        check_int8(model, manifest)
    if key != split_key(manifest["key"])[0]:  # an art-only key: <plain key>-textmask-...
        raise BannermatchError(
            f"cannot rebuild model {manifest['key']}: this bannermatch gives {key} "
            "(written by another version); run `bannermatch index` again to re-embed it"
        )
    return model
