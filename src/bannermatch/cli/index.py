"""``bannermatch index``: embed images into a collection (and ``--local`` features)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from bannermatch.cli.options import add_mask_text, add_model_args, model_options
from bannermatch.cli.output import emit, positive_int, print_json
from bannermatch.defaults import BATCH_SIZE


def cmd_index(args: argparse.Namespace) -> int:
    reads_text = bool(args.ocr or args.names_from_ocr or args.mask_text)
    if reads_text:  # before embedding: a missing OCR extra is said at once
        from bannermatch.ocr.engine import require_ocr

        require_ocr()
    with _one_cluster(args):
        return _index_runs(args, reads_text)


def _one_cluster(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """``--mask-text --engine ray`` embeds twice (the plain rows, then the art-only ones):
    one cluster serves both runs, started by the first that has something to embed."""
    if not (args.mask_text and args.engine == "ray"):
        return contextlib.nullcontext()
    from bannermatch.embed.ray import shared_cluster

    return shared_cluster()


def _index_runs(args: argparse.Namespace, reads_text: bool) -> int:
    from bannermatch.embed.index import index

    options = {
        "names": args.names,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "progress": not args.quiet,
        "skip_flagged": args.skip_flagged,
        "address": args.address,
        "actors": args.actors,
        **model_options(args),
    }
    result = index(args.input, args.out, args.model, **options)
    if not args.json:
        for bad in result.bad:
            print(f"skipped {bad['source']}: {bad['reason']}", file=sys.stderr)
    if args.local:
        from bannermatch.verify.features import index_local

        index_local(args.out, workers=args.workers, progress=not args.quiet)  # logs bad items
    ocr = None
    if reads_text:
        from bannermatch.ocr.read import read_collection

        ocr = read_collection(
            args.out, workers=args.workers, progress=not args.quiet, name=args.names_from_ocr
        )
        if not args.json:
            print(ocr.summary(), file=sys.stderr)  # its bad items are logged as they come
    if args.mask_text:  # the art-only rows under their own key, beside the plain ones
        from bannermatch.embed.masked import MaskedIndexResult

        masked = index(args.input, args.out, args.model, text_mask=args.mask_text, **options)
        return _emit_index(args, MaskedIndexResult(result, masked), ocr)
    return _emit_index(args, result, ocr)


def _emit_index(args: argparse.Namespace, result: Any, ocr: Any) -> int:
    if args.json and ocr is not None:
        print_json(result.to_dict() | {"ocr": ocr.to_dict()})
        return 0
    return emit(args, result)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
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
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per batch")
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
    p.add_argument(
        "--ocr",
        action="store_true",
        help="also read the text on the images (OCR), for `search` by banner text "
        "(needs the 'ocr' extra; see docs/ocr.md)",
    )
    p.add_argument(
        "--names-from-ocr",
        action="store_true",
        help="name the items that have no name after the title on their banner (implies --ocr)",
    )
    add_mask_text(
        p,
        "also embed the art alone: the text OCR finds painted over (blur, the default; "
        "inpaint or fill), under its own model key (implies --ocr; docs/ocr.md)",
    )
    _add_ray_args(p)
    add_model_args(p, ray=True)
    p.set_defaults(handler=cmd_index)


def _add_ray_args(p: argparse.ArgumentParser) -> None:
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
