"""``bannermatch eval --compare``: one task, several models and settings, one table.

The variants are the product of the values given for ``--model``, ``--fit``,
``--strategy`` and ``--augment``; every other model option is shared. A variant
that cannot run (a strategy the model does not offer, weights that are not
cached) is reported with its reason and the others go on. The copy-detection
task alters the images once and evaluates every variant on the same copies.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bannermatch.defaults import BATCH_SIZE, DEFAULT_MODEL
from bannermatch.errors import BannermatchError
from bannermatch.evaluation.copies import CopyEvalResult, copies_of, evaluate_copy_set
from bannermatch.evaluation.groups import EvalResult, evaluate, read_groups

#: the options whose values are combined
VARIANT_OPTIONS = ("model", "fit", "strategy", "augment")


def variants(
    models: Sequence[str] = (DEFAULT_MODEL,),
    fits: Sequence[str | None] = (None,),
    strategies: Sequence[str] = ("cls",),
    augments: Sequence[str] = ("none",),
) -> list[dict[str, Any]]:
    """Every combination of the values, in the order given (the model varies slowest)."""
    return [
        dict(zip(VARIANT_OPTIONS, combo, strict=True))
        for combo in itertools.product(models, fits, strategies, augments)
    ]


def describe(variant: dict[str, Any]) -> str:
    """``effnet-lite0 fit=pad strategy=gem``: a variant as the user would type it."""
    defaults = {"fit": None, "strategy": "cls", "augment": "none"}
    extras = [f"{k}={v}" for k, v in variant.items() if k in defaults and v != defaults[k]]
    return " ".join([str(variant.get("model", DEFAULT_MODEL)), *extras])


@dataclass
class Comparison:
    """The results of one task under several variants; ``to_dict`` is its JSON."""

    task: str  # "groups" or "copies"
    images: str
    results: list[EvalResult | CopyEvalResult]
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "images": self.images,
            "runs": [r.to_dict() for r in self.results],
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        from bannermatch.tables import format_table

        lines = []
        if self.results:
            ks = sorted(self.results[0].metrics.recall)
            headers = ["model key", *(f"recall@{k}" for k in ks), "mAP", "median rank"]
            names: list[str] = []
            first = self.results[0]
            if isinstance(first, CopyEvalResult):  # the "copies" task
                names = list(first.by_alteration)
                headers += [f"r@1 {n}" for n in names]
            rows = []
            for r in self.results:
                for label, m, alt in _rows_of(r):
                    row = [label, *(m.recall[k] for k in ks), m.map, m.median_first_rank]
                    row += [alt[n].recall[1] if n in alt else "" for n in names]
                    rows.append([*row, round(r.images_per_second, 1), _verify_ms(r, m)])
            lines.append(format_table([*headers, "img/s", "verify ms"], rows))
            best = max(self.results, key=lambda r: r.metrics.map)
            lines.append(f"best mAP: {best.model_key} ({best.metrics.map:.4f})")
        lines += [f"failed: {f['variant']}: {f['reason']}" for f in self.failed]
        lines.append(f"{len(self.results)} run(s) in {self.seconds:.1f}s")
        return "\n".join(lines)


def _rows_of(r: EvalResult | CopyEvalResult) -> list[tuple[str, Any, dict[str, Any]]]:
    """A run's table rows: global, then re-ranked when it was (``--rerank``)."""
    alt = r.by_alteration if isinstance(r, CopyEvalResult) else {}
    if not r.rerank or r.global_metrics is None:
        return [(r.model_key, r.metrics, alt)]
    before = (r.global_by_alteration or {}) if isinstance(r, CopyEvalResult) else {}
    return [
        (r.model_key, r.global_metrics, before),
        (f"{r.model_key} +rerank {r.rerank}", r.metrics, alt),
    ]


def _verify_ms(r: EvalResult | CopyEvalResult, m: Any) -> str | float:
    return round(r.rerank_cpu_ms, 1) if r.rerank and m is r.metrics else ""


def compare(
    images: str | os.PathLike[str],
    runs: Sequence[dict[str, Any]],
    *,
    groups: str | os.PathLike[str] | None = None,
    file_column: str = "file",
    group_column: str = "group",
    alterations: str | Sequence[str] | None = None,
    seed: int = 0,
    keep_copies: str | os.PathLike[str] | None = None,
    distractors: str | os.PathLike[str] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    rerank: int | None = None,
    **shared: Any,
) -> Comparison:
    """Evaluate each variant of ``runs`` (dicts of model, fit, strategy, augment) on
    the same-group task (``groups``: a TSV) or, without ``groups``, on copy detection.

    ``shared`` model options (engine, device, resize_size, ...) apply to every run.
    """
    if not runs:
        raise BannermatchError("nothing to compare: no variant given")
    t0 = time.perf_counter()
    results: list[EvalResult | CopyEvalResult] = []
    failed: list[dict[str, str]] = []

    def attempt(variant: dict[str, Any], run: Any) -> None:
        options = {**shared, **variant}
        try:
            results.append(run(options))
        except BannermatchError as exc:
            reason, name = str(exc), f"{variant.get('model')}: "
            failed.append({"variant": describe(variant), "reason": reason.removeprefix(name)})

    if groups is not None:
        read_groups(groups, file_column, group_column)  # a bad TSV stops before any run
        for variant in runs:
            attempt(
                variant,
                lambda o: evaluate(
                    images,
                    groups,
                    file_column=file_column,
                    group_column=group_column,
                    batch_size=batch_size,
                    progress=progress,
                    rerank=rerank,
                    **o,
                ),
            )
        return Comparison("groups", str(images), results, failed, time.perf_counter() - t0)

    with copies_of(images, keep_copies, alterations, seed, distractors, progress) as copy_set:
        for variant in runs:
            attempt(
                variant,
                lambda o: evaluate_copy_set(
                    copy_set, batch_size=batch_size, progress=progress, rerank=rerank, **o
                ),
            )
    return Comparison("copies", str(images), results, failed, time.perf_counter() - t0)
