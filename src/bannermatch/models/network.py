"""Building a preset's PyTorch network with its weights, and the feature strategies."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from .registry import ModelSpec


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


def build_network(spec: ModelSpec) -> nn.Module:
    """The timm classifier of ``spec`` with its real weights, in eval mode."""
    import timm

    path = spec.weights_file()
    model = timm.create_model(spec.arch, pretrained=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file must name itself
        raise ModelError(f"{spec.name}: cannot read weights {path}: {exc}") from None
    load_state_in_order(model, state, spec.name)
    return model.eval()


class FeatureExtractor(nn.Module):
    """Pooled features of a timm CNN: ``cls`` = its own global pooling, ``gem`` =
    generalised-mean pooling (p=3) of the last feature map. Output is not normalised."""

    def __init__(self, network: nn.Module, strategy: str = "cls", gem_p: float = 3.0):
        super().__init__()
        self.network = network
        self.strategy = strategy
        self.gem_p = gem_p

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        fmap = self.network.forward_features(pixels)
        if self.strategy == "gem":
            p = self.gem_p
            return fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        return self.network.forward_head(fmap, pre_logits=True)
