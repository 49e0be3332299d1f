"""``bannermatch audit``, ``eval`` and ``models``: the collection's health, retrieval
quality, and the model presets."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.cli.options import (
    add_mask_text,
    add_model_args,
    add_rerank,
    add_text_weight,
    model_options,
)
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

    text = _text_eval(args)  # --text-bias, --mask-text, ... (docs/evaluation.md)

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
    model = {**shared, **runs[0]}
    options = {**task, **model}
    if args.copies:
        from bannermatch.evaluation.copies import evaluate_copies

        copies = evaluate_copies(args.images, **_copies(args), **options)
        if text is not None:  # --text-bias: the synthetic title check (evaluation.titles)
            from bannermatch.evaluation.titles import check_for

            copies.titles = check_for(args.images, model, text.mask)
        return emit(args, copies)
    from bannermatch.evaluation.groups import evaluate

    result = evaluate(
        args.images,
        args.groups,
        file_column=args.file_column,
        group_column=args.group_column,
        text=text,
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
    _add_text_args(p)
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


def _add_text_args(parser: argparse.ArgumentParser) -> None:
    """``eval``'s options for the banners' text."""
    g = parser.add_argument_group("banner text (--groups; needs the 'ocr' extra, docs/ocr.md)")
    g.add_argument(
        "--text-bias",
        action="store_true",
        help="also measure how much the top-5 neighbours follow the text on the banners",
    )
    add_mask_text(g, "evaluate the art-only embeddings: the text OCR finds painted over")
    g.add_argument(
        "--query-transform",
        choices=["mirror", "flip", "mirror+flip"],
        help="embed the queries mirrored and/or flipped (the database as it is)",
    )
    add_text_weight(g)
    g.add_argument(
        "--ocr-from",
        metavar="COLLECTION",
        help="take the text a collection's `index --ocr` stored (matched by SHA-256)",
    )


def _text_eval(args: argparse.Namespace) -> Any:
    """The :class:`TextEval` the parsed arguments ask for, None when none does."""
    from bannermatch.evaluation.text import TextEval

    options = TextEval(
        bias=args.text_bias,
        mask=args.mask_text,
        transform=args.query_transform,
        text_weight=args.text_weight,
        ocr_from=args.ocr_from,
    )
    if not options.active:
        return None
    if args.copies and not (options.transform or options.text_weight or args.compare):
        return options  # --copies --text-bias [--mask-text M]: the synthetic title check
    if args.copies or args.compare or not args.groups:
        raise BannermatchError(
            "--query-transform and --text-weight go with --groups, and no text option "
            "with --compare (--copies takes --text-bias and --mask-text)"
        )
    return options
