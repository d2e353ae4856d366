#!/usr/bin/env bash
# Prepare a prompted translation data folder; runs scripts/prepare_translation.py (see --help) with
# the project's .venv python when present.  Usage:
#   bash scripts/prepare_translation.sh --raw-dir ../shared/data/multi30k --src de --tgt en --spm-model XLMR_DIR/sentencepiece.bpe.model
set -euo pipefail
HERE="$(dirname "$0")"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/prepare_translation.py" "$@"
