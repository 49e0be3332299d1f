"""``bannermatch report``, ``serve`` and ``demo``: pages, the web app, the whole job."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.cli.options import add_collection
from bannermatch.cli.output import emit, positive_int, say
from bannermatch.defaults import HOST, PORT, REPORT_MAX_GRIDS, REPORT_UNIQUE


def cmd_report(args: argparse.Namespace) -> int:
    from bannermatch.present.report import report

    result = report(
        args.collection,
        out=args.out,
        queries_file=args.queries,
        n_unique=args.n_unique,
        max_grids=args.max_grids,
        model=args.model,
        base_url=args.base_url,
        with_map=not args.no_map,
        progress=not args.quiet,
    )
    return emit(args, result)


def cmd_serve(args: argparse.Namespace) -> int:
    from bannermatch.present.server.run import serve

    serve(
        args.collection,
        host=args.host,
        port=args.port,
        model=args.model,
        rate_limit=args.rate_limit,
        cors=args.cors,
        access_log=args.access_log,
        announce=say,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bannermatch.present.demo import demo

    result = demo(args.out, steam=not args.offline, progress=not args.quiet)
    emit(args, result)
    if not args.no_serve:
        from bannermatch.present.server.run import serve

        serve(result.collection, host=args.host, port=args.port, announce=say)
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_report(sub, common)
    _add_serve(sub)
    p = sub.add_parser("demo", parents=[common], help="the main job on sample images, offline")
    p.add_argument("--out", default="bannermatch-demo", help="demo collection folder")
    p.add_argument("--offline", action="store_true", help="do not try Steam; use the sample photos")
    p.add_argument(
        "--no-serve", action="store_true", help="end after the report instead of serving the result"
    )
    p.add_argument("--host", default=HOST, help="where to serve")
    p.add_argument("--port", type=positive_int, default=PORT, help="port to serve on")
    p.set_defaults(handler=cmd_demo)


def _add_report(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help="HTML/Markdown/BBCode pages, grids, a map")
    add_collection(p)
    p.add_argument("--out", default=None, help="report folder (default: COLLECTION/report)")
    p.add_argument(
        "--queries", default=None, help="file of item ids, one per line (default: every item)"
    )
    p.add_argument("-n", "--unique", dest="n_unique", type=positive_int, default=REPORT_UNIQUE,
                   help="items on the unique page")  # fmt: skip
    p.add_argument("--max-grids", type=int, default=REPORT_MAX_GRIDS,
                   help="at most this many grid images of queries")  # fmt: skip
    p.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="where the report folder will be uploaded: every image link becomes absolute "
        "(for forum posts)",
    )
    p.add_argument("--no-map", action="store_true", help="leave out the map of the collection")
    p.set_defaults(handler=cmd_report)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="JSON API and web page over a collection")
    add_collection(p)
    p.add_argument("--host", default=HOST, help="listen address")
    p.add_argument("--port", type=positive_int, default=PORT, help="port")
    p.add_argument(
        "--rate-limit",
        default=None,
        metavar="N/min",
        help="per-client API requests, e.g. 120/min or 5/s; off: 0 "
        "(default: off on loopback, 120/min otherwise)",
    )
    p.add_argument(
        "--cors",
        nargs="+",
        default=[],
        metavar="ORIGIN",
        help="origins allowed to call the API from other sites ('*': any; default: none)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=cmd_serve)
