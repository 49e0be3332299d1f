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
