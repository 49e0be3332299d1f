"""Calibrate a model's near-duplicate threshold on real covers.

    .venv/bin/python bench/calibrate_duplicates.py [--limit N] [--model NAME] [--fit F]
        [--strategy S] [--precision P] [--cache FILE.npz] [--json]

What counts as a near-duplicate: the same picture, with the same colours, after
edits that a re-upload or a store pipeline makes. The script writes these
edited copies of every cover of ``../shared/data/covers`` into a temporary
folder (counted as duplicates of their original):

    jpeg60    JPEG recompression at quality 60
    half      resized to 50% and back to the original size
    crop5     5% trimmed from every border
    bright    brightness +10%
    dark      brightness -10%
    reupload  4% border trimmed, resized to 60%, JPEG quality 75 (edits combined)

and two derived pictures that are measured but not counted (a different
picture for a store page, and not reliably close for an ImageNet model):

    gray      converted to greyscale
    hflip     mirrored left-right

The covers data also hold real near-duplicates: a few games have two covers
with the same art and a different logo (``SAME_ART``, each checked by eye).
They count as duplicates too; every other pair of covers is distinct art.

It prints the cosine distributions of the duplicate pairs (original vs copy,
and the same-art pairs), of same-game pairs with different art (covers.tsv
groups) and of each cover's nearest cover of another game; then sweeps
thresholds and reports the precision and recall of the decision "cosine >= t
means duplicate" over every pair of the covers and every pair involving a
counted copy (one collection per edit: the covers plus one copy of each).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bannermatch.embed.batches import embed_paths
from bannermatch.embed.models import DEFAULT_MODEL, EmbeddingModel, create_model, get_spec
from bannermatch.evaluation.groups import read_groups

ROOT = Path(__file__).resolve().parents[1]
COVERS = ROOT.parent / "shared" / "data" / "covers"
DISTRACTORS = ROOT.parent / "shared" / "data" / "igdb_covers" / "images"
THRESHOLDS = np.round(np.arange(0.50, 0.995, 0.005), 3)

Edit = Callable[[Image.Image], Image.Image]


def _trim(im: Image.Image, fraction: float) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * fraction), round(h * fraction)
    return im.crop((dx, dy, w - dx, h - dy))


def _scale(im: Image.Image, factor: float) -> Image.Image:
    w, h = im.size
    return im.resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC)


def _half_and_back(im: Image.Image) -> Image.Image:
    return _scale(im, 0.5).resize(im.size, Image.Resampling.BICUBIC)


#: name -> (edit, JPEG quality or None for PNG)
DUPLICATE_EDITS: dict[str, tuple[Edit, int | None]] = {
    "jpeg60": (lambda im: im, 60),
    "half": (_half_and_back, None),
    "crop5": (lambda im: _trim(im, 0.05), None),
    "bright": (lambda im: ImageEnhance.Brightness(im).enhance(1.1), None),
    "dark": (lambda im: ImageEnhance.Brightness(im).enhance(0.9), None),
    "reupload": (lambda im: _scale(_trim(im, 0.04), 0.6), 75),
}
OTHER_EDITS: dict[str, tuple[Edit, int | None]] = {
    "gray": (lambda im: ImageOps.grayscale(im).convert("RGB"), None),
    "hflip": (ImageOps.mirror, None),
}

#: Covers with the same art (a different logo, title line or framing), checked by eye.
SAME_ART: tuple[tuple[str, ...], ...] = (
    ("call-of-duty-modern-warfare-2-0.jpg", "call-of-duty-modern-warfare-2-1.jpg"),
    ("cities-skylines-0.jpg", "cities-skylines-1.jpg"),
    ("civ-5-0.jpg", "civilization-v-0.jpg", "civilization-v-1.jpg"),
    ("civilization-beyond-earth-0.jpg", "civilization-beyond-earth-1.jpg"),
    ("civilization-iii-0.jpg", "civilization-iii-1.jpg"),
    ("civilization-iv-0.jpg", "civilization-iv-1.jpg"),
    ("csgo-0.jpg", "csgo-1.jpg"),
    ("dead-by-daylight-0.jpg", "dead-by-daylight-1.jpg"),
    ("dead-by-daylight-2.jpg", "dead-by-daylight-3.jpg"),
    ("pvz-battle-for-neighborville-0.jpg", "pvz-battle-for-neighborville-1.jpg"),
    ("rayman-3-0.jpg", "rayman-3-1.jpg"),
    ("world-of-warcraft-1.jpg", "world-of-warcraft-classic-0.jpg"),
    # IGDB covers (distractors): The Witcher 3 and its GOTY edition, Final Fantasy VII
    # Remake and Intergrade, Cuphead and its DLC (the same art with a strip added)
    ("igdb/1942.jpg", "igdb/22439.jpg"),
    ("igdb/11169.jpg", "igdb/144024.jpg"),
    ("igdb/9061.jpg", "igdb/103287.jpg"),
)
#: Precision weighs this much more than recall when the threshold is chosen (F-beta, beta=0.5).
BETA = 0.5


def write_copies(originals: list[Path], out: Path) -> dict[str, list[Path]]:
    """Every edit of every original, as files under ``out/<edit>/``."""
    edits = DUPLICATE_EDITS | OTHER_EDITS
    copies: dict[str, list[Path]] = {name: [] for name in edits}
    for src in originals:
        with Image.open(src) as im:
            im = im.convert("RGB")
            for name, (edit, quality) in edits.items():
                folder = out / name
                folder.mkdir(parents=True, exist_ok=True)
                suffix = ".png" if quality is None else ".jpg"
                path = folder / f"{src.stem}{suffix}"
                edit(im).save(path, **({} if quality is None else {"quality": quality}))
                copies[name].append(path)
    return copies


def embed_all(paths: list[Path], model: EmbeddingModel) -> np.ndarray:
    emb, _, errors = embed_paths([str(p) for p in paths], model)
    if errors:
        raise SystemExit(f"could not decode: {[str(paths[i]) for i in errors]}")
    return emb


def embed_covers(
    originals: list[Path], n_edited: int, model: EmbeddingModel, cache: Path | None
) -> dict[str, np.ndarray]:
    """Embeddings of the originals (``"original"``) and of the edited copies of the first
    ``n_edited`` originals, by edit."""
    names = np.array([str(p) for p in originals])
    if cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["model_key"]) == model.key and np.array_equal(z["files"], names):
                return {k: z[k] for k in z.files if k not in ("model_key", "files")}
    with tempfile.TemporaryDirectory(prefix="bm-dups-") as tmp:
        copies = write_copies(originals[:n_edited], Path(tmp))
        out = {"original": embed_all(originals, model)}
        out |= {name: embed_all(paths, model) for name, paths in copies.items()}
    if cache:
        np.savez(cache, model_key=model.key, files=names, **out)
    return out


def components(files: list[str]) -> np.ndarray:
    """A picture number per cover: covers of one ``SAME_ART`` set share it."""
    index = {f: i for i, f in enumerate(files)}
    comp = np.arange(len(files))
    for same in SAME_ART:
        rows = [index[f] for f in same if f in index]
        comp[rows] = min(rows, default=0)
    return comp


def split_pairs(
    sims: np.ndarray, comp_a: np.ndarray, comp_b: np.ndarray, *, upper: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of (same picture, different picture) pairs; ``upper``: each pair once."""
    same = comp_a[:, None] == comp_b[None, :]
    mask = np.triu(np.ones_like(same), k=1) if upper else np.ones_like(same)
    return sims[mask & same], sims[mask & ~same]


