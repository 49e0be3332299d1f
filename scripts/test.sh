#!/usr/bin/env bash
# Set up (scripts/setup.sh test), lint, type-check (mypy), then run the whole test suite, slow tests included.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -m "slow or not slow" "$@"
