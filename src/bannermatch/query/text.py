"""The image side of ``bannermatch search``: images by a text, with CLIP or, offline, by
ImageNet labels (``query.words`` combines it with the banner text and the names).

Two modes, chosen by the collection's model:

- ``clip``: a CLIP model (``cls`` strategy) embeds the text with its own tokenizer
  and text tower; the text embedding is L2-normalised and every stored image
  embedding is ranked by cosine similarity to it.
- ``labels``: a model with an ImageNet classifier (the embedded
  ``effnet-lite0``; ``cls`` strategy) cannot read text. The honest fallback ranks
  the images by the probability the classifier gives to the ImageNet classes
  whose names match the query: a class matches a word when the word (or its
  plural) is one of the words of the class's names or of its WordNet definition
  (timm's ``ImageNetInfo``), so "dog" matches the dog breeds described as dogs.
  When some classes match every word of the query, only those count. An image's
  score is the summed probability of the matched classes, computed exactly from
  the stored rows: ``p(c|x) = softmax(|f| * (W @ f_hat) + b)``, with ``f_hat`` the
  stored L2-normalised row and ``|f|`` its norm from ``norms.npy``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bannermatch.embed.models.factory import create_model_for
from bannermatch.embed.models.heads import label_head_for
from bannermatch.embed.models.loaders import LabelHead, imagenet_classes
from bannermatch.errors import BannermatchError
from bannermatch.query.neighbours import Neighbours
from bannermatch.store.collection import ModelData

#: rows scored at once in the label mode (block x classes probabilities in memory)
LABEL_BLOCK = 4096
#: words that never select a class
STOPWORDS = frozenset(
    {"a", "an", "and", "the", "of", "in", "on", "at", "to", "with", "for", "from", "by"}
    | {"or", "is", "are", "as", "its", "it", "this", "that"}
)
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


@dataclass
class LabelClass:
    index: int
    name: str  # the class's names, as timm gives them
    definition: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_mode(manifest: dict[str, Any]) -> str | None:
    """ "clip", "labels", or None: how a collection made with this model answers text."""
    if manifest.get("strategy") != "cls":
        return None
    if manifest.get("text"):
        return "clip"
    if "labels" in manifest:
        return "labels" if manifest["labels"] else None
    from bannermatch.embed.models.loaders import loader_for
    from bannermatch.embed.models.registry import get_spec
    from bannermatch.errors import ModelError

    try:  # a manifest older than the "labels" entry: ask the preset
        spec = get_spec(str(manifest.get("model")))
        return None if spec.text else ("labels" if loader_for(spec).labels() else None)
    except ModelError:
        return None


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.casefold()) if w not in STOPWORDS]


def _has_word(words: set[str], word: str) -> bool:
    return any(w in words for w in (word, word + "s", word + "es")) or (
        word.endswith("s") and word[:-1] in words
    )


def match_classes(query: str, subset: str = "imagenet-1k") -> list[LabelClass]:
    """The ImageNet classes whose names or definition contain the query's words."""
    return label_match(query, imagenet_classes(subset))[0]


class NoClassMatches(BannermatchError):
    """No ImageNet class has any of the query's words."""


def label_match(
    query: str, classes: Sequence[tuple[str, str]]
) -> tuple[list[LabelClass], list[str]]:
    """The classes (names and definition of each, in the classifier's order) whose names
    or definition contain the query's words, and the words that no class has (they play
    no part in the ranking)."""
    words = _words(query)
    if not words:
        raise BannermatchError(f"no words to search in {query!r}")
    found, hits = [], []
    used: set[str] = set()
    for index, (name, definition) in enumerate(classes):
        vocab = set(_WORD.findall(f"{name}: {definition}".casefold()))
        matched = [w for w in words if _has_word(vocab, w)]
        used.update(matched)
        if matched:
            found.append(LabelClass(index, name, definition))
            hits.append(len(matched))
    if not found:
        raise NoClassMatches(
            f"no ImageNet class matches {query!r}: without a CLIP model, text search can only "
            "look for ImageNet's classes (animals, objects, foods, vehicles, places)"
        )
    if max(hits) == len(words) and len(words) > 1:  # classes that match every word
        found = [c for c, n in zip(found, hits, strict=True) if n == len(words)]
    return found, [w for w in dict.fromkeys(words) if w not in used]


def label_scores(data: ModelData, head: LabelHead, indices: list[int]) -> np.ndarray:
    """Each row's summed probability of the classes ``indices`` (float32, N), exact."""
    norms = data.require_norms()
    weight = np.asarray(head.weight, np.float32)
    bias = np.asarray(head.bias, np.float32)
    out = np.empty(len(data.ids), np.float32)
    for start in range(0, len(data.ids), LABEL_BLOCK):
        rows = np.asarray(data.embeddings[start : start + LABEL_BLOCK], np.float32)
        logits = (rows @ weight.T) * np.asarray(norms[start : start + LABEL_BLOCK])[:, None]
        logits += bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        out[start : start + len(rows)] = probs[:, indices].sum(axis=1)
    return out


class TextSearcher:
    """Answers text queries on one collection's rows; loads the model on first use."""

    def __init__(self, data: ModelData, *, device: str = "cpu"):
        self.data = data
        self.mode = text_mode(data.manifest)
        self.device = device
        self._model: Any = None
        self._head: LabelHead | None = None

    def _load(self) -> Any:
        if self._model is None:
            self._model = create_model_for(
                self.data.manifest, engine="torch", device=self.device, text_only=True
            )
        return self._model

    def _label_head(self) -> LabelHead:
        if self._head is None:
            self._head = label_head_for(self.data.manifest, device=self.device)
        if self._head is None:
            raise BannermatchError(f"{self.data.key} has no ImageNet classifier to search with")
        return self._head

    def rank(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray, list[LabelClass]]:
        rows, scores, classes, _ = self.rank_words(text, k)
        return rows, scores, classes

    def rank_words(
        self, text: str, k: int
    ) -> tuple[np.ndarray, np.ndarray, list[LabelClass], list[str]]:
        """The ``k`` best rows, their scores, the classes a label search used, and the
        words of ``text`` that no ImageNet class has."""
        text = text.strip()
        if not text:
            raise BannermatchError("the text to search is empty")
        if k < 1:
            raise BannermatchError("k must be at least 1")
        if self.mode is None:
            raise BannermatchError(
                f"{self.data.key} cannot search by text: it needs a CLIP model "
                "(e.g. --model clip-vit-b32) or an ImageNet classifier, with --strategy cls"
            )
        if self.mode == "clip":
            vector = self._load().embed_text([text])[0]
            rows, scores = Neighbours(self.data).nearest(vector, k)
            return rows, scores, [], []
        self.data.require_norms()  # before loading the model: the hint comes first
        head = self._label_head()
        classes, unmatched = label_match(text, head.classes)
        scores = label_scores(self.data, head, [c.index for c in classes])
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        order = top[np.lexsort((top, -scores[top]))]
        return order, scores[order], classes, unmatched
