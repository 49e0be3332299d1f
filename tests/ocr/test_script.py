"""The recogniser's script: a stylised Latin letter read as a CJK character is read again
in Latin; lines in CJK script keep their characters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "rapidocr_onnxruntime", reason="the 'ocr' extra is not installed (pip install bannermatch[ocr])"
)

from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

from bannermatch.ocr.engine import _latin_first, read_banner


def _steps(decode: CTCLabelDecode, *steps: tuple[str, str], n: int = 7) -> np.ndarray:
    """Probabilities of one line of ``n`` steps: at each step the best character and the
    next best (blank after the steps given)."""
    preds = np.zeros((n, len(decode.character)), np.float32)
    preds[len(steps) :, 0] = 1.0
    for t, (best, second) in enumerate(steps):
        preds[t, decode.character.index(second)] = 0.3
        preds[t, decode.character.index(best)] = 0.6
    return preds


def test_mixed_lines_are_read_again_in_latin_and_cjk_lines_are_kept() -> None:
    decode = CTCLabelDecode(character=list("AFHL入耶中文"))
    blank = "blank"
    half = _steps(decode, ("H", blank), (blank, "H"), ("入", "A"), (blank, "入"), ("L", blank),
                  (blank, "L"), ("F", blank))  # fmt: skip
    ops = _steps(decode, ("H", blank), (blank, "A"), ("耶", blank))
    cjk = _steps(decode, ("中", "A"), (blank, "F"), ("文", "H"))
    lines = _latin_first(decode)(np.stack([half, ops, cjk]))
    assert [text for text, _ in lines] == ["HALF", "H", "中文"]
    assert lines[0][1] == pytest.approx(np.mean([0.6, 0.3, 0.6, 0.6]))  # the Latin reading's
    assert lines[2] == decode(cjk[None])[0]


def test_a_stylised_title_is_read_without_cjk(covers_dir: Path) -> None:
    """Half-Life's A (a lambda) was read 入: ``H入LF-LIFE``."""
    image = Image.open(covers_dir / "images" / "half-life-blue-shift-0.jpg")
    rgb = np.asarray(image.convert("RGB"))
    text = read_banner(rgb).text
    assert "HALF-LIFE" in text and not any(ord(c) >= 0x2E80 for c in text), text
