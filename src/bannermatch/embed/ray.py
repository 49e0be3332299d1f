"""The embedding stage as a Ray Data job: ``bannermatch index --engine ray``.

Only how batches are computed differs from the single-machine path
(:func:`bannermatch.embed.batches.iter_batches`): this module yields the same
:class:`~bannermatch.embed.batches.Batch` objects, and :func:`bannermatch.embed.index.index`
writes its chunks, catalogue rows and final commit exactly as it always does, so
the collection layout, the row order and the resume logic are one and the same.

The job is a reader, a mapper and an actor pool::

    blocks of inputs          CPU tasks                    actor pool (one model per actor)
    (file paths, or tar   ->  read + decode + preprocess -> embed: ONNX Runtime on a CPU,
     members by offset)       (decode_item, as locally)    PyTorch fp16 on a GPU  -> driver

For ``index --mask-text`` (the art-only rows) each input carries the text boxes to paint
over, as JSON in its block: the decoding tasks mask the image before preprocessing,
as the local threads do, and the actors embed what they get.

A block holds ``batch_size`` inputs; its embedded rows come back to the driver in
input order (``preserve_order``), and each one is written as a chunk right away, so an
interrupted job resumes from the blocks it had finished. Ray is an optional extra
(``pip install 'bannermatch[ray]'``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bannermatch.acquire.inputs import InputItem
from bannermatch.embed.batches import Batch, Decoded, decode_item
from bannermatch.embed.models import EmbeddingModel
from bannermatch.embed.models.preprocess import Preprocess
from bannermatch.errors import BannermatchError
from bannermatch.ocr.mask import TextMask

RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install 'bannermatch[ray]'"
#: columns of a decoded block (besides the pixels) and of an embedded one
_META = ("pos", "sha256", "width", "height", "mode", "format", "error")


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise BannermatchError(RAY_MISSING) from None
    return ray


@dataclass
class RayCluster:
    """A connection to a Ray cluster: one this process started, or one that was running."""

    ray: Any
    started: bool
    cpus: float
    gpus: float
    nodes: int

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def connect(address: str | None = None, *, num_cpus: int | None = None) -> RayCluster:
    """Join the cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT``; ``local``: start
    one here). None: ``$RAY_ADDRESS``, else the cluster ``ray start`` runs on this machine,
    else a new local one (Ray's own rules). A Ray already initialised in this process is
    used as it is."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus,
                include_dashboard=False,
                logging_level=logging.ERROR,  # no start-up notices; warnings again below
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = f"at {address}" if address else "here"
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            message = f"cannot start or join a Ray cluster {where}: {reason}"
            raise BannermatchError(message) from None
        logging.getLogger("ray").setLevel(logging.WARNING)
        started = True
    resources = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return RayCluster(
        ray, started, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)), nodes
    )


@dataclass(frozen=True)
class ActorPlan:
    """How the embedding actors run: how many, on what, and what each reserves."""

    actors: int
    device: str  # what each actor passes to create_model: "cpu" or "cuda"
    num_gpus: float
    num_cpus: float

    @property
    def engine(self) -> str:
        """The engine the actors' models run (``auto``: ONNX Runtime on a CPU, PyTorch on
        a GPU), as the manifest names it."""
        return "torch-cuda" if self.device == "cuda" else "onnx-cpu"


