"""The ``bannermatch`` command line: a thin layer over the package's functions."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .cli_output import byte_size, emit, positive_int
from .errors import BannermatchError
from .steam.cli import add_steam_commands

Handler = Callable[[argparse.Namespace], int]


# commands -------------------------------------------------------------------


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "engine": args.engine,
        "device": args.device,
        "strategy": args.strategy,
        "augment": args.augment,
        "fit": args.fit,
        "resize_size": args.resize_size,
        "crop_size": args.crop_size,
        "keep_ratio": args.keep_ratio,
        "interpolation": args.interpolation,
        "draft": False if args.full_decode else None,
        "precision": args.precision,
    }


def cmd_index(args: argparse.Namespace) -> int:
    from .indexer import index

    result = index(
        args.input,
        args.out,
        args.model,
        names=args.names,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
        skip_flagged=args.skip_flagged,
        address=args.address,
        actors=args.actors,
        **_model_options(args),
    )
    if not args.json:
        for bad in result.bad:
            print(f"skipped {bad['source']}: {bad['reason']}", file=sys.stderr)
    if args.local:
        from .verify.features import index_local

        local = index_local(args.out, workers=args.workers, progress=not args.quiet)
        if not args.json:
            for item_id, reason in local.bad.items():
                print(f"no local features for {item_id}: {reason}", file=sys.stderr)
    return emit(args, result)


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit

    result = audit(
        args.collection,
        expect_size=args.expect_size,
        allow_modes=args.allow_mode,
        aspect_tolerance=args.aspect_tolerance,
        blank_tolerance=args.blank_tolerance,
        near_blank_std=args.near_blank_std,
        model=args.model,
        workers=args.workers,
        progress=not args.quiet,
    )
    return emit(args, result)


def cmd_match(args: argparse.Namespace) -> int:
    from .matching import match

    result = match(
        args.collection,
        k=args.k,
        model=args.model,
        dup_threshold=args.dup_threshold,
        progress=not args.quiet,
        index=args.index,
        memory=args.memory,
        target_recall=args.target_recall,
    )
    return emit(args, result)


def cmd_similar(args: argparse.Namespace) -> int:
    from .query import similar

    result = similar(
        args.collection,
        args.query,
        k=args.k,
        model=args.model,
        engine=args.engine,
        device=args.device,
        cdn_url=args.cdn_url,
        steam_api_url=args.steam_api_url,
        rerank=args.rerank,
    )
    return emit(args, result)


def cmd_unique(args: argparse.Namespace) -> int:
    from .query import unique

    result = unique(args.collection, n=args.n, model=args.model)
    return emit(args, result)


def cmd_search(args: argparse.Namespace) -> int:
    from .textsearch import search

    result = search(args.collection, args.text, k=args.k, model=args.model, device=args.device)
    return emit(args, result)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

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


def cmd_eval(args: argparse.Namespace) -> int:
    from .comparison import VARIANT_OPTIONS, compare, variants

    values = {k: v if isinstance(v, list) else [v] for k, v in _model_options(args).items()}
    values["model"] = args.model if isinstance(args.model, list) else [args.model]
    runs = variants(values["model"], values["fit"], values["strategy"], values["augment"])
    shared = {k: v[0] for k, v in values.items() if k not in VARIANT_OPTIONS}
    task = {
        "batch_size": args.batch_size,
        "progress": not args.quiet,
    }
    if args.compare:
        copies = {
            "alterations": args.alterations,
            "seed": args.seed,
            "keep_copies": args.keep,
            "distractors": args.distractors,
        }
        result = compare(
            args.images,
            runs,
            groups=args.groups,
            file_column=args.file_column,
            group_column=args.group_column,
            **(copies if args.copies else {}),
            **task,
            **shared,
        )
        return emit(args, result)
    if len(runs) > 1:
        raise BannermatchError(
            "several values of --model, --fit, --strategy or --augment need --compare"
        )
    options = {**shared, **runs[0]}
    if args.rerank and (args.copies or not args.groups):
        raise BannermatchError("--rerank works with --groups only for now (not --copies)")
    if args.copies:
        from .copydetect import evaluate_copies

        result = evaluate_copies(
            args.images,
            alterations=args.alterations,
            seed=args.seed,
            keep_copies=args.keep,
            distractors=args.distractors,
            **task,
            **options,
        )
        return emit(args, result)
    from .evaluation import evaluate

    result = evaluate(
        args.images,
        args.groups,
        file_column=args.file_column,
        group_column=args.group_column,
        rerank=args.rerank,
        **task,
        **options,
    )
    return emit(args, result)


def cmd_models(args: argparse.Namespace) -> int:
    from .models.listing import list_models

    return emit(args, list_models())


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.run import serve

    serve(
        args.collection,
        host=args.host,
        port=args.port,
        model=args.model,
        rate_limit=args.rate_limit,
        cors=args.cors,
        access_log=args.access_log,
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    result = demo(args.out, steam=not args.offline, progress=not args.quiet)
    emit(args, result)
    if not args.no_serve:
        from .server.run import serve

        serve(result.collection, host=args.host, port=args.port)
    return 0


# parser ---------------------------------------------------------------------


def _add_model_args(
    p: argparse.ArgumentParser, several: bool = False, *, ray: bool = False
) -> None:
    """The model options; with ``several``, --model, --fit, --strategy and --augment
    take one or more values (``eval --compare`` runs every combination); with ``ray``,
    ``--engine ray`` runs the embedding on a Ray cluster."""
    many: dict[str, Any] = {"nargs": "+"} if several else {}
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        **many,
        default="effnet-lite0",
        help="preset (see `bannermatch models`), timm:NAME, open_clip:ARCH/TAG or "
        "hub:OWNER/REPO:ENTRYPOINT (default: %(default)s)",
    )
    g.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "onnx", "torch", *(["ray"] if ray else [])],
        help="inference engine (auto: onnx on CPU, torch on GPU)"
        + (
            "; ray: run the embedding as a Ray Data job, each actor on the auto engine "
            "(needs bannermatch[ray]; see docs/scaling.md)"
            if ray
            else ""
        ),
    )
    g.add_argument(
        "--device",
        default="auto",
        help="auto (a GPU when there is one), cpu, cuda or cuda:N"
        + ("; with --engine ray, the actors' (auto: GPUs if the cluster has them)" if ray else ""),
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "int8"],
        help="CPU engine precision: int8 (calibrated on the images indexed, its own model "
        "key) or fp32; auto: fp32 for now (docs/performance.md: int8 vs fp32)",
    )
    g.add_argument(
        "--strategy",
        **many,
        default="cls",
        choices=["cls", "cls+avg", "gem", "multiscale"],
        help="feature strategy (default: cls; see docs/models.md)",
    )
    g.add_argument(
        "--fit",
        **many,
        choices=["crop", "squash", "pad"],
        default=None,
        help="how an image is fitted to the model's square input (default: the preset's; "
        "pad for effnet-lite0, else crop)",
    )
    g.add_argument(
        "--augment",
        **many,
        default="none",
        choices=["none", "flip"],
        help="flip: average the embeddings of each image and its mirror image",
    )
    g.add_argument("--resize-size", type=int, default=None, help="resize size before the crop")
    g.add_argument("--crop-size", type=int, default=None, help="the model's input size")
    g.add_argument(
        "--keep-ratio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--fit crop: resize the shorter side to --resize-size (default), or with "
        "--no-keep-ratio the whole image to a --resize-size square, before the centre crop",
    )
    g.add_argument("--interpolation", default=None, help="bicubic, bilinear, lanczos, ...")
    g.add_argument(
        "--full-decode",
        action="store_true",
        help="decode every pixel of large JPEGs (default: at the largest DCT scale, 1/2 to "
        "1/8, that keeps 1.5x the pixels the resize needs: much faster, nearly the same "
        "features)",
    )


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = action.default in (None, False, [], argparse.SUPPRESS)
        if quiet or not action.option_strings or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _add_limit(p: argparse.ArgumentParser, dest: str, default: int, what: str, *alias: str) -> None:
    """How many results: ``-n``/``--limit`` on every command that lists results."""
    p.add_argument("-n", "--limit", *alias, dest=dest, type=positive_int, default=default,
                   metavar="N", help=what)  # fmt: skip


def _add_rerank(p: argparse.ArgumentParser, what: str) -> None:
    """``--rerank [K]``: verification with the local features of ``index --local``."""
    p.add_argument(
        "--rerank",
        type=positive_int,
        nargs="?",
        const=100,
        default=None,
        metavar="K",
        help=f"{what} (K: 100 if not given; needs `index --local`)",
    )


def _formatted(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its subcommands' parsers with :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _formatted(sub)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bannermatch",
        description="Find images that look alike: Steam banners or any folder of pictures.",
    )
    parser.add_argument("--version", action="version", version=f"bannermatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser(
        "index", parents=[common], help="embed folders, lists of paths or tar shards"
    )
    p.add_argument(
        "input",
        nargs="+",
        help="folders of images, text files of image paths, webdataset .tar shards or "
        "collections, mixed; an image reached through two inputs is one item",
    )
    p.add_argument("--out", required=True, help="collection folder to create or update")
    p.add_argument(
        "--names",
        action="append",
        default=[],
        metavar="FILE",
        help="names and metadata of the images: a CSV or TSV with a header (a file/path/id "
        "column and a name/title column; other columns are kept as metadata) or JSON (a list "
        "of such objects, or {file: name}); repeat for several (default: none)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="decoding threads (with --engine ray: decoding tasks in flight)",
    )
    p.add_argument("--skip-flagged", action="store_true", help="leave out items flagged by audit")
    p.add_argument(
        "--local",
        action="store_true",
        help="also extract local features (ORB) for `--rerank` (see docs/verification.md)",
    )
    g = p.add_argument_group("distributed (--engine ray)")
    g.add_argument(
        "--address",
        default=None,
        help="Ray cluster to run on: HOST:PORT, ray://HOST:PORT, or local (a new one on "
        "this machine) (default: $RAY_ADDRESS, else the cluster `ray start` runs here, "
        "else a new local one)",
    )
    g.add_argument(
        "--actors",
        type=positive_int,
        default=None,
        help="embedding actors, one model each (default: one per GPU, else one per node)",
    )
    _add_model_args(p, ray=True)
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser(
        "audit", parents=[common], help="size / channels / blank / corrupt / duplicate report"
    )
    p.add_argument("collection")
    p.add_argument(
        "--expect-size",
        default=None,
        metavar="WxH",
        help="expected size (default: the most common)",
    )
    p.add_argument(
        "--allow-mode",
        action="append",
        default=None,
        metavar="MODE",
        help="colour modes not flagged, repeatable or comma-separated (default: RGB)",
    )
    p.add_argument(
        "--aspect-tolerance",
        type=float,
        default=None,
        help="relative width/height difference allowed (default: 0.02)",
    )
    p.add_argument(
        "--blank-tolerance",
        type=int,
        default=None,
        help="blank: every channel within this many levels (default: 4)",
    )
    p.add_argument(
        "--near-blank-std",
        type=float,
        default=None,
        help="near blank: standard deviation below this (default: 4; 0 turns it off)",
    )
    p.add_argument("--model", default=None, help="model key or preset for near-duplicates")
    p.add_argument("--workers", type=positive_int, default=None, help="decoding threads")
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("match", parents=[common], help="top-k neighbours of every item")
    p.add_argument("collection")
    p.add_argument("-k", type=positive_int, default=10, help="neighbours per item (default: 10)")
    p.add_argument("--model", default=None, help="model key or preset (if several)")
    p.add_argument(
        "--dup-threshold",
        type=float,
        default=None,
        help="cosine similarity for near-duplicate groups (default: the model's)",
    )
    g = p.add_argument_group("approximate index (large collections; see docs/scaling.md)")
    g.add_argument(
        "--index",
        default="exact",
        choices=["exact", "ivf", "hnsw"],
        help="exact (default): every pair scored; ivf: faiss inverted file (IVF-Flat, or "
        "IVF-PQ when the rows do not fit --memory); hnsw: faiss HNSW graph. The index is "
        "kept for serve, its recall against exact is measured on a sample",
    )
    g.add_argument(
        "--memory",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="memory the approximate index may take, e.g. 8G (default: half of what is free)",
    )
    g.add_argument(
        "--target-recall",
        type=float,
        default=0.95,
        help="recall@k the search breadth (nprobe, efSearch) is tuned to (default: 0.95)",
    )
    p.set_defaults(handler=cmd_match)

    p = sub.add_parser("similar", parents=[common], help="items most similar to a query")
    p.add_argument("collection")
    p.add_argument(
        "query",
        help="an item id, a name (fuzzy), an image file, or a Steam app id outside the collection",
    )
    _add_limit(p, "k", 10, "similar items to show", "-k")
    p.add_argument("--model", default=None, help="model key or preset (if several)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "onnx", "torch"],
        help="engine for an image query (auto: onnx on CPU, torch on GPU)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--cdn-url",
        default=None,
        help="Steam CDN for app ids outside the collection "
        "(default: $BANNERMATCH_STEAM_CDN or Steam's)",
    )
    p.add_argument(
        "--steam-api-url",
        default=None,
        help="Steam store API, asked where an app's current banner is "
        "(default: $BANNERMATCH_STEAM_API_URL or Steam's)",
    )
    _add_rerank(p, "verify the top K global candidates with local features")
    p.set_defaults(handler=cmd_similar)

    p = sub.add_parser("unique", parents=[common], help="items least like any other")
    p.add_argument("collection")
    _add_limit(p, "n", 250, "items to show, the least like any other first")
    p.add_argument("--model", default=None, help="model key or preset (if several)")
    p.set_defaults(handler=cmd_unique)

    p = sub.add_parser(
        "search",
        parents=[common],
        help="images matching a text (CLIP; ImageNet labels for the embedded model)",
    )
    p.add_argument("collection")
    p.add_argument("text", help='what to look for, e.g. "a knight fighting a dragon"')
    _add_limit(p, "k", 10, "images to show", "-k")
    p.add_argument("--model", default=None, help="model key or preset (if several)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (text tower)")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("report", parents=[common], help="HTML/Markdown/BBCode pages, grids, a map")
    p.add_argument("collection")
    p.add_argument("--out", default=None, help="report folder (default: COLLECTION/report)")
    p.add_argument(
        "--queries", default=None, help="file of item ids, one per line (default: every item)"
    )
    p.add_argument(
        "-n",
        "--unique",
        dest="n_unique",
        type=positive_int,
        default=100,
        help="items on the unique page (default: 100)",
    )
    p.add_argument(
        "--max-grids",
        type=int,
        default=100,
        help="at most this many grid images of queries (default: 100)",
    )
    p.add_argument("--model", default=None, help="model key or preset (if several)")
    p.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="where the report folder will be uploaded: every image link becomes absolute "
        "(for forum posts)",
    )
    p.add_argument("--no-map", action="store_true", help="leave out the map of the collection")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser(
        "eval", parents=[common], help="retrieval quality: same-group images, or copy detection"
    )
    p.add_argument("images", help="folder of images")
    task = p.add_mutually_exclusive_group(required=True)
    task.add_argument("--groups", help="TSV file mapping files to groups: same-group retrieval")
    task.add_argument(
        "--copies",
        action="store_true",
        help="copy detection: alter every image; each copy must retrieve its original",
    )
    p.add_argument("--file-column", default="file", help="--groups: the column of file names")
    p.add_argument("--group-column", default="group", help="--groups: the column of groups")
    p.add_argument(
        "--alterations",
        default=None,
        help="--copies: comma-separated, from crop,resize,jpeg,flip,jitter,text,mix (default: all)",
    )
    _add_rerank(p, "--groups: re-rank the top K with local features")
    p.add_argument("--seed", type=int, default=0, help="--copies: seed of the alterations")
    p.add_argument("--keep", default=None, metavar="DIR", help="--copies: keep the copies in DIR")
    p.add_argument(
        "--distractors",
        default=None,
        metavar="DIR",
        help="--copies: other images added to the database (never an original)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="run every combination of the --model, --fit, --strategy and --augment values "
        "given and print one table",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    _add_model_args(p, several=True)
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser(
        "models", parents=[common], help="model presets: dimension, input size, cached weights"
    )
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("serve", help="JSON API and web page over a collection")
    p.add_argument("collection")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--port", type=positive_int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--model", default=None, help="model key or preset (if several)")
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

    p = sub.add_parser("demo", parents=[common], help="the main job on sample images, offline")
    p.add_argument("--out", default="bannermatch-demo", help="demo collection folder")
    p.add_argument("--offline", action="store_true", help="do not try Steam; use the sample photos")
    p.add_argument(
        "--no-serve", action="store_true", help="end after the report instead of serving the result"
    )
    p.add_argument("--host", default="127.0.0.1", help="where to serve (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default: 8000)")
    p.set_defaults(handler=cmd_demo)
    add_steam_commands(sub, common)
    return _formatted(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BannermatchError as exc:
        print(f"bannermatch: error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # damage, or a full disk, found past opening
        from .catalog import damaged

        print(
            f"bannermatch: error: {damaged('the collection catalog.sqlite', exc)}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("bannermatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # an impossible or unwritable path, a full disk, a permission
        print(f"bannermatch: error: {os_error(exc)}", file=sys.stderr)
        return 1


def os_error(exc: OSError) -> str:
    """One line for an operating-system error, naming the path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    target = f" -> {exc.filename2}" if exc.filename2 else ""
    return f"{exc.filename}{target}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
