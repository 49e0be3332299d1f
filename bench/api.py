"""Latency and throughput of the web API on a synthetic collection of 100,000 items.

    .venv/bin/python bench/api.py [--items 100000] [--concurrency 1 16] [--seconds 10] [--json]

Builds (once; reused from ``--dir``) a collection in the real layout: random unit
vectors (d=1280, float16) written with ``write_model_data``, a catalogue with
game-like names, and neighbours from ``bannermatch.query.match.match``. Then starts
``bannermatch serve`` in a subprocess, measures the time until it answers, and
drives it over loopback with a concurrent httpx load generator (bounded by a
request count and a time limit per scenario):

    similar      GET /api/items/{id}/similar?n=10   (stored neighbours)
    exact        GET /api/items/{id}/similar?n=50   (beyond stored k: a full scan)
    names        GET /api/names?q=<2-8 letters of a name>   (autocomplete, prefix/word)
    names-typo   GET /api/names?q=<a name's start with a typo> (falls through to fuzzy)

The load generator runs on the same machine as the server and takes CPU from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import write_random_unit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(tempfile.gettempdir()) / "bannermatch-bench-api"
# fmt: off
SYLLABLES = [
    "ka", "to", "ri", "mo", "ne", "sa", "lu", "vi", "dor", "zan", "pel", "qua", "xen",
    "bro", "tal", "fin", "gor", "el", "um", "ast", "ran", "dal", "mir", "os", "ix", "ter",
    "gal", "bel", "cor", "den", "fal", "hal", "jin", "kor", "lin", "nor", "par",
]
WORDS = [
    "Dark", "Legend", "Space", "Quest", "Dungeon", "Tales", "Kingdom", "Hero", "Star",
    "Shadow", "Battle", "Farm", "Racing", "Simulator", "Tycoon", "Knight", "Dragon", "City",
    "Empire", "War", "Lost", "Island", "Ghost", "Zombie", "Pixel", "Puzzle",
]
# fmt: on
SUFFIXES = ("", "", "", " 2", " 3", ": Remastered", " - Deluxe Edition", " VR", " Online")


def synthetic_names(n: int, rng: random.Random) -> list[str]:
    def word() -> str:
        if rng.random() < 0.4:
            return rng.choice(WORDS)
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))).capitalize()

    return [
        " ".join(word() for _ in range(rng.randint(1, 4))) + rng.choice(SUFFIXES) for _ in range(n)
    ]


def build(root: Path, n: int, dim: int, k: int, seed: int) -> dict[str, float]:
    """Write a synthetic collection at ``root``; returns the seconds each step took."""
    from bannermatch.query.match import match
    from bannermatch.store.catalog import Item
    from bannermatch.store.collection import Collection

    rng = random.Random(seed)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    ids = [str(i) for i in rng.sample(range(10, 3_000_000), n)]  # Steam-like app ids
    names = synthetic_names(n, rng)
    coll = Collection(root)
    with coll.catalog(create=True) as cat:
        cat.upsert(Item(id=i, name=name, status="ok") for i, name in zip(ids, names, strict=True))
        cat.set_queries(ids[:24], "bench", replace=True)
    write_random_unit(coll, ids, dim, seed)
    times["write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    match(root, k=k, progress=True)
    times["match"] = time.perf_counter() - t0
    return times


def ready_collection(root: Path, n: int, dim: int, k: int, seed: int) -> dict[str, float]:
    from bannermatch.errors import CollectionError
    from bannermatch.store.collection import Collection

    try:
        data = Collection(root).load()
        data.neighbors()
        if len(data.ids) == n and data.embeddings.shape[1] == dim and data.match_info["k"] == k:
            return {}
    except (CollectionError, KeyError, TypeError):
        pass
    if root.exists():
        import shutil

        shutil.rmtree(root)
    print(f"building a synthetic collection of {n:,} items at {root} ...", file=sys.stderr)
    return build(root, n, dim, k, seed)


# the server ---------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(root: Path, port: int) -> tuple[subprocess.Popen[str], float, str]:
    """``bannermatch serve`` in a subprocess; returns it, seconds to ready, its banner."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bannermatch.cli", "serve", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/api/info"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.01)
    ready = time.perf_counter() - t0
    banner = proc.stderr.readline().strip() if proc.stderr else ""
    return proc, ready, banner


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


