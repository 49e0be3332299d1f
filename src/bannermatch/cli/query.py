"""``bannermatch match``, ``similar``, ``unique`` and ``search``: neighbours and queries."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.cli.options import (
    add_collection,
    add_limit,
    add_rerank,
    add_text_weight,
    rerank_of,
)
from bannermatch.cli.output import byte_size, emit, positive_int
from bannermatch.defaults import DEFAULT_K, TARGET_RECALL, UNIQUE_N


def cmd_match(args: argparse.Namespace) -> int:
    from bannermatch.query.match import match

    if args.text_weight:  # image and banner text together: stored beside (docs/ocr.md)
        from bannermatch.query.textweight import match_weighted

        weighted = match_weighted(
            args.collection, k=args.k, weight=args.text_weight, model=args.model,
            progress=not args.quiet,
        )  # fmt: skip
        return emit(args, weighted)
    result = match(
        args.collection,
        k=args.k,
        model=args.model,
        dup_threshold=args.dup_threshold,
        progress=not args.quiet,
        index=args.index,
        memory=args.memory,
        target_recall=args.target_recall,
        rerank=args.rerank,
    )
    return emit(args, result)


def cmd_similar(args: argparse.Namespace) -> int:
    from bannermatch.query.similar import similar

    result = similar(
        args.collection,
        args.query,
        k=args.k,
        model=args.model,
        engine=args.engine,
        device=args.device,
        cdn_url=args.cdn_url,
        steam_api_url=args.steam_api_url,
        rerank=rerank_of(args),
        mirror=args.mirror,
        flip=args.flip,
        text_weight=args.text_weight,
    )
    return emit(args, result)


def cmd_unique(args: argparse.Namespace) -> int:
    from bannermatch.query.similar import unique

    return emit(args, unique(args.collection, n=args.n, model=args.model))


def cmd_search(args: argparse.Namespace) -> int:
    from bannermatch.query.words import search  # banner text, names and image (CLIP or labels)

    result = search(args.collection, args.text, k=args.k, model=args.model, device=args.device)
    return emit(args, result)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_match(sub, common)
    _add_similar(sub, common)
    p = sub.add_parser("unique", parents=[common], help="items least like any other")
    add_collection(p)
    add_limit(p, "n", UNIQUE_N, "items to show, the least like any other first")
    p.set_defaults(handler=cmd_unique)

    p = sub.add_parser(
        "search",
        parents=[common],
        help="images matching a text: banner text (index --ocr), names, and CLIP (ImageNet "
        "labels for the embedded model)",
    )
    add_collection(p)
    p.add_argument("text", help='what to look for, e.g. "a knight fighting a dragon"')
    add_limit(p, "k", DEFAULT_K, "images to show", "-k")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (text tower)")
    p.set_defaults(handler=cmd_search)


def _add_match(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("match", parents=[common], help="top-k neighbours of every item")
    add_collection(p)
    p.add_argument("-k", type=positive_int, default=DEFAULT_K, help="neighbours per item")
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
        default=TARGET_RECALL,
        help="recall@k the search breadth (nprobe, efSearch) is tuned to",
    )
    add_rerank(p, "also store neighbours verified with local features (`index --local`)")
    add_text_weight(p)
    p.set_defaults(handler=cmd_match)


def _add_similar(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("similar", parents=[common], help="items most similar to a query")
    add_collection(p)
    p.add_argument(
        "query",
        help="an item id, a name (fuzzy), an image file, or a Steam app id outside the collection",
    )
    add_limit(p, "k", DEFAULT_K, "similar items to show", "-k")
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
    add_rerank(
        p, "verify the top K global candidates with local features (`index --local`)", auto=True
    )
    add_text_weight(p)
    for flag, how in (("mirror", "mirrored left to right"), ("flip", "flipped upside down")):
        p.add_argument(
            f"--{flag}",
            action="store_true",
            help=f"embed the query's image {how} (weakens the pull of the text on it)",
        )
    p.set_defaults(handler=cmd_similar)
