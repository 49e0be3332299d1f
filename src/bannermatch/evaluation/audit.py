"""``bannermatch audit``: find the images a collection should not be matched on.

Every catalogue item with a source is read and decoded once, in a thread pool,
and leaves behind only a few numbers (size, mode, pixel spread, a hash of its
decoded pixels), so memory stays flat however large the collection. Then:

- ``unreadable`` / ``corrupt``: the file is missing, or it does not decode;
- ``mode:<MODE>``: the file's own colour mode (before conversion) is not allowed;
- ``size`` / ``aspect``: the size is not the expected one (``--expect-size`` or
  the most common), and the width/height ratio is off by more than a tolerance;
- ``blank`` / ``near-blank``: one colour, or almost (low standard deviation);
- ``duplicate``: the same decoded pixels as an item earlier in id order;
- ``near-duplicate``: a later member of a near-duplicate group of ``bannermatch match``.

The flags go to the catalogue's ``flags`` column (``bannermatch index
--skip-flagged`` leaves those items out), and the findings to
``COLLECTION/audit/audit.json`` and ``audit.md``. See ``docs/audit.md``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageMode

from bannermatch.acquire.inputs import UNDECODABLE_NAME
from bannermatch.errors import BannermatchError, CollectionError, ImageError
from bannermatch.images import (
    TAR_SEPARATOR,
    DecodedImage,
    ReadError,
    decode_bytes,
    parse_size,
    read_source,
)
from bannermatch.progress import progress_bar
from bannermatch.query.match import load_duplicates
from bannermatch.store import atomic
from bannermatch.store.catalog import Catalog
from bannermatch.store.collection import Collection
from bannermatch.tables import md_cell

FORMAT_VERSION = 1
AUDIT_DIR = "audit"
AUDIT_JSON = "audit.json"
AUDIT_MD = "audit.md"

DEFAULT_ALLOWED_MODES = ("RGB",)
#: largest relative difference of width/height from the expected ratio that passes
ASPECT_TOLERANCE = 0.02
#: an image whose every RGB channel spans at most this many levels is blank
BLANK_TOLERANCE = 4
#: an image whose every RGB channel has a standard deviation below this is near blank
NEAR_BLANK_STD = 4.0

#: flags in the order they are listed; ``mode`` stands for every ``mode:<MODE>``
FLAG_ORDER = (
    "unreadable",
    "corrupt",
    "mode",
    "size",
    "aspect",
    "blank",
    "near-blank",
    "duplicate",
    "near-duplicate",
)
FLAG_MEANINGS = {
    "unreadable": "the file is missing or cannot be read",
    "corrupt": "the file does not decode (truncated, damaged, or not an image)",
    "mode": "the file's own colour mode is not an allowed one",
    "size": "the size is not the expected one",
    "aspect": "the width/height ratio is off the expected one by more than the tolerance",
    "blank": "one colour",
    "near-blank": "almost one colour (low standard deviation)",
    "duplicate": "the same pixels as an earlier item (by id order)",
    "near-duplicate": "a near-duplicate of an earlier item (by id order), from `bannermatch match`",
}
MODE_NAMES = {
    "RGB": "RGB",
    "L": "greyscale ('L')",
    "CMYK": "CMYK",
    "RGBA": "RGB with alpha ('RGBA')",
    "P": "palette ('P')",
    "PA": "palette with alpha ('PA')",
    "LA": "greyscale with alpha ('LA')",
    "I;16": "16-bit greyscale ('I;16')",
    "I": "32-bit integer ('I')",
    "F": "32-bit float ('F')",
    "1": "1-bit black and white ('1')",
    "YCbCr": "YCbCr",
}
#: how many ids a finding lists, and how many rows a table shows, in ``audit.md``
MD_LIST_LIMIT = 100
MD_TABLE_LIMIT = 500
_STAT_BLOCK = 1 << 20  # pixels per block when measuring an image
_LEVELS = np.arange(256, dtype=np.float64)


# settings --------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSettings:
    expect_size: tuple[int, int] | None = None
    allowed_modes: tuple[str, ...] = DEFAULT_ALLOWED_MODES
    aspect_tolerance: float = ASPECT_TOLERANCE
    blank_tolerance: int = BLANK_TOLERANCE
    near_blank_std: float = NEAR_BLANK_STD


def parse_modes(modes: Iterable[str] | None) -> tuple[str, ...]:
    """Allowed PIL modes from ``["RGB,L", "CMYK"]``; unknown names are an error."""
    if modes is None:
        return DEFAULT_ALLOWED_MODES
    out: list[str] = []
    for entry in modes:
        for mode in filter(None, (m.strip() for m in entry.split(","))):
            try:
                ImageMode.getmode(mode)
            except KeyError:
                raise BannermatchError(
                    f"unknown image mode {mode!r} (PIL modes: RGB, L, CMYK, RGBA, P, LA, "
                    "I;16, I, F, 1, ...)"
                ) from None
            if mode not in out:
                out.append(mode)
    if not out:
        raise BannermatchError("--allow-mode needs at least one mode, e.g. RGB")
    return tuple(out)


def _check_settings(s: AuditSettings) -> None:
    if s.aspect_tolerance < 0:
        raise BannermatchError("the aspect tolerance must be 0 or more")
    if not 0 <= s.blank_tolerance <= 255:
        raise BannermatchError("the blank tolerance must be between 0 and 255")
    if s.near_blank_std < 0:
        raise BannermatchError("the near-blank standard deviation must be 0 or more")


# reading and measuring one item ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    source: str  # readable location: a path, or "shard.tar#member"
    offset: int = -1
    size: int = -1


@dataclass(slots=True)
class Probe:
    """What auditing one item leaves behind: no pixels, only a few numbers."""

    id: str
    problem: str | None = None  # "unreadable" or "corrupt"
    reason: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    pixels: bytes = b""  # hash of the decoded RGB pixels and their size
    spread: int = 0  # the largest (max - min) over the R, G and B channels
    std: float = 0.0  # the largest standard deviation over the R, G and B channels
    colour: tuple[int, int, int] = (0, 0, 0)  # the mean colour

    @property
    def size_text(self) -> str:
        return f"{self.width}x{self.height}"


def pixel_stats(rgb: np.ndarray) -> tuple[int, float, tuple[int, int, int]]:
    """(largest channel spread, largest channel standard deviation, mean colour) of an
    (H, W, 3) uint8 array, exactly, from per-channel histograms built block by block
    (fast, and a large image costs no float copy)."""
    flat = rgb.reshape(-1, 3)
    hist = np.zeros((3, 256), np.int64)
    for start in range(0, len(flat), _STAT_BLOCK):
        block = flat[start : start + _STAT_BLOCK]
        for c in range(3):
            hist[c] += np.bincount(block[:, c], minlength=256)
    n = max(1, len(flat))
    mean = hist @ _LEVELS / n
    std = np.sqrt(np.maximum(hist @ np.square(_LEVELS) / n - np.square(mean), 0.0))
    present = hist > 0
    lo, hi = present.argmax(axis=1), 255 - present[:, ::-1].argmax(axis=1)
    r, g, b = (int(c) for c in np.rint(mean))
    return int((hi - lo).max()), float(std.max()), (r, g, b)


def measure(item_id: str, decoded: DecodedImage) -> Probe:
    rgb = np.asarray(decoded.image, dtype=np.uint8)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{rgb.shape[1]}x{rgb.shape[0]}:".encode())
    digest.update(np.ascontiguousarray(rgb).data)
    spread, std, colour = pixel_stats(rgb)
    return Probe(
        item_id,
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        pixels=digest.digest(),
        spread=spread,
        std=std,
        colour=colour,
    )


def probe(job: Job) -> Probe:
    """Read, decode and measure one item; never raises (a bad item is a finding)."""
    try:
        data = read_source(job.source, job.offset, job.size)
    except ReadError as exc:
        return Probe(job.id, "unreadable", str(exc))
    try:
        return measure(job.id, decode_bytes(data))
    except ImageError as exc:
        return Probe(job.id, "corrupt", str(exc))
    except Exception as exc:  # a bad item never stops the run
        return Probe(job.id, "corrupt", f"corrupt image: {type(exc).__name__}: {exc}")


class _TarOffsets:
    """Where each member's data lies in a tar shard, read once per shard."""

    def __init__(self) -> None:
        self._shards: dict[str, dict[str, tuple[int, int]]] = {}

    def job(self, item_id: str, source: str) -> Job:
        shard, sep, member = source.partition(TAR_SEPARATOR)
        if not sep or not shard.endswith(".tar") or os.path.exists(source):
            return Job(item_id, source)
        if shard not in self._shards:
            try:
                with tarfile.open(shard, "r:") as tar:
                    self._shards[shard] = {
                        m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()
                    }
            except (OSError, tarfile.TarError):
                self._shards[shard] = {}  # read (and reported) item by item
        offset, size = self._shards[shard].get(member, (-1, -1))
        return Job(item_id, source, offset, size)