def collection_pairs(
    base: np.ndarray, copy: np.ndarray, comp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, distinct) scores of the pairs that involve at least one copy; row i of
    ``copy`` is a copy of row i of ``base``."""
    edited = comp[: len(copy)]
    cross_pos, cross_neg = split_pairs(copy @ base.T, edited, comp, upper=False)
    copy_pos, copy_neg = split_pairs(copy @ copy.T, edited, edited, upper=True)
    return np.concatenate([cross_pos, copy_pos]), np.concatenate([cross_neg, copy_neg])


def same_game_other_art(emb: np.ndarray, groups: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Cosine of every pair of covers of one game with different art."""
    same_game = groups[:, None] == groups[None, :]
    mask = np.triu(same_game, k=1) & (comp[:, None] != comp[None, :])
    return (emb @ emb.T)[mask]


def nearest_other_game(emb: np.ndarray, groups: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Each cover's highest cosine with a cover of another game and other art."""
    sims = emb @ emb.T
    sims[(groups[:, None] == groups[None, :]) | (comp[:, None] == comp[None, :])] = -np.inf
    return sims.max(axis=1)


def decisions(
    positives: np.ndarray, negatives: np.ndarray, thresholds: np.ndarray
) -> list[dict[str, float]]:
    """Precision, recall and F1 of "cosine >= t means duplicate" at each threshold."""
    pos, neg = np.sort(positives), np.sort(negatives)
    rows = []
    for t in thresholds:
        tp = len(pos) - int(np.searchsorted(pos, t, side="left"))
        fp = len(neg) - int(np.searchsorted(neg, t, side="left"))
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / len(pos) if len(pos) else 1.0
        rows.append(
            {
                "threshold": float(t),
                "precision": precision,
                "recall": recall,
                "f1": f_beta(precision, recall, 1.0),
                "f0.5": f_beta(precision, recall, BETA),
                "tp": tp,
                "fp": fp,
                "fn": len(pos) - tp,
            }
        )
    return rows


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    denominator = b2 * precision + recall
    return (1 + b2) * precision * recall / denominator if denominator else 0.0


def top_distinct_pairs(
    emb: np.ndarray, files: list[str], groups: np.ndarray, comp: np.ndarray, n: int = 6
) -> list[dict[str, Any]]:
    """The most similar pairs of covers with different art: where false duplicates come from."""
    sims = emb @ emb.T
    i, j = np.triu_indices(len(emb), k=1)
    keep = comp[i] != comp[j]
    i, j = i[keep], j[keep]
    order = np.argsort(-sims[i, j])[:n]
    return [
        {
            "score": float(sims[i[o], j[o]]),
            "a": files[i[o]],
            "b": files[j[o]],
            "same_game": bool(groups[i[o]] == groups[j[o]]),
        }
        for o in order
    ]


def describe(scores: np.ndarray) -> dict[str, float]:
    q = np.percentile(scores, [0, 1, 5, 50, 95, 99, 100]) if len(scores) else [np.nan] * 7
    keys = ("min", "p1", "p5", "median", "p95", "p99", "max")
    return {"n": len(scores)} | {k: float(v) for k, v in zip(keys, q, strict=True)}


def best(sweep: list[dict[str, float]], key: str) -> dict[str, float]:
    """The row of highest ``key``; among equals, the middle one (widest margin both ways)."""
    top = max(r[key] for r in sweep)
    ties = [r for r in sweep if r[key] >= top - 1e-12]
    return ties[len(ties) // 2]


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    groups_of = read_groups(args.covers / "covers.tsv")
    covers = sorted(groups_of)[: args.limit] if args.limit else sorted(groups_of)
    paths = [args.covers / "images" / f for f in covers]
    files, groups = list(covers), [groups_of[f] for f in covers]
    if args.distractors and args.distractors.is_dir():
        extra = sorted(args.distractors.glob("*.jpg"))
        paths += extra
        files += [f"igdb/{p.name}" for p in extra]
        groups += [f"igdb:{p.stem}" for p in extra]
    comp = components(files)
    group_of = np.array(groups)
    options = {"fit": args.fit, "strategy": args.strategy, "precision": args.precision}
    model = create_model(args.model, **{k: v for k, v in options.items() if v})
    t0 = time.perf_counter()
    emb = embed_covers(paths, len(covers), model, args.cache)
    seconds = time.perf_counter() - t0
    base = emb.pop("original")
    base_pos, base_neg = split_pairs(base @ base.T, comp, comp, upper=True)
    per_edit = {name: collection_pairs(base, emb[name], comp) for name in DUPLICATE_EDITS}
    positives = np.concatenate([base_pos] + [p for p, _ in per_edit.values()])
    negatives = np.concatenate([base_neg] + [n for _, n in per_edit.values()])
    sweep = decisions(positives, negatives, THRESHOLDS)
    chosen = best(sweep, "f0.5")
    t = np.array([chosen["threshold"]])
    preset = get_spec(model.spec.name).dup_threshold
    duplicates = {name: np.sum(base[: len(e)] * e, axis=1) for name, e in emb.items()}
    duplicates["same art in the data"] = base_pos
    distinct = {
        "same game, other art": same_game_other_art(base, group_of, comp),
        "nearest other game": nearest_other_game(base, group_of, comp),
    }
    return {
        "model_key": model.key,
        "n_covers": len(covers),
        "n_distractors": len(base) - len(covers),
        "n_same_art_pairs": len(base_pos),
        "n_duplicate_pairs": len(positives),
        "n_distinct_pairs": len(negatives),
        "n_images_embedded": len(base) + len(covers) * len(emb),
        "seconds": round(seconds, 1),
        "duplicates": {name: describe(s) for name, s in duplicates.items()},
        "distinct": {name: describe(s) for name, s in distinct.items()},
        "chosen": chosen,
        "best_f1": best(sweep, "f1"),
        "preset_threshold": preset,
        "at_preset": decisions(positives, negatives, np.array([preset]))[0],
        "per_edit_at_chosen": {
            name: decisions(np.concatenate([base_pos, p]), np.concatenate([base_neg, n]), t)[0]
            for name, (p, n) in per_edit.items()
        },
        "rates": {
            name: {"chosen": float(np.mean(s >= t[0])), "preset": float(np.mean(s >= preset))}
            for name, s in (duplicates | distinct).items()
            if len(s)
        },
        "top_distinct_pairs": top_distinct_pairs(base, files, group_of, comp),
        "sweep": sweep,
    }


STATS = ("min", "p1", "p5", "median", "p95", "p99", "max")


def print_distributions(r: dict[str, Any]) -> None:
    print(f"{'cosine of pairs':<30}{'n':>6}" + "".join(f"{k:>8}" for k in STATS))
    rows = []
    for name, d in r["duplicates"].items():
        kind = "not counted" if name in OTHER_EDITS else "duplicate"
        rows.append((f"{kind}: {name}", d))
    rows += [(f"distinct: {name}", d) for name, d in r["distinct"].items()]
    for label, d in rows:
        print(f"{label:<30}{d['n']:>6}" + "".join(f"{d[k]:>8.3f}" for k in STATS))


def print_decision(title: str, row: dict[str, float]) -> None:
    print(
        f"{title}: precision {row['precision']:.4f}, recall {row['recall']:.4f}, "
        f"F1 {row['f1']:.4f} (TP {row['tp']}, FP {row['fp']}, FN {row['fn']})"
    )


def print_sweep(r: dict[str, Any]) -> None:
    print(f"{'t':>6}{'precision':>11}{'recall':>9}{'F1':>8}{'F0.5':>8}{'FP':>7}{'FN':>7}")
    marks = {id(r["chosen"]): "  <- best F0.5", id(r["best_f1"]): "  <- best F1"}
    for row in r["sweep"]:
        if round(row["threshold"] * 1000) % 20 == 0 or id(row) in marks:
            print(
                f"{row['threshold']:>6.3f}{row['precision']:>11.4f}{row['recall']:>9.4f}"
                f"{row['f1']:>8.4f}{row['f0.5']:>8.4f}{row['fp']:>7}{row['fn']:>7}"
                + marks.get(id(row), "")
            )


def print_report(r: dict[str, Any]) -> None:
    print(
        f"{r['model_key']}: {r['n_covers']} covers and {r['n_distractors']} distractors "
        f"({r['n_same_art_pairs']} same-art pairs), "
        f"{r['n_images_embedded']} images embedded in {r['seconds']}s\n"
    )
    print_distributions(r)
    print(
        f"\nthe decision 'cosine >= t means duplicate' over all labelled pairs "
        f"({r['n_duplicate_pairs']} duplicate, {r['n_distinct_pairs']} distinct):"
    )
    print_sweep(r)
    t = r["chosen"]["threshold"]
    preset = r["preset_threshold"]
    print(
        f"\nfraction of pairs scoring >= t:{'best F0.5 ' + str(t):>16}{'preset ' + str(preset):>14}"
    )
    for name, v in r["rates"].items():
        print(f"  {name:<30}{v['chosen']:>14.4f}{v['preset']:>14.4f}")
    print(f"\nper edit at {t} (the covers plus one copy of each):")
    for name, row in r["per_edit_at_chosen"].items():
        print_decision(f"  {name:<9}", row)
    print("\nmost similar pairs of covers with different art:")
    for p in r["top_distinct_pairs"]:
        kind = "same game" if p["same_game"] else "other game"
        print(f"  {p['score']:.3f}  {p['a']}  {p['b']}  ({kind})")
    print()
    print_decision(f"best F0.5 at t={t}", r["chosen"])
    print_decision(f"best F1 at t={r['best_f1']['threshold']}", r["best_f1"])
    print_decision(f"preset threshold {r['preset_threshold']}", r["at_preset"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--covers", type=Path, default=COVERS, help="covers.tsv and images/")
    p.add_argument("--limit", type=int, default=0, help="use the first N covers (0: all)")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--fit", default=None, choices=["crop", "squash", "pad"])
    p.add_argument("--strategy", default=None)
    p.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "int8"],
        help="the CPU engine's precision (auto: int8 where it is the default, as `index`)",
    )  # fmt: skip
    p.add_argument(
        "--distractors",
        type=Path,
        default=DISTRACTORS,
        help="covers of other games added as originals (no copies); '' for none",
    )
    p.add_argument("--cache", type=Path, default=None, help="reuse embeddings in this .npz")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.covers / "covers.tsv").is_file():
        print(f"needs the covers data at {args.covers}", file=sys.stderr)
        return 1
    result = calibrate(args)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