# the load generator -------------------------------------------------------------


@dataclass
class Result:
    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"rps": round(self.rps, 1)}


async def load(
    base: str, name: str, paths: list[str], concurrency: int, max_requests: int, seconds: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        for path in paths[: min(50, len(paths))]:  # warm-up
            await client.get(path)

        async def worker() -> None:
            nonlocal errors, counter
            while counter < max_requests and time.perf_counter() < deadline:
                path = paths[counter % len(paths)]
                counter += 1
                t = time.perf_counter()
                r = await client.get(path)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors += 1

        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    if len(latencies) < 2:
        raise RuntimeError(f"{name}: only {len(latencies)} request(s) answered")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(
        name,
        concurrency,
        len(latencies),
        errors,
        elapsed,
        round(1000 * q[49], 2),
        round(1000 * q[89], 2),
        round(1000 * q[98], 2),
    )


def typo(text: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(text)) if len(text) > 1 else 0
    return text[:i] + rng.choice("qxzjv") + text[i + 1 :]


def scenarios(root: Path, rng: random.Random, count: int) -> dict[str, list[str]]:
    from urllib.parse import quote

    from bannermatch.store.collection import Collection

    coll = Collection(root)
    data = coll.load()
    with coll.catalog() as cat:
        names = list(cat.names(rng.sample(data.ids, 2000)).values())
    ids = [data.ids[rng.randrange(len(data.ids))] for _ in range(count)]
    prefixes = []
    typos = []
    for _ in range(count):
        words = re.findall(r"\w+", rng.choice(names))
        start = rng.randrange(len(words))
        text = " ".join(words[start:])
        prefixes.append(text[: rng.randint(2, 8)])
        typos.append(typo(" ".join(words)[: rng.randint(5, 10)], rng))
    return {
        "similar": [f"/api/items/{i}/similar?n=10" for i in ids],
        "exact": [f"/api/items/{i}/similar?n=50" for i in ids[:200]],
        "names": [f"/api/names?q={quote(p)}&limit=10" for p in prefixes],
        "names-typo": [f"/api/names?q={quote(t)}&limit=10" for t in typos],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("-k", type=int, default=10, help="stored neighbours (default: 10)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="collection (reused)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16], help="clients at once"
    )
    parser.add_argument("--requests", type=int, default=20_000, help="at most, per scenario")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most, per scenario")
    parser.add_argument("--exact-requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    build_times = ready_collection(args.dir, args.items, args.dim, args.k, args.seed)
    paths = scenarios(args.dir, random.Random(args.seed), 5000)
    port = free_port()
    proc, ready, banner = start_server(args.dir, port)
    results = []
    try:
        base = f"http://127.0.0.1:{port}"
        for concurrency in args.concurrency:
            for name, todo in paths.items():
                limit = args.exact_requests if name == "exact" else args.requests
                conc = min(concurrency, 4) if name == "exact" else concurrency
                results.append(asyncio.run(load(base, name, todo, conc, limit, args.seconds)))
        rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    report = {
        "items": args.items,
        "dim": args.dim,
        "k": args.k,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "build_seconds": {k: round(v, 1) for k, v in build_times.items()},
        "startup_to_ready_s": round(ready, 2),
        "server_banner": banner,
        "server_rss_mb": round(rss, 1),
        "scenarios": [r.to_dict() for r in results],
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.items:,} items, d={args.dim}, k={args.k}; {os.cpu_count()} CPUs; loopback")
    if build_times:
        print("built in " + ", ".join(f"{k} {v:.1f}s" for k, v in build_times.items()))
    print(f"server start-up to first answer: {ready:.2f}s ({banner})")
    print(f"server memory (RSS) after the run: {rss:.0f} MB")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"{'scenario':<12} {'conc':>4} {'requests':>8} {'err':>4} {'req/s':>8} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
    )
    for r in results:
        print(
            f"{r.name:<12} {r.concurrency:>4} {r.requests:>8} {r.errors:>4} {r.rps:>8.1f} "
            f"{r.p50_ms:>8.2f} {r.p90_ms:>8.2f} {r.p99_ms:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