def probe_all(jobs: list[Job], workers: int, *, progress: bool = True) -> Iterator[Probe]:
    """Probes in job order, decoded by ``workers`` threads with a bounded queue."""
    bar = progress_bar(len(jobs), "auditing", enabled=progress)
    bad = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        window: deque[Future[Probe]] = deque()

        def take() -> Probe:
            nonlocal bad
            result = window.popleft().result()
            bar.update(1)
            if result.problem:
                bad += 1
                bar.set_postfix(bad=bad)
            return result

        for job in jobs:
            window.append(pool.submit(probe, job))
            if len(window) >= 4 * workers:
                yield take()
        while window:
            yield take()
    bar.close()


# findings ---------------------------------------------------------------------


def id_order(item_id: str) -> tuple[int, int, str]:
    """Numeric ids (Steam appIDs) in numeric order first, then the others by text."""
    if item_id.isascii() and item_id.isdigit():
        return (0, int(item_id), item_id)
    return (1, 0, item_id)


def flag_order(flag: str) -> tuple[int, str]:
    base = flag.split(":", 1)[0]
    return (FLAG_ORDER.index(base) if base in FLAG_ORDER else len(FLAG_ORDER), flag)


def mode_name(mode: str) -> str:
    return MODE_NAMES.get(mode, f"'{mode}'")


