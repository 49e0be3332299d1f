"""Where pretrained weights live and how they get there.

Weights stay in the libraries' own caches (the Hugging Face hub cache for
timm and open_clip, torch.hub's folder for URLs and hub repositories), so a
model downloaded by any other tool is found here too. Before downloading,
the host is asked once with a short timeout: a machine without internet gets
``ModelError("<model>: weights not cached at <path> and cannot be downloaded:
<reason>")`` within seconds instead of a hang.

For tests only: ``BANNERMATCH_RANDOM_WEIGHTS=1`` (or ``create_model(...,
pretrained=False)``) builds a model with seeded random weights and no download.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bannermatch.embed.models.registry import file_sha256
from bannermatch.errors import ModelError

#: environment variable that makes every model random-weighted (tests only)
RANDOM_ENV = "BANNERMATCH_RANDOM_WEIGHTS"
#: seconds to wait for a weights host to answer before calling it unreachable
CONNECT_TIMEOUT = 3.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Weights:
    """The weights a model is built with: a file, or seeded random values (``path`` None)."""

    path: Path | None  # None: the loader fetched them itself (torch.hub), or random
    sha256: str  # content hash, or "random"
    source: str  # in words, for the manifest
    random: bool = False


RANDOM = Weights(None, "random", "random weights (tests only)", True)


def random_requested(pretrained: bool | None) -> bool:
    """Whether to build with random weights: ``pretrained=False``, or the test variable."""
    if pretrained is not None:
        return not pretrained
    return os.environ.get(RANDOM_ENV, "").strip().lower() in {"1", "true", "yes"}


def content_id(path: Path) -> str:
    """The sha256 of a weights file; the blob name when the HF cache already says it."""
    blob = Path(os.path.realpath(path)).name
    return blob if _SHA256.fullmatch(blob) else file_sha256(Path(os.path.realpath(path)))


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when ``url``'s host answers within ``timeout`` seconds, else why not."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered, if not with 200
    except urllib.error.URLError as exc:
        return f"{url} is unreachable ({exc.reason})"
    except (TimeoutError, OSError) as exc:
        return f"{url} is unreachable ({exc or type(exc).__name__})"


def not_cached(model: str, where: Path | str, reason: str) -> ModelError:
    return ModelError(f"{model}: weights not cached at {where} and cannot be downloaded: {reason}")


@dataclass(frozen=True)
class HubFile:
    """A weights file in a Hugging Face hub repository: the first of ``filenames`` found."""

    repo_id: str
    filenames: tuple[str, ...]

    @property
    def cache_path(self) -> Path:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE) / f"models--{self.repo_id.replace('/', '--')}"

    def cached(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for name in self.filenames:
            hit = try_to_load_from_cache(self.repo_id, name)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
        return None

    def fetch(self, model: str) -> Path:
        hit = self.cached()
        if hit is not None:
            return hit
        from huggingface_hub import constants, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        if constants.HF_HUB_OFFLINE:
            raise not_cached(model, self.cache_path, "HF_HUB_OFFLINE is set")
        reason = unreachable(constants.ENDPOINT)
        if reason:
            raise not_cached(model, self.cache_path, reason)
        for name in self.filenames:
            try:
                return Path(hf_hub_download(self.repo_id, name))
            except EntryNotFoundError:
                continue
            except Exception as exc:  # network, authentication, disk: one line naming the model
                raise not_cached(model, self.cache_path, f"{type(exc).__name__}: {exc}") from None
        raise ModelError(f"{model}: {self.repo_id} has none of {', '.join(self.filenames)}")


@dataclass(frozen=True)
class UrlFile:
    """A weights file at a URL, kept in ``folder`` under the URL's file name."""

    url: str
    folder: Path

    @property
    def cache_path(self) -> Path:
        return self.folder / os.path.basename(self.url.split("?", 1)[0])

    def cached(self) -> Path | None:
        return self.cache_path if self.cache_path.is_file() else None

    def fetch(self, model: str) -> Path:
        if self.cache_path.is_file():
            return self.cache_path
        reason = unreachable(self.url)
        if reason:
            raise not_cached(model, self.cache_path, reason)
        import torch.hub

        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(self.url, str(self.cache_path), progress=True)
        except Exception as exc:
            raise not_cached(model, self.cache_path, f"{type(exc).__name__}: {exc}") from None
        return self.cache_path


def from_file(path: Path, source: str) -> Weights:
    return Weights(path, content_id(path), source)
