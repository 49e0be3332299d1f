"""The ``bannermatch`` command line: a thin layer over the package's functions.

One module per command group parses its options and calls the library: ``index``,
``query`` (match, similar, unique, search), ``evaluation`` (audit, eval, models),
``present`` (report, serve, demo) and ``steam``. Only this package prints.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence

from bannermatch import __version__
from bannermatch.cli import evaluation, index, present, query, steam
from bannermatch.cli.options import formatted
from bannermatch.cli.output import show_logs
from bannermatch.errors import BannermatchError

COMMAND_GROUPS = (index, query, evaluation, present, steam)


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
    for group in COMMAND_GROUPS:
        group.add_commands(sub, common)
    return formatted(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    show_logs(quiet=getattr(args, "quiet", False) or getattr(args, "json", False))
    try:
        return int(args.handler(args) or 0)
    except BannermatchError as exc:
        print(f"bannermatch: error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # damage, or a full disk, found past opening
        from bannermatch.store.catalog import damaged

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