def plan_actors(cluster: RayCluster, device: str = "auto", actors: int | None = None) -> ActorPlan:
    """One actor per GPU when the cluster has GPUs (and ``device`` allows them), else one
    per node; each CPU actor runs ONNX Runtime on its node's cores and reserves one CPU
    in Ray's scheduler, so that decoding tasks share the node."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise BannermatchError(f"unknown device {device!r}; use auto, cpu or cuda")
    gpus = int(cluster.gpus)
    if device.startswith("cuda") and gpus < 1:
        raise BannermatchError(f"--device {device} asks for GPUs, but the Ray cluster has none")
    if device != "cpu" and gpus >= 1:
        return ActorPlan(actors or gpus, "cuda", 1.0, 1.0)
    if actors is not None and actors > max(1, int(cluster.cpus) - 1):
        raise BannermatchError(
            f"{actors} CPU actors do not fit a Ray cluster of {cluster.cpus:g} CPUs "
            "(each reserves one, and decoding needs at least one more)"
        )
    return ActorPlan(actors or max(1, cluster.nodes), "cpu", 0.0, 1.0)


def _decode_block(batch: dict[str, np.ndarray], preprocess: Preprocess) -> dict[str, np.ndarray]:
    """A CPU task: read, decode and preprocess one block of inputs (as the local path does,
    through :func:`decode_item`); a failure is a row with its reason and zero pixels."""
    size = preprocess.crop_size
    n = len(batch["pos"])
    pixels = np.zeros((n, 3, size, size), np.float32)
    out: dict[str, list[Any]] = {k: [] for k in _META}
    for r in range(n):
        mask = str(batch["mask"][r])
        item = InputItem(
            str(batch["source"][r]), "", "", int(batch["size"][r]), 0.0, None,
            int(batch["offset"][r]), mask=TextMask.from_json(mask) if mask else None,
        )  # fmt: skip
        d = decode_item(item, preprocess)
        if d.pixels is not None:
            pixels[r] = d.pixels
        out["pos"].append(int(batch["pos"][r]))
        out["sha256"].append(d.sha256 or "")
        out["width"].append(-1 if d.width is None else d.width)
        out["height"].append(-1 if d.height is None else d.height)
        out["mode"].append(d.mode or "")
        out["format"].append(d.format or "")
        out["error"].append(d.error or "")
    return {
        "pos": np.asarray(out["pos"], np.int64),
        "width": np.asarray(out["width"], np.int64),
        "height": np.asarray(out["height"], np.int64),
        **{k: np.asarray(out[k], dtype=object) for k in ("sha256", "mode", "format", "error")},
        "pixels": pixels,
    }


class _EmbedActor:
    """One model per actor, rebuilt from the driver's manifest (its key is checked)."""

    def __init__(self, manifest: dict[str, Any], device: str):
        from bannermatch.embed.models.factory import create_model_for

        # few_images: the actor embeds pixels the decoding tasks made, so it loads none of
        # the resampling kernels (the 1.1 s import of PyTorch, on every run's new actor)
        self.model = create_model_for(manifest, engine="auto", device=device, few_images=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.asarray([not e for e in batch["error"]], bool)
        n, dim = len(ok), self.model.dim
        embeddings = np.zeros((n, dim), np.float32)
        norms = np.zeros(n, np.float32)
        if ok.any():
            embeddings[ok], norms[ok] = self.model.embed_with_norms(batch["pixels"][ok])
        out = {k: batch[k] for k in _META}
        # float16, as a chunk stores them: half the bytes on their way to the driver
        out["embedding"], out["norm"] = embeddings.astype(np.float16), norms
        out["engine"] = np.asarray([self.model.engine.name] * n, dtype=object)
        return out


def _mask_text(item: InputItem) -> str:
    """An item's mask as text for the decoding tasks ("" for none): only the text masks of
    ``index --mask-text`` travel (:class:`bannermatch.ocr.mask.TextMask`)."""
    if item.mask is None:
        return ""
    if not isinstance(item.mask, TextMask):
        raise BannermatchError(f"--engine ray cannot ship the image mask {item.mask!r}")
    return item.mask.to_json()


def _blocks(items: Sequence[InputItem], size: int) -> list[Any]:
    import pyarrow as pa

    def block(part: Sequence[InputItem], start: int) -> Any:
        return pa.table(
            {
                "pos": pa.array(range(start, start + len(part)), pa.int64()),
                "source": [it.source for it in part],
                "offset": pa.array([it.offset for it in part], pa.int64()),
                "size": pa.array([it.size for it in part], pa.int64()),
                # the text boxes to paint over (index --mask-text), read from the collection's
                # OCR store by the driver: a worker needs no access to it
                "mask": pa.array([_mask_text(it) for it in part], pa.string()),
            }
        )

    return [block(items[start : start + size], start) for start in range(0, len(items), size)]


def _cause(exc: BaseException) -> str:
    """The first line of what went wrong inside a Ray task or actor."""
    inner = getattr(exc, "cause", None) or exc.__cause__ or exc
    if isinstance(inner, BannermatchError):
        return str(inner)
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"


def iter_batches(
    cluster: RayCluster,
    items: Sequence[InputItem],
    model: EmbeddingModel,
    plan: ActorPlan,
    *,
    batch_size: int = 64,
    decoders: int | None = None,
    engines: set[str] | None = None,
) -> Iterator[Batch]:
    """Embed ``items`` on the cluster: the same batches as
    :func:`bannermatch.embed.batches.iter_batches`, in input order. ``decoders`` caps the
    decoding tasks in flight; ``engines`` collects the engines the actors ran."""
    if not items:
        return
    ray = cluster.ray
    from ray.data import ActorPoolStrategy, DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # index() shows its own bar
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # per-run notices

    ds = ray.data.from_arrow(_blocks(items, batch_size))
    size = model.preprocess.crop_size
    ds = ds.map_batches(
        _decode_block,
        batch_size=None,
        batch_format="numpy",
        fn_kwargs={"preprocess": model.preprocess},
        num_cpus=1,
        # what a block's pixels take, twice: the scheduler runs no more decoding tasks
        # than memory allows, and (resources differing) Ray Data keeps them in their own
        # tasks instead of fusing them into the embedding actors
        memory=2 * batch_size * 3 * size * size * 4,
        concurrency=decoders,
    )
    ds = ds.map_batches(
        _EmbedActor,
        batch_size=batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={"manifest": model.manifest(), "device": plan.device},
        compute=ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.num_cpus,
        num_gpus=plan.num_gpus,
    )  # Ray Data spreads the actors over the nodes (DataContext.scheduling_strategy)
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            yield _to_batch(out, items, model.dim, engines)
    except ray.exceptions.RayError as exc:
        raise BannermatchError(f"the Ray job failed: {_cause(exc)}") from None


def _to_batch(
    out: dict[str, np.ndarray], items: Sequence[InputItem], dim: int, engines: set[str] | None
) -> Batch:
    ok, failed, rows = [], [], []
    for r, pos in enumerate(out["pos"].tolist()):
        error = str(out["error"][r])
        d = Decoded(
            items[pos],
            sha256=str(out["sha256"][r]) or None,
            width=int(out["width"][r]) if out["width"][r] >= 0 else None,
            height=int(out["height"][r]) if out["height"][r] >= 0 else None,
            mode=str(out["mode"][r]) or None,
            format=str(out["format"][r]) or None,
            error=error or None,
        )
        if error:
            failed.append(d)
        else:
            ok.append(d)
            rows.append(r)
            if engines is not None:
                engines.add(str(out["engine"][r]))
    emb = np.asarray(out["embedding"], np.float32).reshape(-1, dim)[rows]
    norms = np.asarray(out["norm"], np.float32)[rows]
    return Batch(ok, failed, emb, norms)


class RayEmbedder:
    """The :class:`bannermatch.embed.index.Embedder` of ``index(engine="ray")``: joins (or
    starts) the cluster when there is something to embed, and leaves a cluster it
    started when the run ends."""

    def __init__(
        self,
        address: str | None = None,
        actors: int | None = None,
        device: str = "auto",
        batch_size: int = 64,
        *,
        decoders: int | None = None,
        num_cpus: int | None = None,
    ):
        import_ray()  # before any work: a missing extra is a one-line error
        if actors is not None and actors < 1:
            raise BannermatchError("--actors must be at least 1")
        self.address, self.actors, self.device = address, actors, device
        self.batch_size, self.num_cpus = batch_size, num_cpus
        #: how many decoding tasks may run at once (None: as many as the CPUs allow)
        self.decoders = decoders
        self.cluster: RayCluster | None = None
        self.plan: ActorPlan | None = None
        self.engines: set[str] = set()

    def batches(self, items: list[InputItem], model: EmbeddingModel) -> Iterator[Batch]:
        if not items:
            return iter(())
        if self.cluster is None:
            self.cluster = connect(self.address, num_cpus=self.num_cpus)
            self.plan = plan_actors(self.cluster, self.device, self.actors)
        assert self.plan is not None
        return iter_batches(
            self.cluster,
            items,
            model,
            self.plan,
            batch_size=self.batch_size,
            decoders=self.decoders,
            engines=self.engines,
        )

    def engine_name(self, model: EmbeddingModel) -> str:
        """``ray/`` and the engines the actors ran (``ray`` when nothing was embedded)."""
        names = sorted(self.engines) or ([self.plan.engine] if self.plan else [])
        return "/".join(["ray", ",".join(names)]) if names else "ray"

    def close(self) -> None:
        if self.cluster is not None:
            kept = _kept.get()
            if kept is None:
                self.cluster.close()
            else:  # inside shared_cluster(): the next run joins it
                kept.append(self.cluster)
            self.cluster = None


#: the clusters runs started inside :func:`shared_cluster`, left when it ends
_kept: contextvars.ContextVar[list[RayCluster] | None] = contextvars.ContextVar(
    "bannermatch_ray_kept", default=None
)


@contextlib.contextmanager
def shared_cluster() -> Iterator[None]:
    """Several index runs on one cluster (``index --mask-text --engine ray``: the plain
    rows, then the art-only ones): a cluster the first run that embeds starts stays up for
    the next ones, which join it, and is left at the end; none is started for nothing."""
    kept: list[RayCluster] = []
    token = _kept.set(kept)
    try:
        yield
    finally:
        _kept.reset(token)
        for cluster in kept:
            cluster.close()
