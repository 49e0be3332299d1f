"""``bannermatch audit``: every flag on real covers and their variants, through the CLI."""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bannermatch.cli import main
from bannermatch.embed.index import index
from bannermatch.evaluation.audit import (
    AUDIT_DIR,
    AUDIT_JSON,
    AUDIT_MD,
    Probe,
    audit,
    exact_duplicates,
    id_order,
    pixel_stats,
)
from bannermatch.store.catalog import Catalog, Item
from bannermatch.store.collection import Collection

# the package binds `bannermatch.evaluation.audit` to the function; this is the module
audit_module = importlib.import_module("bannermatch.evaluation.audit")

SIZE = (342, 482)  # the covers' size: the most common one in the test collection
#: the kept image (numeric id order: 999 < 1000), its exact pixel copy and a recompressed copy
KEPT, COPY, RECOMPRESSED = "999", "1000", "1001"

#: variant id -> the flags audit must give it (near-duplicates come from `match`)
EXPECTED = {
    "v-cmyk": {"mode:CMYK"},
    "v-grey": {"mode:L"},
    "v-rgba": {"mode:RGBA"},
    "v-palette": {"mode:P"},
    "v-deep": {"mode:I;16"},
    "v-black": {"blank"},
    "v-white": {"blank"},
    "v-faint": {"near-blank"},
    "v-truncated": {"corrupt"},
    "v-html": {"corrupt"},
    "v-600x900": {"size", "aspect"},
    "v-double": {"size"},
    "v-gone": {"unreadable"},
    COPY: {"duplicate"},
}


def _single_covers(covers_dir: Path, n: int) -> list[Path]:
    """Covers of games that have a single artwork, so none is a near-duplicate of another."""
    with open(covers_dir / "covers.tsv", encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["group_size"] == "1"]
    files = sorted(covers_dir / "images" / r["file"] for r in rows)
    assert len(files) >= n
    return files[:n]


