"""Loading checkpoints by position, and the feature strategies over any network.

Strategies (``FeatureExtractor``), by kind of network:

============  ==========================================  =======================================
strategy      ViT (timm; open_clip ViT)                   CNN (timm)
============  ==========================================  =======================================
``cls``       the model's pooled output: CLS token         the model's own global pooling and
              (open_clip: the projected image embedding)   pre-logits head
``cls+avg``   CLS concatenated with the mean of the patch  average pooling concatenated with max
              tokens (open_clip: both projected); 2x dim   pooling of the last feature map; 2x dim
``gem``       signed generalised mean (p=3) of the patch   generalised mean (p=3) of the last
              tokens (open_clip: then projected)           feature map
``multiscale``  the mean of ``cls`` at input scales          the same
              ``MULTISCALE`` (timm ViTs: position
              embeddings resampled once per scale;
              open_clip refuses it)
============  ==========================================  =======================================

ViT tokens after the final LayerNorm take both signs, so their GeM keeps the
sign: ``sign(m) * |m|^(1/p)`` with ``m = mean(sign(x) * |x|^p)``. A CNN has no
CLS token: ``cls+avg`` there is the common avg+max pair (both are pooled
summaries of the same map, the max adding the strongest local responses).

``augment="flip"`` averages the features of the image and of its mirror image
(at every scale). Features are averaged raw (not normalised first), so a
linear classifier on them gives the average of the views' logits. The output
is not normalised: :class:`~bannermatch.embed.models.factory.EmbeddingModel` does it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bannermatch.errors import ModelError

#: input scales of the ``multiscale`` strategy, relative to the model's input size
MULTISCALE = (0.75, 1.0, 1.25)
GEM_P = 3.0


def load_state_in_order(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` by position, for checkpoints with other key names.

    ``num_batches_tracked`` buffers are skipped on both sides; every other
    tensor must match in count and shape, or :class:`ModelError` says which.
    """
    ours = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    theirs = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs):
        raise ModelError(f"{what}: the checkpoint has {len(theirs)} tensors, the model {len(ours)}")
    mapped = {}
    for (key, mine), (src, tensor) in zip(ours, theirs, strict=True):
        if tuple(mine.shape) != tuple(tensor.shape):
            raise ModelError(
                f"{what}: shape mismatch at {key} {tuple(mine.shape)} "
                f"<- {src} {tuple(tensor.shape)}"
            )
        mapped[key] = tensor
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ModelError(f"{what}: tensors not loaded: {missing or unexpected}")


def gem(x: torch.Tensor, dim: tuple[int, ...] | int, p: float = GEM_P) -> torch.Tensor:
    """Generalised mean of non-negative activations (clamped at 1e-6)."""
    return x.clamp(min=1e-6).pow(p).mean(dim=dim).pow(1.0 / p)


def signed_gem(x: torch.Tensor, dim: int, p: float = GEM_P) -> torch.Tensor:
    """Generalised mean that keeps the sign, for activations of both signs."""
    m = (x.sign() * x.abs().pow(p)).mean(dim=dim)
    return m.sign() * m.abs().clamp(min=1e-12).pow(1.0 / p)


def scaled_sizes(size: int, multiple: int) -> list[int]:
    """The input sizes of ``multiscale``: ``size`` times each scale, rounded to ``multiple``."""
    return [max(multiple, round(size * s / multiple) * multiple) for s in MULTISCALE]


