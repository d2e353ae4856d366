#!/usr/bin/env bash
# The paper's scripts/download_ckpts.sh: the released Flan-XLM-R models, downloaded and converted into plugin checkpoints.
# See scripts/download_ckpts.py --help.
set -euo pipefail
HERE="$(dirname "$0")"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/download_ckpts.py" "$@"
