"""``bannermatch steam catalog`` and ``bannermatch steam download``: argument parsing only."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.acquire.steam import defaults
from bannermatch.acquire.steam.endpoints import (
    API_KEY_ENV,
    ASSETS,
    LANGUAGES,
    STEAM_API,
    STEAM_CDN,
    STEAMSPY,
)
from bannermatch.cli.output import emit, positive_int


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _size(text: str) -> tuple[int, int]:
    from bannermatch.errors import BannermatchError
    from bannermatch.images import parse_size

    try:
        return parse_size(text)
    except BannermatchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, ``"2w"`` or plain seconds -> seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0) if value else 0
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"wants a duration such as 7d, 12h or 30m, not {text!r}")
    return seconds


def cmd_catalog(args: argparse.Namespace) -> int:
    from bannermatch.acquire.steam.catalog import fetch_catalog

    result = fetch_catalog(
        args.collection,
        args.source,
        names=args.names,
        top=args.top,
        top_file=args.top_file,
        steamspy_url=args.steamspy_url,
        api_url=args.steam_api_url,
        steamspy_interval=args.steamspy_interval,
        max_pages=args.max_pages,
        page_size=args.page_size,
        refresh=args.refresh,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
    )
    return emit(args, result)


def cmd_download(args: argparse.Namespace) -> int:
    from bannermatch.acquire.steam.download import download

    result = download(
        args.collection,
        asset=args.asset,
        language=args.language,
        cdn_url=args.cdn_url,
        api_url=args.steam_api_url,
        templates=args.url_template,
        concurrency=args.concurrency,
        rate=args.rate,
        retries=args.retries,
        backoff=args.backoff,
        max_retry_after=args.max_retry_after,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        resize=args.resize,
        only=args.only,
        retry_missing=args.retry_missing,
        force=args.force,
        refresh_after=args.refresh_after,
        limit=args.limit,
        progress=not args.quiet,
    )
    return emit(args, result)


def _add_catalog(steam: Any, common: argparse.ArgumentParser) -> None:
    p = steam.add_parser(
        "catalog",
        parents=[common],
        help="Steam app ids and names into COLLECTION/catalog.sqlite",
        description="Add Steam apps to a collection's catalogue as pending items (known items "
        "keep their status and file; their names are updated) and store the query set: the "
        "popular games plus the games of the original notebooks.",
    )
    p.add_argument("collection", help="collection folder (created if needed)")
    p.add_argument(
        "--source",
        default="auto",
        metavar="auto|steamspy|webapi|FILE",
        help=f"auto (default): the Steam Web API's IStoreService/GetAppList when {API_KEY_ENV} "
        "is set, else SteamSpy `request=all` pages; or a snapshot file: SteamSpy JSON, a "
        "GetAppList reply, or a JSON list of app ids",
    )
    p.add_argument(
        "--names", metavar="FILE", help="JSON list of names aligned with a --source list of ids"
    )
    p.add_argument(
        "--top",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the popular games to the query set: SteamSpy top100in2weeks, or --top-file "
        "(default: on)",
    )
    p.add_argument("--top-file", metavar="FILE", help="a top-100 snapshot (JSON list of app ids)")
    _add_catalog_sources(p)
    p.add_argument(
        "--refresh",
        action="store_true",
        help="read the listing again from its first page (a finished one is not reread)",
    )
    p.add_argument("--timeout", type=_seconds, default=defaults.CATALOG_TIMEOUT,
                   help="seconds per request")  # fmt: skip
    p.add_argument("--retries", type=_non_negative_int, default=defaults.CATALOG_RETRIES,
                   help="retries per request")  # fmt: skip
    p.add_argument("--backoff", type=_seconds, default=defaults.CATALOG_BACKOFF,
                   help="first retry delay in seconds")  # fmt: skip
    p.set_defaults(handler=cmd_catalog)


def _add_catalog_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steamspy-url",
        default=None,
        help=f"SteamSpy base URL (default: ${STEAMSPY.env} or {STEAMSPY.default})",
    )
    p.add_argument(
        "--steam-api-url",
        default=None,
        help=f"Steam Web API base URL (default: ${STEAM_API.env} or {STEAM_API.default})",
    )
    p.add_argument(
        "--steamspy-interval",
        type=_seconds,
        default=defaults.STEAMSPY_ALL_INTERVAL,
        metavar="S",
        help="seconds between SteamSpy `request=all` pages, across runs too (SteamSpy's limit)",
    )
    p.add_argument(
        "--max-pages", type=positive_int, default=None, help="fetch at most N pages in this run"
    )
    p.add_argument("--page-size", type=positive_int, default=defaults.WEBAPI_PAGE_SIZE,
                   help="Web API apps per page (max_results)")  # fmt: skip


def _add_download(steam: Any, common: argparse.ArgumentParser) -> None:
    p = steam.add_parser(
        "download",
        parents=[common],
        help="banners of the catalogued games, concurrent and resumable",
        description="Download the banner of every catalogued game that is pending, bad or "
        "unfinished into COLLECTION/images/<appid>.<ext> (ok games whose file is intact are "
        "skipped; missing ones too unless --retry-missing). Rerun to resume.",
    )
    p.add_argument("collection", help="collection folder with a catalogue")
    _add_art(p)
    _add_transfer(p)
    p.add_argument(
        "--resize",
        type=_size,
        default=None,
        metavar="WxH",
        help="shrink images to fit within WxH, keeping their ratio",
    )
    p.add_argument("--only", nargs="+", metavar="APPID", help="download just these games")
    p.add_argument("--retry-missing", action="store_true", help="try missing games again")
    p.add_argument("--force", action="store_true", help="download finished games again too")
    p.add_argument("--limit", type=positive_int, default=None, help="at most N games this run")
    p.set_defaults(handler=cmd_download)


def _add_art(p: argparse.ArgumentParser) -> None:
    """Which art, from where, and how fresh."""
    p.add_argument(
        "--asset",
        choices=list(ASSETS),
        default=defaults.ASSET,
        help="which art, as the store API names it: library (the vertical banner, "
        "library_capsule_2x else library_capsule), hero, header, capsule, logo",
    )
    p.add_argument(
        "--language",
        choices=LANGUAGES,
        default=defaults.LANGUAGE,
        metavar="LANGUAGE",
        help="localised art where Steam has it, else the English art (Steam's language names: "
        "french, german, japanese, schinese, ...)",
    )
    p.add_argument(
        "--cdn-url",
        default=None,
        help="CDN base URL, under which /store_item_assets/... and the legacy /steam/apps/... "
        f"are found (default: ${STEAM_CDN.env} or {STEAM_CDN.default})",
    )
    p.add_argument(
        "--steam-api-url",
        default=None,
        help="store API base URL, asked where each app's art is "
        f"(default: ${STEAM_API.env} or {STEAM_API.default})",
    )
    p.add_argument(
        "--refresh-after",
        type=_duration,
        default=defaults.REFRESH_AFTER,
        metavar="DURATION",
        help="ask the store API again about games already downloaded after this long, and "
        "download those whose art changed: 7d, 12h, 30m, 0 for every run "
        f"(default: {defaults.REFRESH_AFTER / 86400:g}d)",
    )
    p.add_argument(
        "--url-template",
        action="append",
        default=None,
        metavar="TEMPLATE",
        help="legacy URL to try instead of asking the store API, with {cdn} and {appid}; "
        "repeat for fallbacks",
    )


def _add_transfer(p: argparse.ArgumentParser) -> None:
    """Concurrency, rate, retries and timeouts."""
    p.add_argument("--concurrency", type=positive_int, default=defaults.CONCURRENCY,
                   help="requests in flight")  # fmt: skip
    p.add_argument("--rate", type=_seconds, default=defaults.RATE,
                   help="requests per second per host, 0 for no limit")  # fmt: skip
    p.add_argument("--retries", type=_non_negative_int, default=defaults.RETRIES,
                   help="retries per game")  # fmt: skip
    p.add_argument("--backoff", type=_seconds, default=defaults.BACKOFF,
                   help="first retry delay in seconds")  # fmt: skip
    p.add_argument("--max-retry-after", type=_seconds, default=defaults.MAX_RETRY_AFTER,
                   help="longest Retry-After honoured, in seconds")  # fmt: skip
    p.add_argument("--timeout", type=_seconds, default=defaults.TIMEOUT,
                   help="seconds without data")  # fmt: skip
    p.add_argument("--connect-timeout", type=_seconds, default=defaults.CONNECT_TIMEOUT,
                   help="seconds to connect; an unreachable CDN fails fast")  # fmt: skip


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``steam catalog`` and ``steam download`` to the ``bannermatch`` parser."""
    steam = sub.add_parser(
        "steam",
        help="Steam app catalogue and banner downloads",
        description="Build a collection of Steam games: `catalog` lists the apps, "
        "`download` fetches their banners.",
    )
    steam_sub = steam.add_subparsers(dest="steam_command", metavar="STEAM_COMMAND", required=True)
    _add_catalog(steam_sub, common)
    _add_download(steam_sub, common)
