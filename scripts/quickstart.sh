#!/usr/bin/env bash
# README's main job: see scripts/quickstart.py --help.  Usage: bash scripts/quickstart.sh [flags]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"; [ -x "$PY" ] || PY=python3
export PATH="$(dirname "$PY"):$PATH" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$PY" "$ROOT/scripts/quickstart.py" "$@"
