"""The OCR store on its own (no OCR needed): parts, overrides, compaction, a killed
write, damaged lines, and settings that change."""

from __future__ import annotations

from pathlib import Path

from bannermatch.ocr import load_ocr
from bannermatch.ocr.store import OcrStore

BOX = [0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2]


def row(item_id: str, text: str, sha: str = "s") -> dict:
    lines = [{"text": text, "confidence": 0.9, "box": BOX}] if text else []
    return {"id": item_id, "sha256": sha, "text": text, "lines": lines}


def test_parts_override_compact_and_survive_a_killed_write(tmp_path: Path) -> None:
    store = OcrStore.open(tmp_path)
    assert store.results == {} and load_ocr(tmp_path) == {}
    store.reset({"engine": "x", "det_side": 736})
    store.commit([row("a", "DOOM"), row("b", ""), {"id": "c", "sha256": "s", "bad": "truncated"}])
    store.commit([row("a", "DOOM ETERNAL", "t"), row("c", "FIXED", "u")])  # read again
    # a write killed half-way leaves only its temporary file: never read
    (tmp_path / "ocr" / "parts" / ".00000003.jsonl.x1y2.tmp").write_text('{"id": "zz", "te')
    again = OcrStore.open(tmp_path)
    assert {i: r.text for i, r in again.results.items()} == {
        "a": "DOOM ETERNAL", "b": "", "c": "FIXED"
    }  # fmt: skip
    assert again.bad == {} and again.sha256 == {"a": "t", "b": "s", "c": "u"}
    line = again.results["a"].lines[0]
    assert line.bbox == (0.1, 0.1, 0.9, 0.2) and line.confidence == 0.9
    assert again.bytes_per_item() > 50
    again.compact()
    parts = sorted((tmp_path / "ocr" / "parts").glob("*.jsonl"))
    assert [p.name for p in parts] == ["00000003.jsonl"]
    assert {i: r.text for i, r in load_ocr(tmp_path).items()} == {
        "a": "DOOM ETERNAL", "b": "", "c": "FIXED"
    }  # fmt: skip


def test_a_damaged_line_is_skipped_and_settings_reset(tmp_path: Path) -> None:
    store = OcrStore.open(tmp_path)
    store.reset({"det_side": 736})
    store.commit([row("a", "ABZU"), row("b", "JOURNEY")])
    part = next((tmp_path / "ocr" / "parts").glob("*.jsonl"))
    text = part.read_text().splitlines()
    part.write_text(text[0] + "\n" + '{"id": "b", "sha256": "s", "lines": [{"text": 1}]}\n')
    assert set(load_ocr(tmp_path)) == {"a"}
    reopened = OcrStore.open(tmp_path)
    assert "b" not in reopened.sha256  # so the next run reads it again
    assert reopened.manifest == {"det_side": 736}
    reopened.reset({"det_side": 480})  # other settings: everything is read again
    assert load_ocr(tmp_path) == {} and OcrStore.open(tmp_path).manifest == {"det_side": 480}
