"""Options that several commands share, and the help format of every command."""

from __future__ import annotations

import argparse
from typing import Any

from bannermatch.cli.output import positive_int
from bannermatch.defaults import DEFAULT_MODEL, RERANK_K


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        quiet = action.default in (None, False, [], argparse.SUPPRESS)
        if quiet or not action.option_strings or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def formatted(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its subcommands' parsers with :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                formatted(sub)
    return parser


def add_collection(p: argparse.ArgumentParser) -> None:
    """The collection a command reads, and which of its models (``--model``)."""
    p.add_argument("collection")
    p.add_argument("--model", default=None, help="model key or preset (if several)")


def add_limit(p: argparse.ArgumentParser, dest: str, default: int, what: str, *alias: str) -> None:
    """How many results: ``-n``/``--limit`` on every command that lists results."""
    p.add_argument("-n", "--limit", *alias, dest=dest, type=positive_int, default=default,
                   metavar="N", help=what)  # fmt: skip


def add_mask_text(p: Any, what: str) -> None:
    """``--mask-text [blur|inpaint|fill]``: the art alone, the text OCR finds painted over."""
    p.add_argument("--mask-text", nargs="?", const="blur", choices=["blur", "inpaint", "fill"],
                   default=None, help=what)  # fmt: skip


def add_text_weight(p: Any) -> None:
    """``--text-weight W``: image and banner-text similarity together (``index --ocr``)."""
    p.add_argument(
        "--text-weight",
        type=float,
        default=0.0,
        metavar="W",
        help="rank by (1 - W) * image + W * banner-text similarity, 0 to 1 (the text "
        "`index --ocr` read; finds the same game under other art)",
    )


def add_rerank(p: argparse.ArgumentParser, what: str, *, auto: bool = False) -> None:
    """``--rerank [K]``: verification with the local features of ``index --local``; with
    ``auto``, on by default where the collection has them (``--no-rerank`` turns it off)."""
    if auto:
        what += f" (default: the top {RERANK_K} when the collection has local features)"
        p.add_argument("--no-rerank", action="store_true", help="the global ranking only")
    p.add_argument(
        "--rerank",
        type=positive_int,
        nargs="?",
        const=RERANK_K,
        default=None,
        metavar="K",
        help=f"{what} (K: {RERANK_K} if not given)",
    )


def add_model_args(p: argparse.ArgumentParser, several: bool = False, *, ray: bool = False) -> None:
    """The model options; with ``several``, --model, --fit, --strategy and --augment
    take one or more values (``eval --compare`` runs every combination); with ``ray``,
    ``--engine ray`` runs the embedding on a Ray cluster."""
    many: dict[str, Any] = {"nargs": "+"} if several else {}
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        **many,
        default=DEFAULT_MODEL,
        help="preset (see `bannermatch models`), timm:NAME, open_clip:ARCH/TAG or "
        "hub:OWNER/REPO:ENTRYPOINT",
    )
    _add_engine(g, ray)
    _add_preprocessing(g, many)


def _add_engine(g: Any, ray: bool) -> None:
    ray_engine = (
        "; ray: run the embedding as a Ray Data job, each actor on the auto engine "
        "(needs bannermatch[ray]; see docs/scaling.md)"
    )
    g.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "onnx", "torch", *(["ray"] if ray else [])],
        help="inference engine (auto: onnx on CPU, torch on GPU)" + (ray_engine if ray else ""),
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
        help="CPU engine precision, part of the model key: int8 (made from the ranges "
        "shipped for the model, else calibrated on the images indexed) or fp32; auto: int8 "
        "on the onnx engine for a model with shipped ranges (the default effnet-lite0), "
        "else fp32 (docs/performance.md: int8 vs fp32)",
    )


def _add_preprocessing(g: Any, many: dict[str, Any]) -> None:
    g.add_argument("--strategy", **many, default="cls",
                   choices=["cls", "cls+avg", "gem", "multiscale"],
                   help="feature strategy (see docs/models.md)")  # fmt: skip
    g.add_argument(
        "--fit",
        **many,
        choices=["crop", "squash", "pad"],
        default=None,
        help="how an image is fitted to the model's square input (default: the preset's; "
        "pad for effnet-lite0, else crop)",
    )
    g.add_argument("--augment", **many, default="none", choices=["none", "flip"],
                   help="flip: average the embeddings of an image and its mirror")  # fmt: skip
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


def rerank_of(args: argparse.Namespace) -> int | None:
    """The re-rank a query asks for: ``--rerank [K]``, none with ``--no-rerank``, else the
    default K when the collection has local features (verification costs ~10 ms CPU a
    query and lifts same-game recall@1 from 0.22 to 0.79 on the covers)."""
    if getattr(args, "no_rerank", False):
        return None
    if args.rerank is not None:
        return int(args.rerank)
    from bannermatch.verify import has_local

    return RERANK_K if has_local(args.collection) else None


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`add_model_args`'s options (less ``--model``)."""
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
