"""What every sub-command shares: printing results and checking numeric arguments."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=1, ensure_ascii=False))


def say(message: str) -> None:
    """One line on stderr in the CLI's voice: ``bannermatch: MESSAGE``."""
    print(f"bannermatch: {message}", file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, result: Any) -> int:
    """Print a command's result: ``result.to_dict()`` as JSON with ``--json``, else
    ``result.summary()``. Returns the exit code 0."""
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.summary(), flush=True)
    return 0


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def byte_size(text: str) -> int:
    """An argparse type: a size in bytes, with an optional K, M, G or T suffix (powers of
    1024), e.g. ``512M`` or ``8G``."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (t[:-1], t[-1]) if t[-1:] in units else (t, "")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 8G)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return int(value)


class _LineFormatter(logging.Formatter):
    """``bannermatch: MESSAGE``, with ``warning:`` before warnings: the CLI's own voice."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"bannermatch: {level}{record.getMessage()}"


def show_logs(quiet: bool = False) -> None:
    """Print the library's log records (``bannermatch.*``) on stderr, one line each: INFO
    and up, warnings only when ``quiet``. The library itself never prints."""
    root = logging.getLogger("bannermatch")
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    if any(getattr(h, "bannermatch_cli", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    handler.bannermatch_cli = True  # type: ignore[attr-defined]  # marks the CLI's handler
    root.addHandler(handler)
    root.propagate = False
