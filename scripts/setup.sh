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
    .venv/bin/python -m pip install -qq torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/python -m pip install -qq -e ".[${extras}]"
# OCR (the 'ocr' extra, which 'test' includes): rapidocr-onnxruntime without its own
# dependencies, whose opencv-python would be a second cv2 over opencv-python-headless
if [[ ",${extras}," == *",ocr,"* || ",${extras}," == *",test,"* ]]; then
    .venv/bin/python -m pip install -qq --no-deps "rapidocr-onnxruntime>=1.4.4,<1.5"
fi
# numba compiles the kernels a map runs (pynndescent's and umap-learn's: about 20 s) and
# keeps them in its cache beside their sources in .venv: compile them now, once for each
# version of the three, rather than in the first map that `demo`, `report` or a test draws
kernels=.venv/numba-kernels.txt
versions=$(.venv/bin/python -c 'from importlib.metadata import version as v
print(*(v(p) for p in ("umap-learn", "pynndescent", "numba")))')
if [ "$(cat "$kernels" 2>/dev/null)" != "$versions" ]; then
    .venv/bin/python -c "from bannermatch.present.maps import compile_kernels; compile_kernels()"
    echo "$versions" >"$kernels"
fi
# The browser tests drive Debian's Chromium with Playwright (never `playwright install`).
# Set-up installs that one package (no recommends) and only when doing so upgrades nothing
# already on the system; one line here, the details in .venv/chromium-install.log.
install_chromium() {
    local log=.venv/chromium-install.log plan
    command -v chromium >/dev/null && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "note: no chromium here and no root apt-get to install it: the browser tests will" \
            "skip (install Debian's chromium, or set BANNERMATCH_CHROMIUM=/path/to/chrome)" >&2
        return 0
    fi
    echo "installing Debian's chromium for the browser tests (details in $log)"
    if ! plan=$( { apt-get update -qq && apt-get install -s --no-install-recommends --no-upgrade chromium; } \
        2>>"$log"); then
        echo "note: apt-get cannot install chromium (see $log): the browser tests will skip" >&2
        return 0
    fi
    echo "$plan" >>"$log"
    # "Inst NAME [old version] (new version)": the package is installed already and would be upgraded
    if grep -q '^Inst [^ ]* \[' <<<"$plan"; then
        echo "note: installing chromium would upgrade system packages (see $log), so it is" \
            "left out and the browser tests will skip" >&2
        return 0
    fi
    apt-get install -y -q --no-install-recommends --no-upgrade chromium >>"$log" 2>&1 ||
        echo "note: installing chromium failed (see $log): the browser tests will skip" >&2
}
if [[ ",${extras}," == *",test,"* ]]; then
    install_chromium
fi
