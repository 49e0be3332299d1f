"""The quality gate of a lower precision: int8 against fp32 on the same images.

Both models embed the same folders in one process: same-game retrieval (a folder and
its groups TSV, as ``bannermatch eval --groups``) and copy detection (a folder's altered
copies among its originals and distractors, as ``bannermatch eval --copies``). The int8
model is the one ``index`` would use: made from the shipped ranges when the model has
some (``embed.models.ranges``: the default's were measured on the IGDB covers, so on the
covers and their copies the gate is out of sample), else calibrated on the images of the
two folders, as ``index`` calibrates on the images it indexes. int8 passes when, on both
tasks, its recall@1 and mAP are at most ``tolerance`` below fp32's. The mean and the
lowest cosine between the int8 and fp32 vectors of the same images are reported beside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bannermatch.acquire.inputs import scan_input
from bannermatch.embed.models import create_model
from bannermatch.embed.models.precision import calibrate
from bannermatch.evaluation.groups import embed_items, evaluate

#: the largest drop in recall@1 or mAP that int8 may show against fp32
TOLERANCE = 0.01
GATED = ("recall@1", "mAP")


@dataclass
class GateResult:
    tolerance: float
    #: task -> precision -> metrics (``recall@1``, ``mAP``, ...)
    tasks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cosine_mean: float = float("nan")
    cosine_min: float = float("nan")
    n_cosine: int = 0
    calibration_images: int = 0

    def deltas(self) -> dict[str, dict[str, float]]:
        """int8 minus fp32, per task and gated metric."""
        return {
            task: {m: by["int8"][m] - by["fp32"][m] for m in GATED}
            for task, by in self.tasks.items()
        }

    @property
    def passed(self) -> bool:
        return bool(self.tasks) and all(
            d >= -self.tolerance for task in self.deltas().values() for d in task.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "tasks": self.tasks,
            "deltas": self.deltas(),
            "cosine_int8_fp32": {
                "mean": self.cosine_mean,
                "min": self.cosine_min,
                "n": self.n_cosine,
            },
            "calibration_images": self.calibration_images,
        }

    def summary(self) -> str:
        lines = [
            f"{task}: fp32 recall@1 {by['fp32']['recall@1']:.4f} mAP {by['fp32']['mAP']:.4f}"
            f" | int8 recall@1 {by['int8']['recall@1']:.4f} mAP {by['int8']['mAP']:.4f}"
            for task, by in self.tasks.items()
        ]
        lines.append(
            f"cosine int8 vs fp32 on {self.n_cosine} images: mean {self.cosine_mean:.4f} "
            f"min {self.cosine_min:.4f}"
        )
        lines.append(f"gate (drop <= {self.tolerance}): {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1), np.float64)  # both L2-normalised


def run_gate(
    images: str | os.PathLike[str],
    groups: str | os.PathLike[str],
    copies_images: str | os.PathLike[str] | None = None,
    *,
    distractors: str | os.PathLike[str] | None = None,
    alterations: str | None = None,
    seed: int = 0,
    tolerance: float = TOLERANCE,
    model: str = "effnet-lite0",
    progress: bool = False,
    **model_options: Any,
) -> GateResult:
    """int8 against fp32 on same-group retrieval in ``images`` (``groups``: its TSV) and,
    with ``copies_images``, on copy detection of that folder's altered copies."""
    from bannermatch.evaluation.copies import copies_of, evaluate_copy_set

    folders = list(dict.fromkeys(Path(f).resolve() for f in (images, copies_images) if f))
    items = [it for f in folders for it in scan_input(f).items]
    options = {"engine": "onnx", "device": "cpu", **model_options}
    nets = {
        "fp32": create_model(model, precision="fp32", **options),
        "int8": calibrate(create_model(model, precision="int8", **options), items),
    }
    result = GateResult(tolerance)
    result.calibration_images = int((nets["int8"].int8 or {}).get("calibration_images", 0))
    for name, net in nets.items():
        run = evaluate(images, groups, model=net, progress=progress)
        result.tasks.setdefault("same-group", {})[name] = run.metrics.to_dict()
    if copies_images is not None:
        with copies_of(
            copies_images, None, alterations, seed, distractors, progress=progress
        ) as copy_set:
            for name, net in nets.items():
                run_c = evaluate_copy_set(copy_set, model=net, progress=progress)
                result.tasks.setdefault("copies", {})[name] = run_c.metrics.to_dict()
    sample = items[:: max(1, len(items) // 256)]
    a = embed_items(sample, nets["fp32"], 64, False)[0]
    b = embed_items(sample, nets["int8"], 64, False)[0]
    cos = _cosines(a, b)
    result.n_cosine = len(cos)
    if len(cos):
        result.cosine_mean, result.cosine_min = float(cos.mean()), float(cos.min())
    return result
