"""SIGKILL at random points of ``index``, ``steam download`` and ``match``, then resume: the
result equals an uninterrupted run's, nothing temporary is left, SQLite stays intact, and
no state between the kills gives a wrong answer. Then collections whose files disagree."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bannermatch.cli import main
from bannermatch.errors import CollectionError
from bannermatch.query.match import load_duplicates, match
from bannermatch.store.catalog import Catalog, Item
from bannermatch.store.collection import Collection, write_model_data
from support.steam import Cdn, FakeServer, make_jpeg, steam_env

SEED = 20240607
#: kills at random points per command (issue 7 asks for 10 or more)
KILLS = 12
KEY = "effnet-lite0__pad224-bicubic__cls-int8"  # the default on the CPU: int8


@dataclass
class Killed:
    """What a run that was to be killed did."""

    killed: bool  # it was still running when the kill came
    after: float  # seconds from the marker to the kill (or to its own end)


class Run:
    """One ``bannermatch`` process: its pid, its stderr so far, and how it ended."""

    def __init__(self) -> None:
        self.pid = 0
        self.stderr = bytearray()
        self.ended = threading.Event()
        self.status = 0  # os.waitpid's status once ended

    def poll(self) -> bool:
        """Whether it still runs."""
        return not self.ended.is_set()

    @property
    def killed(self) -> bool:
        return os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGKILL

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None


def spawn(args: list[str], env: dict[str, str] | None = None) -> Run:
    """``python -m bannermatch.cli ARGS`` in a new process."""
    run = Run()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bannermatch.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    run.pid = proc.pid

    def follow() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(65536):
            run.stderr.extend(chunk)
        proc.stderr.close()
        run.status = os.waitpid(proc.pid, 0)[1]
        proc.returncode = 0  # reaped here: keep Popen from waiting again
        run.ended.set()

    threading.Thread(target=follow, daemon=True).start()
    return run


#: a process that makes bannermatch's slow imports (the modules named in its arguments:
#: torch and timm take seconds) once, then forks a child per line of arguments on its
#: stdin; each child runs the CLI's main() with its stdout on /dev/null (as :func:`spawn`'s)
#: and exits with its code. Output: "<pid>" when a child starts, "<pid> <status>" when it ends.
FORKER = r"""
import importlib, json, os, sys
import bannermatch.cli
for name in sys.argv[1:]:
    importlib.import_module(name)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            code = bannermatch.cli.main(json.loads(line))
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    print(pid, os.waitpid(pid, 0)[1], flush=True)
"""


#: what ``index`` imports on the CPU once the model is exported (its ONNX engine and the
#: int8 quantiser; not torch or timm, which only an export needs)
INDEX_IMPORTS = (
    "bannermatch.embed.index",
    "bannermatch.embed.models.factory",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
)


class Forker:
    """Runs ``bannermatch`` commands as forks of one process that imported it (and the
    modules ``preload``) already (:data:`FORKER`): the same code, the same SIGKILL, without
    seconds of imports per run. A run's ``env`` is the forker's, given here."""

    def __init__(self, *preload: str, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKER, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=False,
        )
        self.run: Run | None = None
        self.started = threading.Event()
        threading.Thread(target=self._stdout, daemon=True).start()
        threading.Thread(target=self._stderr, daemon=True).start()

    def _stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            run = self.run
            assert run is not None
            if len(words) == 1:
                run.pid = int(words[0])
                self.started.set()
            else:
                run.status = int(words[1])
                run.ended.set()

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):
            if self.run is not None:
                self.run.stderr.extend(chunk)

    def __call__(self, args: list[str], env: dict[str, str] | None = None) -> Run:
        assert self.run is None or self.run.ended.is_set(), "one run at a time"
        assert self.proc.stdin is not None
        assert env is None, "a forked run has the forker's environment"
        self.run = Run()
        self.started.clear()
        self.proc.stdin.write((json.dumps(args) + "\n").encode())
        self.proc.stdin.flush()
        assert self.started.wait(120), "the forker did not start a run"
        return self.run

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)

    def __enter__(self) -> Forker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_and_kill(
    args: list[str],
    *,
    marker: bytes,
    delay: float | None = None,
    when: Callable[[], bool] | None = None,
    env: dict[str, str] | None = None,
    start: Callable[..., Run] = spawn,
    timeout: float = 180.0,
) -> Killed:
    """Run ``bannermatch ARGS``; once ``marker`` shows on its stderr (its progress bar),
    and then ``when()`` is true (if given), SIGKILL it after ``delay`` seconds (if given);
    ``delay=None`` and no ``when``: let it finish."""
    run = start(args, env=env)
    deadline = time.monotonic() + timeout
    while marker not in run.stderr and run.poll():
        assert time.monotonic() < deadline, "no progress bar in time"
        time.sleep(0.002)
    started = time.monotonic()
    if when is not None:
        while run.poll() and not when():
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.0005)
    if delay is not None:
        end = time.monotonic() + delay
        while run.poll() and time.monotonic() < end:
            time.sleep(min(0.002, max(0.0, end - time.monotonic())))
    if delay is not None or when is not None:
        with contextlib.suppress(ProcessLookupError):
            if run.poll():
                os.kill(run.pid, signal.SIGKILL)
    assert run.ended.wait(timeout), f"bannermatch {' '.join(args)} did not end"
    after = time.monotonic() - started
    if not run.killed and run.exit_code != 0:
        output = run.stderr.decode(errors="replace")
        raise AssertionError(f"bannermatch {' '.join(args)} failed ({run.status}):\n{output}")
    return Killed(run.killed, after)


def leftovers(root: Path) -> list[Path]:
    """Temporary, staged, journal or chunk files that a finished run must not leave."""
    return [
        p
        for p in root.rglob("*")
        if p.name.endswith((".tmp", ".staged", ".journal"))
        or (p.parent.name == "chunks" and p.is_file())
    ]


def integrity(root: Path) -> str:
    db = sqlite3.connect(root / "catalog.sqlite")
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def rows(root: Path, *leave_out: str) -> dict[str, dict[str, Any]]:
    with Catalog(root / "catalog.sqlite") as cat:
        return {
            it.id: {k: v for k, v in it.__dict__.items() if k not in {"updated", *leave_out}}
            for it in cat.items()
        }


def staged(folder: Path) -> Callable[[], bool]:
    """True once a commit of ``folder`` has staged a file (the kill lands mid-commit)."""
    return lambda: any(folder.glob("*.staged"))


def assert_equivalent_neighbours(
    emb: np.ndarray, nb1: np.ndarray, sc1: np.ndarray, nb2: np.ndarray, sc2: np.ndarray
) -> None:
    """Two top-k lists from embeddings equal up to ONNX's batch-size rounding (~1e-4):
    the same scores, and where the order differs, equally good neighbours (near ties)."""
    np.testing.assert_allclose(sc1.astype(np.float32), sc2.astype(np.float32), atol=2e-3)
    e = emb.astype(np.float32)
    for r in np.nonzero((nb1 != nb2).any(axis=1))[0]:
        a = np.sort(e[nb1[r].astype(np.int64)] @ e[r])
        b = np.sort(e[nb2[r].astype(np.int64)] @ e[r])
        np.testing.assert_allclose(a, b, atol=2e-3)


# index ------------------------------------------------------------------------------


#: chunk files an uninterrupted ``index`` of the test's 64 covers writes (batches of 4)
CHUNKS = 16


def _chunks_on_disk(folder: Path, n: int) -> Callable[[], bool]:
    """True once ``folder`` holds ``n`` chunk files or more."""
    return lambda: len(list(folder.glob("*.npz"))) >= n


def _consistent_or_clear(root: Path) -> None:
    """Between kills: the collection either loads, its files in agreement, or has none yet."""
    assert integrity(root) == "ok"
    folder = root / "models" / KEY
    if (folder / "manifest.json").exists():
        data = Collection(root).load()  # raises if its files disagree
        assert len(data.ids) == len(data.embeddings) == data.manifest["count"]


@pytest.mark.slow
def test_index_killed_at_random_points_resumes_to_the_same_collection(
    tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, cli_here: Callable[..., Any]
) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for src in sorted((covers_dir / "images").glob("*.jpg"))[:64]:
        shutil.copy2(src, imgs / src.name)
    shutil.copy2(edge_cases_dir / "mixed_images" / "ukbench09268_corrupt.jpg", imgs)
    (imgs / "cut.jpg").write_bytes((imgs / "abzu-0.jpg").read_bytes()[:5000])
    (imgs / "page.jpg").write_bytes(b"<html><body>not here</body></html>")
    args = ["-q", "--batch-size", "4", "--workers", "2"]
    show = ["--batch-size", "4", "--workers", "2"]  # with its progress bar: the marker
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    rng = random.Random(SEED)
    kills = mid_commit = 0
    chunked: list[int] = []
    with Forker(*INDEX_IMPORTS) as forker:
        clean_args = ["index", str(imgs), "--out", str(clean), *show]
        work = run_and_kill(clean_args, marker=b"embedding", start=forker)
        assert not work.killed
        folder = killed / "models" / KEY
        for n in range(KILLS + 3):
            index_args = ["index", str(imgs), "--out", str(killed), *show]
            if n < KILLS:  # once chunk 1, 2, ... 15 of 16 is on disk, at a random point
                # of the next batch: each kill further into the run (kills timed from the
                # progress bar alone all landed before the first chunk: nothing to resume)
                more = _chunks_on_disk(folder / "chunks", 1 + n * (CHUNKS - 2) // (KILLS - 1))
                delay = rng.uniform(0, 0.4 * work.after / CHUNKS)
                r = run_and_kill(
                    index_args, marker=b"embedding", when=more, delay=delay, start=forker
                )
            else:  # and a few kills in the middle of the final commit
                commit = staged(folder)
                r = run_and_kill(index_args, marker=b"embedding", when=commit, start=forker)
            kills += r.killed
            mid_commit += r.killed and (
                any(folder.glob("*.staged")) or (folder / "commit.journal").exists()
            )
            chunked.append(len(list((folder / "chunks").glob("*.npz"))))
            _consistent_or_clear(killed)
    assert kills >= 10, f"{kills} kills; chunks on disk after each: {chunked}"
    # the resuming run in this process (the CLI's main(), as the forks run it)
    final = json.loads(cli_here("index", imgs, "--out", killed, "--json", *args).stdout)
    print(f"index: {kills} kills, {mid_commit} mid-commit; chunks on disk after each: {chunked}")
    assert final["count"] == 64 and len(final["bad"]) <= 3

    assert rows(killed) == rows(clean)
    a, b = Collection(killed).load(), Collection(clean).load()
    assert a.ids == b.ids and len(a.ids) == 64
    assert a.fingerprints == b.fingerprints
    np.testing.assert_allclose(
        a.embeddings.astype(np.float32), b.embeddings.astype(np.float32), atol=2e-3
    )
    for root in (killed, clean):
        match(root, k=10, progress=False)
    (nb1, sc1), (nb2, sc2) = (
        Collection(killed).load().neighbors(),
        Collection(clean).load().neighbors(),
    )
    assert_equivalent_neighbours(np.asarray(b.embeddings), nb1, sc1, nb2, sc2)
    assert leftovers(killed) == [] and leftovers(clean) == []
    assert integrity(killed) == "ok"
    bad = {i: r["reason"] for i, r in rows(killed).items() if r["status"] == "bad"}
    assert sorted(bad) == ["cut", "page", "ukbench09268_corrupt"]


# match --------------------------------------------------------------------------------


@pytest.fixture
def synthetic(tmp_path: Path, model) -> Path:
    """A collection of 4,000 random unit rows (with clusters, so groups exist) under the
    embedded model's manifest: matching it takes long enough to be killed anywhere."""
    n, dim = 4000, model.dim
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((400, dim), dtype=np.float32)
    emb = centres[rng.integers(0, 400, n)] + 0.35 * rng.standard_normal((n, dim), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    root = tmp_path / "synthetic"
    ids = [f"item-{i:05d}" for i in range(n)]
    with Catalog(root / "catalog.sqlite") as cat:
        cat.upsert(Item(i, i, status="ok") for i in ids)

    def write(path: Path) -> None:
        with open(path, "wb") as fh:
            np.save(fh, emb.astype(np.float16))

    write_model_data(root / "models" / model.key, model.manifest(), ids, [""] * n, write)
    return root


@pytest.mark.slow
def test_match_killed_at_random_points_never_leaves_a_wrong_answer(
    tmp_path: Path, synthetic: Path
) -> None:
    reference = {}
    for k in (5, 10):
        ref = tmp_path / f"ref-{k}"
        shutil.copytree(synthetic, ref)
        match(ref, k=k, progress=False)
        data = Collection(ref).load()
        nb, sc = data.neighbors()
        reference[k] = (np.array(nb), np.array(sc), load_duplicates(data))
    killed = tmp_path / "killed"
    shutil.copytree(synthetic, killed)
    match(killed, k=5, progress=False)  # an older result, to be replaced by k=10
    args = ["match", str(killed), "-k", "10"]
    with Forker("bannermatch.query.match", "faiss") as forker:
        _kill_match(forker, args, tmp_path / "ref-10", reference)
        run_and_kill(args, marker=b"matching", start=forker)  # the resuming run
    data = Collection(killed).load()
    nb, sc = data.neighbors()
    np.testing.assert_array_equal(nb, reference[10][0])
    np.testing.assert_array_equal(sc, reference[10][1])
    assert load_duplicates(data) == reference[10][2] != []
    assert leftovers(killed) == []
    assert integrity(killed) == "ok"


def _kill_match(
    forker: Forker, args: list[str], ref: Path, reference: dict[int, tuple[Any, Any, Any]]
) -> None:
    """Kill ``match ARGS`` at random points (timed by an uninterrupted run on ``ref``) and
    mid-commit; after each kill every answer is one of the two complete ``reference``s."""
    killed = Path(args[1])
    key = Collection(killed).load().key  # the session model's: fp32
    # an uninterrupted run's length: the shorter of two (the first fork's is the longer)
    after = min(
        run_and_kill(["match", str(ref), "-k", "10"], marker=b"matching", start=forker).after
        for _ in range(2)
    )
    rng = random.Random(SEED)
    kills = mid_commit = 0
    seen: list[int] = []
    runs: list[str] = []  # what each run met: when it was to be killed, and what happened
    for n in range(KILLS + 4):
        if n < KILLS:
            delay = rng.uniform(0, 1.2 * after)
            r = run_and_kill(args, marker=b"matching", delay=delay, start=forker)
            if not r.killed:  # it ended first: a run's length, measured again (the machine
                after = min(after, r.after)  # is shared, and a quiet spell runs faster)
            moment = f"{delay:.2f} s"
        else:
            when = staged(killed / "models" / key)
            r = run_and_kill(args, marker=b"matching", when=when, start=forker)
            moment = "staged"
        runs.append(f"{moment}: {'killed' if r.killed else f'ended in {r.after:.2f} s'}")
        kills += r.killed
        folder = killed / "models" / key
        mid_commit += r.killed and (
            any(folder.glob("*.staged")) or (folder / "commit.journal").exists()
        )
        # whatever the kill interrupted, every answer is one of the two complete results
        data = Collection(killed).load()
        nb, sc = data.neighbors()
        seen.append(nb.shape[1])
        want_nb, want_sc, want_groups = reference[nb.shape[1]]
        np.testing.assert_array_equal(nb, want_nb)
        np.testing.assert_array_equal(sc, want_sc)
        assert load_duplicates(data) == want_groups
    print(f"match: {kills} kills, {mid_commit} mid-commit; k after each: {seen}; {runs}")
    assert kills >= 10, runs


# steam download -----------------------------------------------------------------------


@pytest.mark.slow
def test_steam_download_killed_at_random_points_resumes_to_the_same_collection(
    tmp_path: Path,
) -> None:
    n = 240
    ids = [str(i) for i in range(5000, 5000 + n)]
    images = {a: make_jpeg(int(a), (90, 135)) for a in ids}
    faults = {ids[3]: "404", ids[50]: "404", ids[7]: "html", ids[99]: "truncated"}
    cdn = Cdn(images, faults, latency=0.01)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for root in (clean, killed):
        with Catalog(root / "catalog.sqlite") as cat:
            cat.upsert(Item(i, f"Game {i}") for i in ids)
    opts = ["--concurrency", "4", "--retries", "1", "--backoff", "0.01", "--rate", "0"]
    with FakeServer(cdn) as server:
        env = steam_env(BANNERMATCH_STEAM_CDN=server.url, BANNERMATCH_STEAM_API_URL=server.url)
        with Forker("bannermatch.acquire.steam.download", env=env) as forker:
            _kill_download(forker, clean, killed, opts, images)
    assert rows(killed, "mtime") == rows(clean, "mtime")
    statuses = [r["status"] for r in rows(killed).values()]
    assert (statuses.count("ok"), statuses.count("missing"), statuses.count("bad")) == (236, 2, 2)
    for a in ids:
        path = killed / "images" / f"{a}.jpg"
        assert path.exists() == (a not in faults)
        if path.exists():
            assert path.read_bytes() == images[a] == (clean / "images" / f"{a}.jpg").read_bytes()
    assert sorted(p.name for p in (killed / "images").iterdir()) == sorted(
        p.name for p in (clean / "images").iterdir()
    )
    assert leftovers(killed) == []
    assert integrity(killed) == "ok"


def _kill_download(
    forker: Forker, clean: Path, killed: Path, opts: list[str], images: dict[str, bytes]
) -> None:
    """``steam download`` into ``clean`` uninterrupted, then into ``killed`` killed at
    random points (a committed row always has its whole file) and resumed."""
    work = run_and_kill(
        ["steam", "download", str(clean), *opts], marker=b"downloading", start=forker
    )
    rng = random.Random(SEED)
    kills = 0
    done: list[int] = []
    for _ in range(KILLS):
        r = run_and_kill(
            ["steam", "download", str(killed), *opts],
            marker=b"downloading",
            delay=rng.uniform(0, 1.6 * work.after / KILLS),
            start=forker,
        )
        kills += r.killed
        assert integrity(killed) == "ok"
        done.append(sum(r["status"] != "pending" for r in rows(killed).values()))
        for it in rows(killed).values():  # a committed row always has its whole file
            if it["status"] == "ok":
                data = (killed / it["source"]).read_bytes()
                assert data == images[it["id"]]
    print(f"steam download: {kills} kills; games finished after each: {done}")
    assert kills >= 10
    run_and_kill(["steam", "download", str(killed), *opts], marker=b"downloading", start=forker)


# collections whose files disagree -------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, covers_dir: Path) -> tuple[Path, Path]:
    """Eight covers indexed (and a second model key for "another model's manifest")."""
    from bannermatch.embed.index import index

    base = tmp_path_factory.mktemp("damage")
    imgs = base / "imgs"
    imgs.mkdir()
    for src in sorted((covers_dir / "images").glob("*.jpg"))[100:108]:
        shutil.copy2(src, imgs / src.name)
    root = base / "coll"
    index(imgs, root, progress=False)
    index(imgs, root, "effnet-lite0", progress=False, fit="squash")
    match(root, k=5, model=KEY, progress=False)
    return imgs, root


def _npy_rows(n: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        emb = np.load(folder / "embeddings.npy")
        np.save(folder / "embeddings.npy", emb[:n])

    return damage


def _cut(name: str, keep: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        path.write_bytes(path.read_bytes()[:keep])

    return damage


def _json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def _other_manifest(folder: Path) -> None:
    other = next(p for p in folder.parent.iterdir() if p.name != folder.name)
    shutil.copy(other / "manifest.json", folder / "manifest.json")


def _text(name: str, text: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_text(text)

    return damage


REBUILD = "rebuild it with `bannermatch index INPUT --out"
REMATCH = "run `bannermatch match"
#: damage -> (what the error says, the hint it gives, whether only the neighbours are hit)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "embeddings.npy truncated": (
        _cut("embeddings.npy", 3000),
        "embeddings.npy is damaged",
        REBUILD,
    ),
    "embeddings.npy short of rows": (
        _npy_rows(6),
        "embeddings.npy has 6 rows but items.json lists 8",
        REBUILD,
    ),
    "embeddings.npy as float32": (
        lambda f: np.save(f / "embeddings.npy", np.load(f / "embeddings.npy").astype(np.float32)),
        "embeddings.npy is float32 2-d, expected float16 2-d",
        REBUILD,
    ),
    "manifest of another model setting": (
        _other_manifest,
        "its manifest is for 'effnet-lite0__squash224-bicubic__cls-int8'",
        REBUILD,
    ),
    "manifest naming another model": (
        _json("manifest.json", lambda m: m | {"model": "clip-vit-b32", "dim": 512}),
        "embeddings.npy has dimension 1280, manifest says 512",
        REBUILD,
    ),
    "items.json with an extra id": (
        _json("items.json", lambda ids: [*ids, "intruder"]),
        "embeddings.npy has 8 rows but items.json lists 9",
        REBUILD,
    ),
    "items.json one id short": (
        _json("items.json", lambda ids: ids[:-1]),
        "embeddings.npy has 8 rows but items.json lists 7",
        REBUILD,
    ),
    "items.json listing an id twice": (
        _json("items.json", lambda ids: [*ids[:-1], ids[0]]),
        "items.json lists an item twice",
        REBUILD,
    ),
    "items.json of numbers": (
        _json("items.json", lambda ids: list(range(len(ids)))),
        "items.json lists ids that are not text",
        REBUILD,
    ),
    "items.json not JSON": (_text("items.json", '["a", '), "unreadable JSON", REBUILD),
    "fingerprints.json out of step": (
        _json("fingerprints.json", lambda f: f[:3]),
        "fingerprints.json is out of step with items.json",
        REBUILD,
    ),
    "norms.npy short": (
        lambda f: np.save(f / "norms.npy", np.ones(5, np.float32)),
        "norms.npy has shape (5,), items.json lists 8",
        REBUILD,
    ),
    "commit journal damaged": (
        _text("commit.journal", "{not json"),
        "commit.journal is damaged",
        "rebuild them with `bannermatch index INPUT --out",
    ),
    "neighbors.npy truncated": (
        _cut("neighbors.npy", 100),
        "neighbors.npy or scores.npy is missing or damaged",
        REMATCH,
    ),
    "scores.npy of another shape": (
        lambda f: np.save(f / "scores.npy", np.zeros((8, 3), np.float16)),
        "neighbours do not match the embeddings",
        REMATCH,
    ),
    "neighbors.npy pointing past the rows": (
        lambda f: np.save(f / "neighbors.npy", np.full((8, 5), 99, np.uint32)),
        "neighbours do not match the embeddings",
        REMATCH,
    ),
    "match.json damaged": (_text("match.json", "garbage"), "no up-to-date neighbours", REMATCH),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_files_that_disagree_give_a_clear_error_never_an_answer(
    damage: str,
    small: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    imgs, base = small
    root = tmp_path / "coll"
    shutil.copytree(base, root)
    harm, says, hint = DAMAGES[damage]
    first = Collection(base).load(KEY).ids[0]
    commands = [
        ["similar", "{root}", first, "-k", "3", "--model", KEY, "--json"],
        ["similar", "{root}", str(imgs / f"{first}.jpg"), "-k", "3", "--model", KEY, "--json"],
        ["unique", "{root}", "-n", "3", "--model", KEY, "--json"],
    ]
    clean = []
    for argv in commands:
        assert main([a.format(root=base) for a in argv]) == 0
        clean.append(json.loads(capsys.readouterr().out))
    if hint != REMATCH:
        commands.append(["match", "{root}", "--model", KEY, "-q"])
    harm(root / "models" / KEY)
    refused = 0
    for n, argv in enumerate(commands):
        code = main([a.format(root=root) for a in argv])
        out, err = capsys.readouterr()
        if code == 0:  # only where the damage is not in its way; then the right answer
            assert hint == REMATCH, (argv, err)
            _same_results(json.loads(out), clean[n])
            continue
        refused += 1
        assert (code, out) == (1, ""), (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bannermatch: error: "), err
        assert says in lines[0] and hint in lines[0], lines[0]
    assert refused >= (1 if hint == REMATCH else len(commands))
    from bannermatch.present.server import ServedCollection

    with pytest.raises(CollectionError, match=hint.split("`")[0]):
        ServedCollection.open(root, KEY).unique_rows()
    # the hint works: every answer is the clean one again
    if hint != REMATCH:
        assert main(["index", str(imgs), "--out", str(root), "-q"]) == 0
    assert main(["match", str(root), "--model", KEY, "-k", "5", "-q"]) == 0
    capsys.readouterr()
    for n, argv in enumerate(commands[:3]):
        assert main([a.format(root=root) for a in argv]) == 0
        _same_results(json.loads(capsys.readouterr().out), clean[n])


def _same_results(got: dict[str, Any], want: dict[str, Any]) -> None:
    """The same items in the same order; scores equal but for float16 storage (an exact
    scan answers in float32)."""
    assert [h["id"] for h in got["results"]] == [h["id"] for h in want["results"]]
    for g, w in zip(got["results"], want["results"], strict=True):
        assert abs(g["score"] - w["score"]) < 1e-3


def test_a_damaged_catalogue_is_a_clear_error(
    small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, base = small
    root = tmp_path / "coll"
    shutil.copytree(base, root)
    path = root / "catalog.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(path.read_bytes()[:3000])
    first = Collection(base).load(KEY).ids[0]
    for argv in (["similar", str(root), first, "--model", KEY], ["audit", str(root), "-q"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1
        assert "catalog.sqlite is damaged" in err and "rebuild the collection" in err