@dataclass(slots=True)
class _CatalogRow:
    id: str
    name: str
    source: str | None
    status: str
    reason: str | None
    flags: str


@dataclass
class Findings:
    """Flags and reasons per item, and the statistics the report shows."""

    flags: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {flag: reason}
    modes: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    audited: int = 0
    decoded: int = 0
    not_downloaded: int = 0

    def add(self, item_id: str, flag: str, reason: str) -> None:
        self.flags.setdefault(item_id, {})[flag] = reason

    def counts(self) -> dict[str, int]:
        counter = Counter(f for item in self.flags.values() for f in item)
        return {f: counter[f] for f in sorted(counter, key=flag_order)}


def _check_image(p: Probe, s: AuditSettings, findings: Findings) -> None:
    if p.mode not in s.allowed_modes:
        findings.add(
            p.id, f"mode:{p.mode}", f"{mode_name(p.mode)}, not {'/'.join(s.allowed_modes)}"
        )
    if p.spread <= s.blank_tolerance:
        findings.add(p.id, "blank", f"one colour: RGB {p.colour}")
    elif p.std < s.near_blank_std:
        findings.add(
            p.id,
            "near-blank",
            f"almost one colour: standard deviation {p.std:.2f} < {s.near_blank_std:g} "
            f"around RGB {p.colour}",
        )


def _check_size(p: Probe, expected: tuple[int, int], s: AuditSettings, f: Findings) -> None:
    width, height = expected
    if (p.width, p.height) == expected:
        return
    f.add(p.id, "size", f"{p.size_text}, expected {width}x{height}")
    ratio, wanted = p.width / p.height, width / height
    off = abs(ratio / wanted - 1.0)
    if off > s.aspect_tolerance:
        f.add(
            p.id,
            "aspect",
            f"width/height {ratio:.3f}, expected {wanted:.3f} ({off:.1%} off, "
            f"tolerance {s.aspect_tolerance:.1%})",
        )


