#!/usr/bin/env bash
# Set up (scripts/setup.sh test), lint, type-check (mypy), then run the whole test suite,
# slow tests included. Extra arguments go to pytest, e.g. scripts/test.sh -x -k steam
#
#   scripts/test.sh --fast    everyday work: lint, then the quick unit tests only (no CLI
#                             subprocesses, servers, browsers or collections; no set-up)
set -euo pipefail
cd "$(dirname "$0")/.."
# bytecode cached (in __pycache__ folders of the checkout and .venv, both ignored by git):
# with PYTHONDONTWRITEBYTECODE set, as on our machines, every pytest process rewrote the
# asserts of its plugins' packages again (hypothesis, anyio: 3 s a process)
unset PYTHONDONTWRITEBYTECODE
if [[ "${1:-}" == "--fast" ]]; then
    shift
    .venv/bin/ruff check src tests bench
    exec .venv/bin/python -m pytest -q -m "not slow and not integration" "$@"
fi
scripts/setup.sh test
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/python -m mypy
# one worker a core, each test file on one worker (module fixtures are built once), in
# the order collected (conftest: the files holding slow tests first), not by test count
exec .venv/bin/python -m pytest -m "slow or not slow" -n auto --dist loadfile --no-loadscope-reorder "$@"
