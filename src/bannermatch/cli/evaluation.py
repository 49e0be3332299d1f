"""``bannermatch audit``, ``eval`` and ``models``: the collection's health, retrieval
quality, and the model presets."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.cli.options import add_model_args, add_rerank, model_options
from bannermatch.cli.output import emit, positive_int
from bannermatch.defaults import BATCH_SIZE
from bannermatch.errors import BannermatchError


def cmd_audit(args: argparse.Namespace) -> int:
    from bannermatch.evaluation.audit import audit

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


def cmd_eval(args: argparse.Namespace) -> int:
    from bannermatch.evaluation.compare import VARIANT_OPTIONS, variants

    values = {k: v if isinstance(v, list) else [v] for k, v in model_options(args).items()}
    values["model"] = args.model if isinstance(args.model, list) else [args.model]
    runs = variants(values["model"], values["fit"], values["strategy"], values["augment"])
    shared = {k: v[0] for k, v in values.items() if k not in VARIANT_OPTIONS}
    task = {"batch_size": args.batch_size, "progress": not args.quiet, "rerank": args.rerank}
    if args.compare:
        return emit(args, _compare(args, runs, {**task, **shared}))
    if len(runs) > 1:
        raise BannermatchError(
            "several values of --model, --fit, --strategy or --augment need --compare"
        )
    options = {**task, **shared, **runs[0]}
    if args.copies:
        from bannermatch.evaluation.copies import evaluate_copies

        return emit(args, evaluate_copies(args.images, **_copies(args), **options))
    from bannermatch.evaluation.groups import evaluate

    result = evaluate(
        args.images,
        args.groups,
        file_column=args.file_column,
        group_column=args.group_column,
        **options,
    )
    return emit(args, result)


def _copies(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "alterations": args.alterations,
        "seed": args.seed,
        "keep_copies": args.keep,
        "distractors": args.distractors,
    }


def _compare(args: argparse.Namespace, runs: list[dict[str, Any]], options: dict[str, Any]) -> Any:
    from bannermatch.evaluation.compare import compare

    return compare(
        args.images,
        runs,
        groups=args.groups,
        file_column=args.file_column,
        group_column=args.group_column,
        **(_copies(args) if args.copies else {}),
        **options,
    )


def cmd_models(args: argparse.Namespace) -> int:
    from bannermatch.embed.models.listing import list_models

    return emit(args, list_models())


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _add_audit(sub, common)
    _add_eval(sub, common)
    p = sub.add_parser(
        "models", parents=[common], help="model presets: dimension, input size, cached weights"
    )
    p.set_defaults(handler=cmd_models)


def _add_audit(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "audit", parents=[common], help="size / channels / blank / corrupt / duplicate report"
    )
    p.add_argument("collection")
    p.add_argument("--expect-size", default=None, metavar="WxH",
                   help="expected size (default: the most common)")  # fmt: skip
    p.add_argument(
        "--allow-mode",
        action="append",
        default=None,
        metavar="MODE",
        help="colour modes not flagged, repeatable or comma-separated (default: RGB)",
    )
    p.add_argument("--aspect-tolerance", type=float, default=None,
                   help="relative width/height difference allowed (default: 0.02)")  # fmt: skip
    p.add_argument("--blank-tolerance", type=int, default=None,
                   help="blank: every channel within this many levels (default: 4)")  # fmt: skip
    p.add_argument(
        "--near-blank-std",
        type=float,
        default=None,
        help="near blank: standard deviation below this (default: 4; 0 turns it off)",
    )
    p.add_argument("--model", default=None, help="model key or preset for near-duplicates")
    p.add_argument("--workers", type=positive_int, default=None, help="decoding threads")
    p.set_defaults(handler=cmd_audit)


def _add_eval(sub: Any, common: argparse.ArgumentParser) -> None:
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
    add_rerank(p, "also verify the top K (and local-feature candidates): both figures shown")
    _add_copies_args(p)
    p.add_argument(
        "--compare",
        action="store_true",
        help="run every combination of the --model, --fit, --strategy and --augment values "
        "given and print one table",
    )
    p.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per batch")
    add_model_args(p, several=True)
    p.set_defaults(handler=cmd_eval)


def _add_copies_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alterations",
        default=None,
        help="--copies: comma-separated, from crop,resize,jpeg,flip,jitter,text,mix (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="--copies: seed of the alterations")
    p.add_argument("--keep", default=None, metavar="DIR", help="--copies: keep the copies in DIR")
    p.add_argument(
        "--distractors",
        default=None,
        metavar="DIR",
        help="--copies: other images added to the database (never an original)",
    )