def _flag_groups(groups: list[list[str]], flag: str, what: str, f: Findings) -> None:
    for group in groups:
        kept = group[0]
        for member in group[1:]:
            f.add(member, flag, f"{what} {kept}")


def exact_duplicates(probes: Iterable[Probe]) -> list[list[str]]:
    """Groups of ids whose decoded pixels are the same, each in id order."""
    by_hash: dict[bytes, list[str]] = {}
    for p in probes:
        if p.pixels:
            by_hash.setdefault(p.pixels, []).append(p.id)
    groups = [sorted(ids, key=id_order) for ids in by_hash.values() if len(ids) > 1]
    return sorted(groups, key=lambda g: id_order(g[0]))


@dataclass
class NearDuplicates:
    checked: bool
    note: str
    model_key: str | None = None
    threshold: float | None = None
    groups: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "model_key": self.model_key,
            "threshold": self.threshold,
            "groups": self.groups,
            "note": self.note,
        }


def near_duplicates(coll: Collection, model: str | None, known: set[str]) -> NearDuplicates:
    """The near-duplicate groups of ``bannermatch match`` if they are up to date."""
    root = coll.root
    if not coll.model_keys():
        return NearDuplicates(
            False,
            f"no embeddings: run `bannermatch index {root} --out {root}` and "
            f"`bannermatch match {root}` to find near-duplicates",
        )
    try:
        data = coll.load(model)
    except CollectionError as exc:
        if model is not None:
            raise
        return NearDuplicates(False, f"near-duplicates not checked: {exc}")
    info = data.match_info
    if info is None:
        return NearDuplicates(
            False,
            f"`bannermatch match {root}` has not been run since the last index "
            f"[{data.key}]: near-duplicates not checked",
            data.key,
        )
    groups = []
    for group in load_duplicates(data):
        members = sorted((i for i in group if i in known), key=id_order)
        if len(members) > 1:
            groups.append(members)
    groups.sort(key=lambda g: id_order(g[0]))
    threshold = float(info["dup_threshold"])
    note = f"{len(groups)} group(s) at cosine similarity >= {threshold:g} [{data.key}]"
    return NearDuplicates(True, note, data.key, threshold, groups)


# the run ----------------------------------------------------------------------


@dataclass
class AuditResult:
    report: dict[str, Any]  # the content of audit.json
    json_path: Path
    md_path: Path

    def to_dict(self) -> dict[str, Any]:
        """The summary: audit.json without the per-item lists."""
        r = self.report
        near = r["near_duplicates"]
        return {
            **{k: v for k, v in r.items() if k not in {"flagged_items", "duplicate_groups"}},
            "duplicate_groups": len(r["duplicate_groups"]),
            "near_duplicates": {**near, "groups": len(near["groups"])},
            "files": {"json": str(self.json_path), "markdown": str(self.md_path)},
        }

    def summary(self) -> str:
        r = self.report
        lines = [
            f"audited {r['audited']:,} of {r['items']:,} items in {r['seconds']:.1f}s: "
            f"{r['flagged']:,} flagged (expected size {r['settings']['expected_size']})"
        ]
        counts = r["counts"]
        if counts:
            width = max(len(f) for f in counts)
            lines += [f"  {flag.ljust(width)}  {n:>7,}" for flag, n in counts.items()]
        lines.append(f"exact duplicates: {len(r['duplicate_groups'])} group(s)")
        lines.append(f"near-duplicates: {r['near_duplicates']['note']}")
        if local := r.get("local_features"):
            lines.append(
                f"local features: {local['items']:,} items "
                f"({local['features_mean']} features per item, {local['bytes_per_item']:,} B), "
                f"{len(local['without']):,} without"
            )
        lines.append(f"wrote {self.md_path} and {self.json_path.name}")
        return "\n".join(lines)


