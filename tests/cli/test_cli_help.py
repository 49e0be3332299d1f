"""Every option of every command says what it does and its default; one name for "how many"."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from bannermatch.cli import build_parser
from bannermatch.cli.options import HelpFormatter


def _options(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings and not isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            yield " ".join(path), action


def test_every_option_has_help_with_its_default():
    missing = []
    for command, action in _options(build_parser()):
        text = HelpFormatter(command)._get_help_string(action) or ""
        flag = action.default in (None, False, [])
        if not text.strip() or (not flag and "default" not in text):
            missing.append(f"{command} {'/'.join(action.option_strings)}")
    assert missing == []


def test_how_many_results_is_one_option_name():
    for command in ("similar", "unique", "search"):
        flags = {f for c, a in _options(build_parser()) if c == command for f in a.option_strings}
        assert {"-n", "--limit"} <= flags, command
    parser = build_parser()
    assert parser.parse_args(["similar", "C", "q", "--limit", "3"]).k == 3
    assert parser.parse_args(["similar", "C", "q", "-k", "4"]).k == 4  # the earlier name
    assert parser.parse_args(["unique", "C", "--limit", "7"]).n == 7
