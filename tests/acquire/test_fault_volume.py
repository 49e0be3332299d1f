"""2,000 banners from a local CDN that fails 10% of requests in every way a CDN fails:
every banner ends ok or with a precise status, nothing is lost, no request loop is unbounded."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bannermatch.store.catalog import Catalog, Item
from support.steam import FLAKY_FAULTS, FakeServer, FlakyCdn, Hit, make_jpeg, steam_env

N = 2000
SEED = 7
RETRIES = 5
CONCURRENCY = 16
TIMEOUT = 1.0  # seconds without data; a whole answer may take 4x that
#: a Retry-After pauses every request to the host (the run's idle time: about 56 such
#: answers); capped this low it still stands apart from a first retry's backoff (<= BACKOFF)
MAX_RETRY_AFTER = 0.1
BACKOFF = 0.02
#: every 100th app fails the same way every time
PERMANENT = ("404", "html", "500", "no2x")
SUCCESS = ("", "slow")  # the faults after which the banner is stored


@pytest.mark.slow
def test_2000_banners_through_a_cdn_that_fails_10_percent_of_requests(cli, tmp_path: Path) -> None:
    ids = [str(200_000 + i) for i in range(N)]
    images = {a: make_jpeg(int(a), (60, 90), quality=80) for a in ids}
    permanent = {
        a: PERMANENT[(i // 100) % len(PERMANENT)] for i, a in enumerate(ids) if i % 100 == 7
    }
    cdn = FlakyCdn(
        images, rate=0.10, seed=SEED, permanent=permanent, stall=2.5, drip_pause=0.125
    )  # a stall outlasts TIMEOUT, a drip (40 pieces) 4 x TIMEOUT
    coll = tmp_path / "coll"
    with Catalog(coll / "catalog.sqlite") as cat:
        cat.upsert(Item(a, f"Game {a}") for a in ids)
    args = [
        "steam", "download", coll, "--json", "-q",
        "--concurrency", CONCURRENCY, "--rate", "0", "--retries", RETRIES, "--backoff", BACKOFF,
        "--timeout", TIMEOUT, "--max-retry-after", MAX_RETRY_AFTER,
    ]  # fmt: skip
    with FakeServer(cdn) as server:
        env = steam_env(BANNERMATCH_STEAM_CDN=server.url, BANNERMATCH_STEAM_API_URL=server.url)
        started = time.monotonic()
        out = json.loads(cli(*args, env=env).stdout)
        seconds = time.monotonic() - started
        first_hits = list(cdn.hits)
        again = json.loads(cli(*args, env=env).stdout)
        second_hits = cdn.hits[len(first_hits) :]

    # every banner ends ok or with a precise status; nothing is lost
    with Catalog(coll / "catalog.sqlite") as cat:
        rows = {it.id: it for it in cat.items()}
    assert len(rows) == N and out["planned"] == N
    statuses = Counter(r.status for r in rows.values())
    expected_bad = sum(f in ("html", "500") for f in permanent.values())
    expected_missing = sum(f == "404" for f in permanent.values())
    assert statuses == {"ok": N - expected_bad - expected_missing, "bad": expected_bad,
                        "missing": expected_missing}  # fmt: skip
    assert (out["ok"], out["bad"], out["missing"]) == (
        statuses["ok"], statuses["bad"], statuses["missing"]
    )  # fmt: skip
    tries = f"(library_600x900.jpg, {RETRIES + 2} tries)"
    for a, row in rows.items():
        fault = permanent.get(a, "")
        if fault == "404":
            assert row.reason == (
                "not on the CDN: HTTP 404 for library_600x900_2x.jpg, "
                "HTTP 404 for library_600x900.jpg"
            )
        elif fault == "html":
            assert row.reason == f"not an image: the file is an HTML page {tries}"
        elif fault == "500":
            assert row.reason == f"HTTP 500 {tries}"
        else:
            assert row.status == "ok", (a, row.reason)
            data = (coll / "images" / f"{a}.jpg").read_bytes()
            assert data == images[a] and row.sha256 == hashlib.sha256(data).hexdigest()
            seen_2x = [h for h in first_hits if h.appid == a and h.file.endswith("_2x.jpg")]
            # the URL the store API named (this stand-in keeps the art at the legacy path)
            base = f"{server.url}/store_item_assets/steam/apps/{a}/"
            if row.url == f"{base}library_600x900.jpg?t=1600000000":
                # the 1x fallback: only after the 2x file was tried and failed (its tries
                # are not counted here: on a loaded machine a try can time out before the
                # stand-in sees it, and a good answer can come too late)
                assert seen_2x, a  # the 2x file was asked for first
            else:
                assert fault != "no2x" and seen_2x, (a, seen_2x)
                assert row.url == f"{base}library_600x900_2x.jpg?t=1600000000", row.url
    assert not [p for p in (coll / "images").iterdir() if p.name.startswith(".")]

    # no loop is unbounded: each app is asked again only after a failure, at most RETRIES
    # times, and its fallback URL once more
    by_app: dict[str, list[Hit]] = defaultdict(list)
    for hit in first_hits:
        by_app[hit.appid].append(hit)
    assert sorted(by_app) == sorted(ids)
    assert max(len(h) for h in by_app.values()) == RETRIES + 2
    for a, hits in by_app.items():
        faults = [h.fault for h in hits]
        if a in permanent:
            continue
        assert faults[-1] in SUCCESS and all(f not in SUCCESS for f in faults[:-1]), (a, faults)
        for before, after in itertools.pairwise(hits):
            if before.fault in ("429", "429date", "503"):  # Retry-After, capped, was honoured
                assert after.time - before.time >= MAX_RETRY_AFTER - 0.02, (a, faults)
    assert CONCURRENCY // 2 <= cdn.max_in_flight <= CONCURRENCY  # bounded, and used

    injected = Counter(h.fault for h in first_hits if h.fault and h.appid not in permanent)
    assert set(injected) == set(FLAKY_FAULTS)  # every kind of fault happened
    random_faults = sum(injected.values())
    served = sum(h.appid not in permanent for h in first_hits)
    assert 0.08 < random_faults / served < 0.12
    print(
        f"\n{N} banners in {seconds:.1f}s: {len(first_hits)} requests, {random_faults} random "
        f"faults ({random_faults / served:.1%} of {served}): "
        + ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))
        + f"; permanent faults on {len(permanent)} apps; {out['retried']} retries; "
        f"max {cdn.max_in_flight} requests in flight; statuses {dict(statuses)}"
    )

    # a rerun keeps every banner and asks only for the bad ones again
    assert again["done_before"] == statuses["ok"]
    assert again["skipped_missing"] == statuses["missing"]
    assert again["planned"] == statuses["bad"]
    assert {h.appid for h in second_hits} == {a for a, r in rows.items() if r.status == "bad"}
    assert len(second_hits) == statuses["bad"] * (RETRIES + 2)