def _catalog_rows(cat: Catalog) -> list[_CatalogRow]:
    return [
        _CatalogRow(*row)
        for row in cat.columns("id", "name", "source", "status", "reason", "flags")
    ]


def _jobs(coll: Collection, rows: list[_CatalogRow], findings: Findings) -> list[Job]:
    tars = _TarOffsets()
    jobs = []
    for row in rows:
        if row.reason and row.reason.startswith(UNDECODABLE_NAME):  # its path is not stored
            findings.add(row.id, "unreadable", row.reason)
        elif row.source:
            jobs.append(tars.job(row.id, coll.resolve_source(row.source)))
        elif row.status == "pending":
            findings.not_downloaded += 1
        else:
            findings.add(
                row.id, "unreadable", row.reason or f"no source file (status {row.status})"
            )
    return jobs


def _store_flags(cat: Catalog, rows: list[_CatalogRow], findings: Findings) -> None:
    """Write every item's new flags (''; or e.g. 'mode:CMYK,size') where they changed."""
    new = {r.id: _flag_text(findings.flags.get(r.id)) for r in rows}
    cat.set_flags({r.id: new[r.id] for r in rows if new[r.id] != r.flags})


def _flag_text(flags: dict[str, str] | None) -> str:
    return ",".join(sorted(flags, key=flag_order)) if flags else ""


