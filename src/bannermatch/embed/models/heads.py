"""The ImageNet classifier head of a model, kept on disk: label search without PyTorch.

The offline label search (``bannermatch search`` on a collection of the embedded
``effnet-lite0``) needs only the classifier's weights and its classes' names, a few MB.
Building the PyTorch network to get them costs about 3 s of imports and construction, so
the first time a network with a head is built on a machine its head is written to
``<cache>/heads/<arch>-<weights sha>.npz`` (weights, bias, subset, and each class's names
and definition), and a search loads that file instead. A missing or damaged file is made
again from the network.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.embed.models.engines import cache_dir
from bannermatch.embed.models.loaders import LabelHead
from bannermatch.store import atomic
from bannermatch.store.collection import safe_name

log = logging.getLogger(__name__)

#: bumped when the file's content changes
HEAD_VERSION = 1


def head_path(arch: str, weights_sha256: str) -> Path:
    """Where the head of ``arch`` with these weights is kept."""
    name = f"{safe_name(arch)}-{weights_sha256[:16]}-v{HEAD_VERSION}.npz"
    return cache_dir() / "heads" / name


def save_head(path: Path, head: LabelHead) -> None:
    """Write ``head`` to ``path`` atomically."""
    names, definitions = zip(*head.classes, strict=True) if head.classes else ((), ())
    buffer = io.BytesIO()
    np.savez(
        buffer,
        weight=head.weight,
        bias=head.bias,
        subset=np.array(head.subset),
        names=np.array(names, dtype=str),
        definitions=np.array(definitions, dtype=str),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buffer.getvalue())


def load_head(path: Path) -> LabelHead | None:
    """The head kept at ``path``, or None when it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as z:
            classes = list(zip(z["names"].tolist(), z["definitions"].tolist(), strict=True))
            weight, bias = z["weight"].astype(np.float32), z["bias"].astype(np.float32)
            head = LabelHead(weight, bias, str(z["subset"]), classes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        if path.exists():
            log.warning("%s is damaged (%s); making it again", path, exc)
        return None
    return head if len(head.classes) == len(head.bias) == len(head.weight) else None


def remember(arch: str, weights_sha256: str, head: LabelHead | None) -> None:
    """Keep ``head`` (of a network just built) for later searches, once a machine."""
    if head is None or weights_sha256 == "random":
        return
    path = head_path(arch, weights_sha256)
    if path.is_file() and load_head(path) is not None:
        return
    try:
        save_head(path, head)
    except OSError as exc:  # a read-only cache only costs the next search its speed
        log.debug("could not keep the label head in %s: %s", path, exc)


def label_head_for(manifest: dict[str, Any], device: str = "cpu") -> LabelHead | None:
    """The classifier head of the model that wrote ``manifest``: the kept file when
    there is one, else from the network (which keeps it)."""
    weights = manifest.get("weights") or {}
    sha = str(weights.get("sha256", "random"))
    if not weights.get("random") and manifest.get("arch"):
        head = load_head(head_path(str(manifest["arch"]), sha))
        if head is not None:
            return head
    from bannermatch.embed.models.factory import create_model

    # the head reads the pooled features whatever the preprocessing or precision
    model = create_model(
        str(manifest["model"]),
        engine="torch",
        device=device,
        strategy="cls",
        pretrained=False if weights.get("random") else None,
        precision="fp32",
    )
    return model.label_head()  # the network keeps it (factory._Network)