def _write_images(covers_dir: Path, images: Path) -> list[str]:
    """Real covers as they are, plus one variant of its own cover per flag; returns all ids."""
    images.mkdir(parents=True)
    covers = iter(_single_covers(covers_dir, 24))
    ids = []
    for _ in range(6):
        src = next(covers)
        shutil.copyfile(src, images / src.name)
        ids.append(src.stem)

    def cover() -> Image.Image:
        with Image.open(next(covers)) as im:
            return im.convert("RGB")

    cover().save(images / f"{COPY}.jpg", quality=95)
    with Image.open(images / f"{COPY}.jpg") as im:
        base = im.convert("RGB")
    base.save(images / f"{KEPT}.png")  # the same pixels as COPY, in other bytes and format
    base.save(images / f"{RECOMPRESSED}.jpg", quality=90)
    cover().convert("CMYK").save(images / "v-cmyk.jpg")
    cover().convert("L").save(images / "v-grey.jpg")
    rgba = cover().convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(SIZE))
    rgba.save(images / "v-rgba.png")
    cover().quantize(64).save(images / "v-palette.png")
    deep = np.asarray(cover().convert("L"), np.uint16) * 257
    Image.fromarray(deep).save(images / "v-deep.png")
    Image.new("RGB", SIZE, (0, 0, 0)).save(images / "v-black.jpg")
    Image.new("RGB", SIZE, (255, 255, 255)).save(images / "v-white.jpg")
    noise = np.random.default_rng(0).integers(0, 9, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    Image.fromarray(noise + 40).save(images / "v-faint.png")  # spread 8, std ~2.6
    data = next(covers).read_bytes()
    (images / "v-truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (images / "v-html.jpg").write_text("<!DOCTYPE html><html><body>404</body></html>")
    cover().resize((600, 900)).save(images / "v-600x900.jpg")
    cover().resize((SIZE[0] * 2, SIZE[1] * 2)).save(images / "v-double.jpg")
    shutil.copyfile(next(covers), images / "v-gone.jpg")  # indexed, then deleted
    return [*ids, KEPT, COPY, RECOMPRESSED, *(k for k in EXPECTED if k.startswith("v-"))]


def _flags_of(report: dict) -> dict[str, set[str]]:
    return {it["id"]: set(it["flags"]) for it in report["flagged_items"]}


def _catalog_flags(coll: Path) -> dict[str, str]:
    with Catalog(Collection(coll).catalog_path, create=False) as cat:
        return {it.id: it.flags for it in cat.items()}


def _model_ids(coll: Path) -> list[str]:
    (folder,) = (coll / "models").iterdir()
    return json.loads((folder / "items.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def built(covers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """index -> audit (before match) -> match -> delete a file -> audit, all via the CLI."""
    from support.cli import run_cli

    coll = tmp_path_factory.mktemp("audit") / "coll"
    ids = _write_images(covers_dir, coll / "images")
    run_cli("index", coll, "--out", coll, "-q", "--json")
    before = json.loads(run_cli("audit", coll, "-q", "--json").stdout)
    before_md = (coll / AUDIT_DIR / AUDIT_MD).read_text("utf-8")
    run_cli("match", coll, "-q")
    (coll / "images" / "v-gone.jpg").unlink()
    summary = json.loads(run_cli("audit", coll, "-q", "--json").stdout)
    report = json.loads((coll / AUDIT_DIR / AUDIT_JSON).read_text("utf-8"))
    (folder,) = (coll / "models").iterdir()
    near_groups = json.loads((folder / "duplicates.json").read_text("utf-8"))
    expected = {i: set(EXPECTED.get(i, set())) for i in ids}
    for group in near_groups:
        for member in sorted(group, key=id_order)[1:]:
            expected[member].add("near-duplicate")
    return {
        "coll": coll,
        "ids": ids,
        "before": before,
        "before_md": before_md,
        "summary": summary,
        "report": report,
        "near_groups": near_groups,
        "expected": {i: f for i, f in expected.items() if f},
    }


def test_each_flag_lands_on_exactly_the_right_items(built: dict) -> None:
    assert _flags_of(built["report"]) == built["expected"]
    assert built["report"]["items"] == len(built["ids"])
    assert built["report"]["settings"]["expected_size"] == "342x482"


def test_near_duplicates_come_from_match(built: dict) -> None:
    groups = [set(g) for g in built["report"]["near_duplicates"]["groups"]]
    assert any({KEPT, COPY, RECOMPRESSED} <= g for g in groups)
    assert sorted(map(sorted, groups)) == sorted(map(sorted, built["near_groups"]))
    flags = _flags_of(built["report"])
    assert KEPT not in flags  # numeric id order: 999 before 1000
    assert flags[COPY] == {"duplicate", "near-duplicate"}
    assert flags[RECOMPRESSED] == {"near-duplicate"}
    assert built["report"]["near_duplicates"]["checked"] is True


def test_exact_duplicates_are_same_pixels_not_same_bytes(built: dict) -> None:
    coll = built["coll"] / "images"
    assert (coll / f"{KEPT}.png").read_bytes() != (coll / f"{COPY}.jpg").read_bytes()
    assert built["report"]["duplicate_groups"] == [[KEPT, COPY]]
    reasons = {it["id"]: it["reasons"] for it in built["report"]["flagged_items"]}
    assert reasons[COPY]["duplicate"] == f"same pixels as {KEPT}"
    assert RECOMPRESSED not in {m for g in built["report"]["duplicate_groups"] for m in g}


def test_reasons_say_why(built: dict) -> None:
    reasons = {it["id"]: it["reasons"] for it in built["report"]["flagged_items"]}
    assert reasons["v-600x900"]["size"] == "600x900, expected 342x482"
    assert "0.667" in reasons["v-600x900"]["aspect"]
    assert reasons["v-double"]["size"] == "684x964, expected 342x482"
    assert "(0, 0, 0)" in reasons["v-black"]["blank"]
    assert "(255, 255, 255)" in reasons["v-white"]["blank"]
    assert "standard deviation" in reasons["v-faint"]["near-blank"]
    assert "truncated" in reasons["v-truncated"]["corrupt"]
    assert "HTML" in reasons["v-html"]["corrupt"]
    assert reasons["v-gone"]["unreadable"].startswith("missing")
    assert "greyscale" in reasons["v-grey"]["mode:L"]


def test_statistics(built: dict) -> None:
    report = built["report"]
    assert report["modes"] == {"RGB": 14, "CMYK": 1, "L": 1, "RGBA": 1, "P": 1, "I;16": 1}
    assert report["sizes"] == {"342x482": 17, "600x900": 1, "684x964": 1}
    assert report["audited"] == len(built["ids"])
    assert report["decoded"] == len(built["ids"]) - 3  # truncated, html, gone
    counts: dict[str, int] = {}
    for flags in built["expected"].values():
        for f in flags:
            counts[f] = counts.get(f, 0) + 1
    assert report["counts"] == counts
    assert report["flagged"] == len(built["expected"])
    items = {it["id"]: it for it in report["flagged_items"]}
    assert (items["v-600x900"]["width"], items["v-600x900"]["height"]) == (600, 900)
    assert (items["v-deep"]["mode"], items["v-deep"]["format"]) == ("I;16", "PNG")
    assert "width" not in items["v-html"]  # not decoded


def test_summary_json_and_files_agree(built: dict) -> None:
    summary, report = built["summary"], built["report"]
    for key in ("items", "audited", "decoded", "flagged", "counts", "modes", "sizes", "settings"):
        assert summary[key] == report[key], key
    assert summary["duplicate_groups"] == len(report["duplicate_groups"])
    assert summary["near_duplicates"]["groups"] == len(report["near_duplicates"]["groups"])
    assert Path(summary["files"]["json"]) == built["coll"] / AUDIT_DIR / AUDIT_JSON
    md = Path(summary["files"]["markdown"]).read_text("utf-8")
    for flag, n in report["counts"].items():
        assert f"| `{flag}` | {n:,} |" in md
    assert "- 1 greyscale ('L') image: `v-grey`" in md
    assert "- 1 CMYK image: `v-cmyk`" in md
    assert "- 2 blank images: `v-black`" in md
    assert "- 1 image of 600x900 instead of 342x482: `v-600x900`\n" in md
    assert "- 1 image of 684x964 instead of 342x482: `v-double`\n" in md
    assert (
        "- 1 image with a width/height ratio off 0.710 by more than 2.0%: `v-600x900` (0.667)" in md
    )
    flagged_table = md.split("## Flagged items", 1)[1]
    table = dict(re.findall(r"^\| `([^`]+)` \| [^|]* \| ([^|]+) \|", flagged_table, re.M))
    assert {i: set(f.strip().split(", ")) for i, f in table.items()} == built["expected"]


def test_catalogue_flags_column(built: dict) -> None:
    flags = _catalog_flags(built["coll"])
    assert set(flags) == set(built["ids"])
    for item_id, value in flags.items():
        assert set(filter(None, value.split(","))) == built["expected"].get(item_id, set())
    assert flags["v-600x900"] == "size,aspect"
    assert flags[COPY] == "duplicate,near-duplicate"
    assert flags["v-deep"] == "mode:I;16"
    assert flags[KEPT] == ""


def test_before_match_the_report_says_so(built: dict) -> None:
    near = built["before"]["near_duplicates"]
    assert near["checked"] is False and near["groups"] == 0
    assert "`bannermatch match" in near["note"]
    assert "has not been run" in built["before_md"]
    assert "near-duplicate" not in built["before"]["counts"]
    assert built["before"]["counts"]["duplicate"] == 1  # exact duplicates need no embeddings


def test_index_skip_flagged_in_place_drops_flagged_items(built: dict, tmp_path: Path) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(built["coll"], coll)  # sources are stored relative to the collection
    assert set(_model_ids(coll)) == set(built["ids"]) - {"v-truncated", "v-html"}
    # index --skip-flagged, with the default model as `built` (int8 on the CPU): its rows
    index(coll, coll, skip_flagged=True, progress=False)
    assert set(_model_ids(coll)) == set(built["ids"]) - set(built["expected"])


def test_index_skip_flagged_into_a_fresh_collection(built: dict, tmp_path: Path, model) -> None:
    fresh = tmp_path / "fresh"
    index(built["coll"], fresh, model, skip_flagged=True, progress=False)
    assert set(_model_ids(fresh)) == set(built["ids"]) - set(built["expected"])


def test_rerun_replaces_flags(built: dict, tmp_path: Path, cli_here) -> None:
    coll = tmp_path / "coll"
    shutil.copytree(built["coll"], coll)
    out = cli_here(
        "audit",
        coll,
        "-q",
        "--json",
        "--expect-size",
        "600x900",
        "--allow-mode",
        "RGB,L",
        "--allow-mode",
        "CMYK",
        "--near-blank-std",
        "0",
    )
    summary = json.loads(out.stdout)
    flags = _catalog_flags(coll)
    near = {i for i, f in built["expected"].items() if "near-duplicate" in f}

    def expect(item_id: str, value: str) -> str:
        return ",".join(filter(None, [value, "near-duplicate" if item_id in near else ""]))

    assert flags["v-grey"] == expect("v-grey", "size,aspect")  # mode:L allowed now
    assert flags["v-cmyk"] == expect("v-cmyk", "size,aspect")
    assert flags["v-faint"] == expect("v-faint", "size,aspect")  # near-blank turned off
    assert flags["v-600x900"] == expect("v-600x900", "")
    assert flags["v-double"] == expect("v-double", "size,aspect")
    assert summary["settings"]["expected_size_from"] == "--expect-size"
    assert summary["counts"]["size"] == summary["decoded"] - 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expect-size", "300by450"], "not WIDTHxHEIGHT"),
        (["--allow-mode", "RGB,XYZ"], "unknown image mode 'XYZ'"),
        (["--blank-tolerance", "300"], "between 0 and 255"),
        (["--aspect-tolerance", "-1"], "aspect tolerance"),
    ],
)
def test_bad_options_are_one_line_errors(
    built: dict, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["audit", str(built["coll"]), "-q", *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_no_collection_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(tmp_path / "nothing")]) == 1
    assert "no collection" in capsys.readouterr().err


# the Python API on hand-made catalogues (no model) ------------------------------


def _tar_with(members: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG")
    return buf.getvalue()


def test_tar_members_pending_items_and_no_embeddings(covers_dir: Path, tmp_path: Path) -> None:
    covers = _single_covers(covers_dir, 3)
    with Image.open(covers[0]) as a, Image.open(covers[1]) as b:
        members = {"a.jpg": _jpeg(a), "b.jpg": _jpeg(b.convert("CMYK")), "c.jpg": b"<html>"}
    shard = _tar_with(members, tmp_path / "shard.tar")
    coll = tmp_path / "coll"
    with Catalog(Collection(coll).catalog_path) as cat:
        cat.upsert(
            [
                Item("a", "A", source=f"{shard}#a.jpg", status="ok"),
                Item("b", "B", source=f"{shard}#b.jpg", status="ok"),
                Item("c", "C", source=f"{shard}#c.jpg", status="bad"),
                Item("d", "D", source=f"{shard}#d.jpg", status="ok"),  # not in the shard
                Item("e", "E", source="images/e.jpg", status="pending"),  # not downloaded
                Item("f", "F", status="missing", reason="HTTP 404"),
                Item("g", "G", source=str(covers[2]), status="ok", flags="blank"),  # stale flag
            ]
        )
    result = audit(coll, progress=False, workers=2)
    flags = _flags_of(result.report)
    assert flags == {"b": {"mode:CMYK"}, "c": {"corrupt"}, "d": {"unreadable"}, "f": {"unreadable"}}
    assert "no member" in result.report["flagged_items"][2]["reasons"]["unreadable"]
    assert result.report["not_downloaded"] == 1
    assert result.report["audited"] == 5
    assert result.report["near_duplicates"]["checked"] is False
    assert "no embeddings" in result.report["near_duplicates"]["note"]
    assert _catalog_flags(coll) == {
        "a": "",
        "b": "mode:CMYK",
        "c": "corrupt",
        "d": "unreadable",
        "e": "",
        "f": "unreadable",
        "g": "",
    }


def test_pixel_stats_in_blocks_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "_STAT_BLOCK", 999)  # many blocks, a ragged last one
    rgb = np.random.default_rng(1).integers(0, 256, (97, 53, 3), dtype=np.uint8)
    rgb[..., 2] = 7
    spread, std, colour = pixel_stats(rgb)
    flat = rgb.reshape(-1, 3).astype(np.float64)
    assert spread == int(np.ptp(rgb.reshape(-1, 3), axis=0).max())
    assert std == pytest.approx(flat.std(axis=0).max(), rel=1e-9)
    assert colour == tuple(int(c) for c in np.rint(flat.mean(axis=0)))
    assert pixel_stats(np.full((5, 4, 3), 200, np.uint8))[:2] == (0, 0.0)


def test_duplicate_groups_keep_the_first_id() -> None:
    probes = [Probe(i, pixels=h) for i, h in [("b", b"x"), ("10", b"x"), ("9", b"x"), ("c", b"y")]]
    probes += [Probe("bad", problem="corrupt")]
    assert exact_duplicates(probes) == [["9", "10", "b"]]
    assert sorted(["b", "10", "9", "a", "0070"], key=id_order) == ["9", "10", "0070", "a", "b"]