class FeatureExtractor(nn.Module):
    """Pixels (B, 3, H, W) in, one unnormalised feature row per image out.

    ``kind`` says how ``network``'s outputs are laid out (see
    :data:`bannermatch.embed.models.registry.KIND_STRATEGIES`).
    """

    def __init__(
        self,
        network: nn.Module,
        kind: str,
        strategy: str = "cls",
        *,
        augment: str = "none",
        patch_size: int = 1,
        input_size: int = 224,
    ):
        super().__init__()
        from bannermatch.embed.models.registry import AUGMENTS, KIND_STRATEGIES

        if strategy not in KIND_STRATEGIES[kind]:
            raise ModelError(
                f"strategy {strategy!r} does not apply to this {kind} model; "
                f"choose one of {', '.join(KIND_STRATEGIES[kind])}"
            )
        if augment not in AUGMENTS:
            raise ModelError(f"unknown augment {augment!r}; choose one of {', '.join(AUGMENTS)}")
        self.network = network
        self.kind = kind
        self.strategy = strategy
        self.flip = augment == "flip"
        self.patch_size = patch_size
        if kind == "clip-vit":
            network.output_tokens = True  # type: ignore[assignment]  # open_clip's flag, not a Tensor
        if kind == "vit" and strategy == "multiscale":
            _scale_position_embeddings(network, input_size, patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        size = int(pixels.shape[-1])
        sizes = scaled_sizes(size, self.patch_size) if self.strategy == "multiscale" else [size]
        feats = []
        for s in sizes:
            x = pixels
            if s != size:
                x = F.interpolate(pixels, size=(s, s), mode="bilinear", align_corners=False)
            feats.append(self.single(x))
            if self.flip:
                feats.append(self.single(x.flip(-1)))
        return feats[0] if len(feats) == 1 else torch.stack(feats).mean(dim=0)

    def single(self, x: torch.Tensor) -> torch.Tensor:
        """The strategy's features of one view at one scale (``multiscale``: ``cls``)."""
        strategy = "cls" if self.strategy == "multiscale" else self.strategy
        # timm's and open_clip's models: forward_features, forward_head and
        # num_prefix_tokens are theirs, not nn.Module's
        net: Any = self.network
        if self.kind == "cnn":
            fmap = net.forward_features(x)
            if getattr(net, "output_fmt", "NCHW") == "NHWC":
                fmap = fmap.permute(0, 3, 1, 2)
            if strategy == "gem":
                return gem(fmap, dim=(2, 3))
            if strategy == "cls+avg":
                return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)
            return net.forward_head(fmap, pre_logits=True)
        if self.kind == "vit":
            tokens = net.forward_features(x)
            pooled = net.forward_head(tokens, pre_logits=True)
            patches = tokens[:, int(net.num_prefix_tokens) :]
            if strategy == "gem":
                return signed_gem(patches, dim=1)
            if strategy == "cls+avg":
                return torch.cat([pooled, patches.mean(dim=1)], dim=1)
            return pooled
        if self.kind == "clip-vit":
            pooled, tokens = net(x)
            if strategy == "gem":
                return self._project(signed_gem(tokens, dim=1))
            if strategy == "cls+avg":
                return torch.cat([pooled, self._project(tokens.mean(dim=1))], dim=1)
            return pooled
        out = net(x)  # "clip" and "hub": the module's own vector
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            raise ModelError("the model does not return one feature vector per image")
        return out

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        proj = getattr(self.network, "proj", None)
        return x @ proj if proj is not None else x


def _scale_position_embeddings(vit: Any, size: int, patch: int) -> None:
    """Let a timm ViT take the input sizes of ``multiscale``.

    ``vit`` is duck-typed (``Any``): timm's ViT-like classes share ``pos_embed``,
    ``patch_embed`` and ``_pos_embed`` but no base class declares them.

    timm's ``dynamic_img_size`` resamples the position embeddings on every call,
    with an antialiased bicubic filter that ONNX cannot express. Instead they are
    resampled here once per size (the same filter, in PyTorch), and the model's
    ``_pos_embed`` picks the table matching the number of patches, so both
    engines run the same fixed tables.
    """
    from timm.layers import resample_abs_pos_embed

    if getattr(vit, "pos_embed", None) is None or getattr(vit, "dynamic_img_size", False):
        return
    prefix = 0 if vit.no_embed_class else int(vit.num_prefix_tokens)
    grid = tuple(vit.patch_embed.grid_size)
    tables = {}
    with torch.no_grad():
        for s in scaled_sizes(size, patch):
            new = (s // patch, s // patch)
            tables[new[0] * new[1]] = resample_abs_pos_embed(
                vit.pos_embed.detach(), new_size=new, old_size=grid, num_prefix_tokens=prefix
            )
    for n, table in tables.items():
        vit.register_buffer(f"bm_pos_embed_{n}", table, persistent=False)
    vit.patch_embed.strict_img_size = False

    def pos_embed(x: torch.Tensor) -> torch.Tensor:  # timm's _pos_embed with a chosen table
        table = getattr(vit, f"bm_pos_embed_{int(x.shape[1])}")
        extra = [
            t.expand(x.shape[0], -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None
        ]
        if vit.no_embed_class:
            x = torch.cat([*extra, x + table], dim=1)
        else:
            x = torch.cat([*extra, x], dim=1) + table
        return vit.pos_drop(x)

    vit._pos_embed = pos_embed
