"""``bannermatch steam catalog`` against local SteamSpy and Steam Web API servers, and snapshots."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from pathlib import Path

import pytest

from bannermatch.acquire.steam.catalog import META_SPY_PAGE
from bannermatch.acquire.steam.endpoints import CURATED_GAMES
from bannermatch.store.catalog import Catalog, Item
from support import SHARED_DATA
from support.steam import FakeServer, SteamSpy, WebApi, closed_port_url, steam_env

SHARED = SHARED_DATA / "steam_catalog"
#: the server stamps arrivals, the client departures: allow for loopback jitter
JITTER = 0.002


@pytest.fixture(scope="module")
def steam_catalog() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs {SHARED} (the project's shared Steam snapshots), which is absent")
    return SHARED


def _rows(coll: Path) -> dict[str, Item]:
    with Catalog(coll / "catalog.sqlite") as cat:
        return {it.id: it for it in cat.items()}


def _queries(coll: Path) -> list[str]:
    with Catalog(coll / "catalog.sqlite") as cat:
        return cat.queries()


def _small_apps(n: int) -> dict[str, dict[str, object]]:
    return {str(10 * (i + 1)): {"name": f"Game {i + 1}", "ccu": i} for i in range(n)}


# SteamSpy ----------------------------------------------------------------------


def test_steamspy_all_pages_at_the_interval(cli, tmp_path, steam_catalog):
    apps = json.loads((steam_catalog / "steamspy_all_2021-03-29.json").read_text())
    top = [
        str(a) for a in json.loads((steam_catalog / "top100_by_ccu_2021-03-29.json").read_text())
    ]
    interval = 0.05
    spy = SteamSpy(apps, top=top, min_interval=interval)
    coll = tmp_path / "coll"
    with FakeServer(spy) as server:
        proc = cli(
            "steam",
            "catalog",
            coll,
            "--steamspy-interval",
            interval,
            "--json",
            env=steam_env(BANNERMATCH_STEAMSPY_URL=server.url),
        )
    out = json.loads(proc.stdout)
    pages = spy.all_pages(server)
    n_pages = -(-len(apps) // 1000)
    assert [p for _, p in pages] == list(range(n_pages + 1))  # the last one is empty
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(pages)]
    assert min(gaps) >= interval - JITTER
    assert spy.too_soon == 0
    assert out["complete"] and out["pages"] == n_pages and out["fetched"] == len(apps)
    rows = _rows(coll)
    assert len(rows) == len(apps)
    assert rows["570"].name == "Dota 2" and rows["570"].status == "pending"
    assert all(r.status == "pending" and r.source is None for r in rows.values())
    queries = _queries(coll)
    assert queries[: len(top)] == top  # top100in2weeks first, in its order
    assert set(queries) == set(top) | set(CURATED_GAMES)
    assert any(s.query.get("request") == "top100in2weeks" for s in server.seen)


def test_steamspy_resumes_where_it_stopped(cli, tmp_path):
    apps = _small_apps(45)  # 5 pages of 10
    interval = 0.15
    spy = SteamSpy(apps, top=["10", "20"], page_size=10, min_interval=interval)
    coll = tmp_path / "coll"
    with FakeServer(spy) as server:
        env = steam_env(BANNERMATCH_STEAMSPY_URL=server.url)
        args = ["steam", "catalog", coll, "--steamspy-interval", interval, "--json"]
        first = json.loads(cli(*args, "--max-pages", "2", env=env).stdout)
        assert first["pages"] == 2 and not first["complete"]
        # the next run dies on page 3: persistent server errors, two retries
        spy.faults[3] = ["500"] * 3
        failed = cli(*args, "--retries", "2", "--backoff", "0.01", env=env, check=False)
        assert failed.returncode == 1
        assert failed.stderr.startswith("bannermatch: error: SteamSpy failed: HTTP 500")
        with Catalog(coll / "catalog.sqlite") as cat:
            assert cat.get_meta(META_SPY_PAGE) == "3"
        last = json.loads(cli(*args, env=env).stdout)
        again = json.loads(cli(*args, env=env).stdout)
    pages = spy.all_pages(server)
    assert [p for _, p in pages] == [0, 1, 2, 3, 3, 3, 3, 4, 5]  # never a page twice once done
    # the interval holds across runs too (it is stored in the catalogue)
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(pages)]
    assert min(gaps) >= interval - JITTER
    assert spy.too_soon == 0
    assert last["complete"] and last["pages"] == 2
    assert again["complete"] and again["pages"] == 0 and "complete already" in again["notes"][0]
    assert len(_rows(coll)) == 45 + len(CURATED_GAMES)


def test_steamspy_error_page_ends_the_listing(cli, tmp_path):
    spy = SteamSpy(_small_apps(30), top=["10"], page_size=10, faults={1: ["html"]})
    coll = tmp_path / "coll"
    with FakeServer(spy) as server:
        env = steam_env(BANNERMATCH_STEAMSPY_URL=server.url)
        args = ["steam", "catalog", coll, "--steamspy-interval", "0.01", "--json"]
        first = json.loads(cli(*args, env=env).stdout)
        second = json.loads(cli(*args, env=env).stdout)
    assert not first["complete"] and first["pages"] == 1
    assert "error page" in first["notes"][0] and "page 1" in first["notes"][0]
    assert second["complete"] and second["pages"] == 2
    assert [p for _, p in spy.all_pages(server)] == [0, 1, 1, 2, 3]


def test_existing_items_keep_their_status_and_file(cli, tmp_path):
    coll = tmp_path / "coll"
    with Catalog(coll / "catalog.sqlite") as cat:
        cat.upsert(
            [
                Item("10", "old name", source="images/10.jpg", status="ok", sha256="ab", size=3),
                Item("20", "Game 2", status="missing", reason="HTTP 404"),
            ]
        )
    spy = SteamSpy(_small_apps(3), top=["30"], page_size=10)
    with FakeServer(spy) as server:
        proc = cli(
            "steam",
            "catalog",
            coll,
            "--steamspy-interval",
            "0",
            "--json",
            env=steam_env(BANNERMATCH_STEAMSPY_URL=server.url),
        )
    out = json.loads(proc.stdout)
    assert (out["added"], out["renamed"]) == (1 + len(CURATED_GAMES), 1)  # curated too
    rows = _rows(coll)
    assert rows["10"].name == "Game 1"
    assert (rows["10"].status, rows["10"].source, rows["10"].sha256) == (
        "ok",
        "images/10.jpg",
        "ab",
    )
    assert (rows["20"].status, rows["20"].reason) == ("missing", "HTTP 404")
    assert rows["30"].status == "pending"
    assert _queries(coll)[0] == "30"


def test_unreachable_steamspy_fails_fast(cli, tmp_path):
    url = closed_port_url()
    started = time.monotonic()
    proc = cli(
        "steam", "catalog", tmp_path / "c", env=steam_env(BANNERMATCH_STEAMSPY_URL=url), check=False
    )
    assert time.monotonic() - started < 15
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"bannermatch: error: cannot reach SteamSpy at {url}/api.php")
    assert "BANNERMATCH_STEAMSPY_URL" in lines[0] and "--steamspy-url" in lines[0]


# Steam Web API -----------------------------------------------------------------


def test_webapi_paginates_by_last_appid(cli, tmp_path, steam_catalog):
    page = json.loads((steam_catalog / "istoreservice_getapplist_page2.json").read_text())
    apps = page["response"]["apps"]
    api = WebApi(apps, faults=["503"])
    coll = tmp_path / "coll"
    with FakeServer(api) as server, FakeServer(SteamSpy({}, top=["620"])) as spy:
        proc = cli(
            "steam",
            "catalog",
            coll,
            "--source",
            "webapi",
            "--page-size",
            "1000",
            "--backoff",
            "0.01",
            "--json",
            env=steam_env(
                BANNERMATCH_STEAM_API_URL=server.url,
                BANNERMATCH_STEAMSPY_URL=spy.url,
                STEAM_API_KEY=api.key,
            ),
        )
    out = json.loads(proc.stdout)
    calls = [s.query for s in server.seen]
    assert all(q["key"] == api.key and q["include_games"] == "true" for q in calls)
    assert all(q["max_results"] == "1000" for q in calls)
    ids = sorted(a["appid"] for a in apps)
    expected_last = ["0", "0"] + [str(ids[i * 1000 - 1]) for i in range(1, 5)]  # 503, retry
    assert [q["last_appid"] for q in calls] == expected_last
    assert out["complete"] and out["pages"] == 5 and out["fetched"] == len(apps)
    assert api.key not in proc.stdout + proc.stderr
    rows = _rows(coll)
    assert rows["1520290"].name == "Crumbling City"
    assert len(rows) == len(apps) + len(set(CURATED_GAMES) - {str(a) for a in ids})


def test_webapi_needs_a_key(cli, tmp_path):
    api = WebApi([{"appid": 10, "name": "A"}])
    with FakeServer(api) as server:
        env = steam_env(BANNERMATCH_STEAM_API_URL=server.url)
        missing = cli(
            "steam", "catalog", tmp_path / "c", "--source", "webapi", env=env, check=False
        )
        assert server.seen == []  # no request without a key
        wrong = cli(
            "steam",
            "catalog",
            tmp_path / "c",
            "--source",
            "webapi",
            env={**env, "STEAM_API_KEY": "not-the-key"},
            check=False,
        )
    assert missing.returncode == 1 and "STEAM_API_KEY" in missing.stderr
    assert missing.stderr.count("\n") == 1
    assert wrong.returncode == 1
    assert "refused the key in STEAM_API_KEY (HTTP 403)" in wrong.stderr
    assert "not-the-key" not in wrong.stderr


# snapshot files ----------------------------------------------------------------


def test_snapshot_steamspy_with_top_file(cli, tmp_path, steam_catalog):
    coll = tmp_path / "coll"
    proc = cli(
        "steam", "catalog", coll,
        "--source", steam_catalog / "steamspy_all_2021-03-29.json",
        "--top-file", steam_catalog / "top100_by_ccu_2021-03-29.json",
        "--json", env=steam_env(BANNERMATCH_STEAMSPY_URL=closed_port_url()),
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert out["fetched"] == 41736 and out["added"] == 41736
    rows = _rows(coll)
    assert rows["730"].name == "Counter-Strike: Global Offensive"
    top = [
        str(a) for a in json.loads((steam_catalog / "top100_by_ccu_2021-03-29.json").read_text())
    ]
    assert _queries(coll) == top + [i for i in CURATED_GAMES if i not in top]


def test_snapshot_vertical_banner_ids_with_names_beside(cli, tmp_path, steam_catalog):
    coll = tmp_path / "coll"
    ids_file = steam_catalog / "vertical_banner_app_ids_2021-01.json"
    out = json.loads(cli("steam", "catalog", coll, "--source", ids_file, "--json").stdout)
    ids = json.loads(ids_file.read_text())
    names = json.loads((steam_catalog / "vertical_banner_app_names_2021-01.json").read_text())
    assert out["fetched"] == len(ids) == 29982
    rows = _rows(coll)
    assert rows[str(ids[0])].name == names[0] == "Counter-Strike"
    assert rows[str(ids[-1])].name == " ".join(names[-1].split())
    assert "--top-file" in out["notes"][0]  # no top list without the network
    assert set(_queries(coll)) == set(CURATED_GAMES)


def test_snapshot_ids_with_names_option(cli, tmp_path):
    ids, names = tmp_path / "mine.json", tmp_path / "labels.json"
    ids.write_text(json.dumps([620, "570", 440]))
    names.write_text(json.dumps(["Portal 2", "Dota 2", "Team Fortress 2"]))
    coll = tmp_path / "coll"
    cli("steam", "catalog", coll, "--source", ids, "--names", names, "--no-top")
    rows = _rows(coll)
    assert rows["570"].name == "Dota 2" and rows["620"].name == "Portal 2"
    names.write_text(json.dumps(["Portal 2"]))
    bad = cli("steam", "catalog", coll, "--source", ids, "--names", names, check=False)
    assert bad.returncode == 1 and "has 1 names for the 3 app ids" in bad.stderr


def test_snapshot_istoreservice_page(cli, tmp_path, steam_catalog):
    coll = tmp_path / "coll"
    src = steam_catalog / "istoreservice_getapplist_page2.json"
    out = json.loads(cli("steam", "catalog", coll, "--source", src, "--json").stdout)
    assert out["fetched"] == 4037
    assert _rows(coll)["1652650"].name == "WORDLAND 3"


def test_snapshot_top_list_is_the_query_set(cli, tmp_path, steam_catalog):
    coll = tmp_path / "coll"
    top_file = steam_catalog / "top100_by_ccu_2021-03-29.json"
    cli("steam", "catalog", coll, "--source", top_file)
    top = [str(a) for a in json.loads(top_file.read_text())]
    assert _queries(coll)[:100] == top
    assert _rows(coll)["730"].name == ""  # no name yet
    # names come later from another source; the query set stays
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"730": {"name": "Counter-Strike: Global Offensive"}}))
    cli("steam", "catalog", coll, "--source", names)
    assert _queries(coll)[:100] == top
    assert _rows(coll)["730"].name == "Counter-Strike: Global Offensive"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"foo": 1}', "unknown catalogue snapshot format"),
        ("[1.5, 2]", "unknown catalogue snapshot format"),
        ("not json at all", "is not JSON"),
        ("[]", "is empty"),
        ('{"response": {"apps": [{"name": "no id"}]}}', "has no appid"),
    ],
)
def test_unknown_snapshot_is_a_clear_error(cli, tmp_path, content, message):
    src = tmp_path / "weird.json"
    src.write_text(content)
    proc = cli("steam", "catalog", tmp_path / "c", "--source", src, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("bannermatch: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_ids_file_without_its_names_file(cli, tmp_path, steam_catalog):
    ids = tmp_path / "vertical_banner_app_ids_2021-01.json"
    ids.write_bytes((steam_catalog / ids.name).read_bytes())
    proc = cli("steam", "catalog", tmp_path / "c", "--source", ids, check=False)
    assert proc.returncode == 1 and "--names" in proc.stderr
    jpeg = steam_catalog / "1227690_library_600x900_2x.jpg"
    proc = cli("steam", "catalog", tmp_path / "c", "--source", jpeg, check=False)
    assert proc.returncode == 1 and "not a JSON text file" in proc.stderr


def test_catalogue_stays_consistent(cli, tmp_path):
    coll = tmp_path / "coll"
    src = tmp_path / "ids.json"
    src.write_text(json.dumps([10, 20]))
    cli("steam", "catalog", coll, "--source", src)
    db = sqlite3.connect(coll / "catalog.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