def audit(
    collection: str | os.PathLike[str],
    *,
    expect_size: str | tuple[int, int] | None = None,
    allow_modes: Iterable[str] | None = None,
    aspect_tolerance: float | None = None,
    blank_tolerance: int | None = None,
    near_blank_std: float | None = None,
    model: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> AuditResult:
    """Audit every item of ``collection``; store flags and write ``audit/audit.{json,md}``."""
    started = time.perf_counter()
    settings = AuditSettings(
        expect_size
        if expect_size is None or isinstance(expect_size, tuple)
        else parse_size(expect_size),
        parse_modes(allow_modes),
        ASPECT_TOLERANCE if aspect_tolerance is None else aspect_tolerance,
        BLANK_TOLERANCE if blank_tolerance is None else blank_tolerance,
        NEAR_BLANK_STD if near_blank_std is None else near_blank_std,
    )
    _check_settings(settings)
    coll = Collection(collection)
    workers = workers or max(2, min(16, os.cpu_count() or 2))
    with coll.catalog() as cat:
        rows = _catalog_rows(cat)
        findings = Findings()
        jobs = _jobs(coll, rows, findings)
        status = {r.id: r.status for r in rows}
        probes: list[Probe] = []
        for p in probe_all(jobs, workers, progress=progress):
            if p.problem == "unreadable" and status[p.id] == "pending":
                findings.not_downloaded += 1  # catalogued, not downloaded yet
                continue
            findings.audited += 1
            if p.problem:
                findings.add(p.id, p.problem, p.reason)
                continue
            findings.decoded += 1
            findings.modes[p.mode] += 1
            findings.formats[p.format] += 1
            findings.sizes[p.size_text] += 1
            _check_image(p, settings, findings)
            probes.append(p)
        expected = settings.expect_size or _most_common_size(probes)
        if expected is not None:
            for p in probes:
                _check_size(p, expected, settings, findings)
        dups = exact_duplicates(probes)
        _flag_groups(dups, "duplicate", "same pixels as", findings)
        near = near_duplicates(coll, model, set(status))
        _flag_groups(near.groups, "near-duplicate", "near-duplicate of", findings)
        _store_flags(cat, rows, findings)
    names = {r.id: r.name for r in rows}
    sources = {r.id: r.source for r in rows}
    report = _report(
        coll, settings, expected, len(rows), findings, dups, near, probes, names, sources
    )
    report["seconds"] = round(time.perf_counter() - started, 3)
    from bannermatch.verify.features import local_summary

    report["local_features"] = local_summary(coll.root)
    folder = coll.root / AUDIT_DIR
    json_path, md_path = folder / AUDIT_JSON, folder / AUDIT_MD
    atomic.write_json(json_path, report)
    atomic.write_text(md_path, render_markdown(report))
    return AuditResult(report, json_path, md_path)


def _most_common_size(probes: list[Probe]) -> tuple[int, int] | None:
    sizes = Counter((p.width, p.height) for p in probes)
    return sizes.most_common(1)[0][0] if sizes else None


def _report(
    coll: Collection,
    s: AuditSettings,
    expected: tuple[int, int] | None,
    n_items: int,
    f: Findings,
    dups: list[list[str]],
    near: NearDuplicates,
    probes: list[Probe],
    names: dict[str, str],
    sources: dict[str, str | None],
) -> dict[str, Any]:
    flagged = sorted(f.flags, key=id_order)
    images = {
        p.id: {"width": p.width, "height": p.height, "mode": p.mode, "format": p.format}
        for p in probes
        if p.id in f.flags
    }
    return {
        "format": FORMAT_VERSION,
        "collection": str(coll.root),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": 0.0,
        "settings": {
            "expected_size": f"{expected[0]}x{expected[1]}" if expected else None,
            "expected_size_from": "--expect-size" if s.expect_size else "the most common size",
            "allowed_modes": list(s.allowed_modes),
            "aspect_tolerance": s.aspect_tolerance,
            "blank_tolerance": s.blank_tolerance,
            "near_blank_std": s.near_blank_std,
        },
        "items": n_items,
        "audited": f.audited,
        "decoded": f.decoded,
        "not_downloaded": f.not_downloaded,
        "flagged": len(flagged),
        "counts": f.counts(),
        "modes": dict(f.modes.most_common()),
        "formats": dict(f.formats.most_common()),
        "sizes": dict(f.sizes.most_common()),
        "duplicate_groups": dups,
        "near_duplicates": near.to_dict(),
        "flagged_items": [
            {
                "id": i,
                "name": names.get(i, ""),
                "source": sources.get(i),
                **images.get(i, {}),
                "flags": sorted(f.flags[i], key=flag_order),
                "reasons": {k: f.flags[i][k] for k in sorted(f.flags[i], key=flag_order)},
            }
            for i in flagged
        ],
    }


# audit.md ---------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]], limit: int = MD_TABLE_LIMIT) -> list[str]:
    aligns = [
        "---:" if rows and all(isinstance(r[i], int) for r in rows) else "---"
        for i in range(len(headers))
    ]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    for row in rows[:limit]:
        out.append(
            "| " + " | ".join(md_cell(f"{v:,}" if isinstance(v, int) else v) for v in row) + " |"
        )
    if len(rows) > limit:
        out.append(f"\n... and {len(rows) - limit:,} more rows in `{AUDIT_JSON}`.")
    return out


def _id_list(entries: list[str], limit: int = MD_LIST_LIMIT) -> str:
    shown = ", ".join(entries[:limit])
    if len(entries) > limit:
        shown += f", ... and {len(entries) - limit:,} more (see `{AUDIT_JSON}`)"
    return shown


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _size_lines(items: list[dict[str, Any]], ids: list[str], expected: str) -> list[str]:
    """One line per actual size, the most frequent first."""
    by_size: dict[str, list[str]] = {}
    for it, shown in zip(items, ids, strict=True):
        by_size.setdefault(f"{it['width']}x{it['height']}", []).append(shown)
    return [
        f"- {_plural(len(shown), 'image')} of {size} instead of {expected}: {_id_list(shown)}"
        for size, shown in sorted(by_size.items(), key=lambda kv: -len(kv[1]))
    ]


def _aspect_line(
    items: list[dict[str, Any]], ids: list[str], expected: str, tolerance: float
) -> str:
    w, h = map(int, expected.split("x"))
    ratios = [f"{i} ({it['width'] / it['height']:.3f})" for i, it in zip(ids, items, strict=True)]
    head = f"{_plural(len(items), 'image')} with a width/height ratio off {w / h:.3f}"
    return f"- {head} by more than {tolerance:.1%}: {_id_list(ratios)}"


def _finding_lines(report: dict[str, Any]) -> list[str]:
    """One line per finding, in the style of the original notebooks' filtering logs."""
    by_flag: dict[str, list[dict[str, Any]]] = {}
    for item in report["flagged_items"]:
        for flag in item["flags"]:
            by_flag.setdefault(flag, []).append(item)
    s = report["settings"]
    lines = []
    for flag in sorted(by_flag, key=flag_order):
        items = by_flag[flag]
        n = len(items)
        base, _, mode = flag.partition(":")
        ids = [f"`{md_cell(it['id'])}`" for it in items]
        with_reason = [f"`{md_cell(it['id'])}` ({md_cell(it['reasons'][flag])})" for it in items]
        if base == "mode":
            lines.append(f"- {_plural(n, mode_name(mode) + ' image')}: {_id_list(ids)}")
        elif base == "size":
            lines += _size_lines(items, ids, s["expected_size"])
        elif base == "aspect":
            lines.append(_aspect_line(items, ids, s["expected_size"], s["aspect_tolerance"]))
        elif base in {"blank", "near-blank"}:
            lines.append(f"- {_plural(n, base + ' image')}: {_id_list(with_reason)}")
        elif base in {"duplicate", "near-duplicate"}:
            head = f"{_plural(n, base)} (the first of each group is kept)"
            lines.append(f"- {head}: {_id_list(with_reason)}")
        else:
            lines.append(f"- {_plural(n, base + ' file')}: {_id_list(with_reason)}")
    return lines


def _group_rows(groups: list[list[str]]) -> list[list[Any]]:
    return [[f"`{g[0]}`", ", ".join(f"`{m}`" for m in g[1:]), len(g)] for g in groups]


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    counts = report["counts"]
    out = [
        f"# Audit of `{report['collection']}`",
        "",
        f"Audited {report['audited']:,} of {report['items']:,} catalogue items "
        f"({report['decoded']:,} decoded) on {report['created']}: "
        f"**{report['flagged']:,} flagged**.",
        f"Expected size {s['expected_size']} ({s['expected_size_from']}), aspect tolerance "
        f"{s['aspect_tolerance']:.1%}; allowed modes: {', '.join(s['allowed_modes'])}; "
        f"blank: every channel within {s['blank_tolerance']} levels; near blank: "
        f"standard deviation below {s['near_blank_std']:g}.",
    ]
    if report["not_downloaded"]:
        out.append(f"{report['not_downloaded']:,} catalogue items are not downloaded yet.")
    out += ["", "## Flags", ""]
    flag_rows = [[f"`{f}`", n, FLAG_MEANINGS[f.split(":", 1)[0]]] for f, n in counts.items()]
    out += _table(["flag", "items", "meaning"], flag_rows) if flag_rows else ["No item flagged."]
    out += ["", "## Findings", ""]
    out += _finding_lines(report) or ["Nothing to report."]
    out += ["", "## Colour modes", ""]
    out += _table(
        ["mode", "images", "what"],
        [[f"`{m}`", n, mode_name(m)] for m, n in report["modes"].items()],
    )
    out += ["", "## Sizes", ""]
    out += _table(["size", "images"], [[k, n] for k, n in report["sizes"].items()], limit=20)
    out += ["", "## Exact duplicates (same pixels)", ""]
    dups = report["duplicate_groups"]
    out += _table(["kept", "duplicates", "group size"], _group_rows(dups)) if dups else ["None."]
    near = report["near_duplicates"]
    out += ["", "## Near-duplicates", "", near["note"] + "."]
    if near["groups"]:
        out += ["", *_table(["kept", "near-duplicates", "group size"], _group_rows(near["groups"]))]
    out += ["", "## Flagged items", ""]
    rows = [
        [f"`{it['id']}`", it["name"], ", ".join(it["flags"]), "; ".join(it["reasons"].values())]
        for it in report["flagged_items"]
    ]
    out += _table(["id", "name", "flags", "reasons"], rows) if rows else ["None."]
    return "\n".join(out) + "\n"
