#!/usr/bin/env bash
# Set up bannermatch in a local virtual environment (.venv) with the given extras.
#   scripts/setup.sh            -> bannermatch with the demo extra
#   scripts/setup.sh test       -> bannermatch with what the tests need
# PyTorch is installed first and pinned, so pip does not pick another build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-demo}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
# The browser tests drive Debian's Chromium with Playwright (never `playwright install`).
if [[ ",${extras}," == *",test,"* ]]; then
    if [ "$(id -u)" = 0 ]; then
        command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
    elif ! command -v chromium >/dev/null; then
        echo "note: chromium is not installed and this is not root: the browser tests will skip" >&2
    fi
fi
