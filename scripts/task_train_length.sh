#!/usr/bin/env bash
# The paper's scripts/task_train_length.sh, same flags (--flag=value); see --help.
# Prints the fairseq command it runs (scripts/paper_script.py, fairseq_dlm/recipes/).
set -euo pipefail
HERE="$(dirname "$0")"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/paper_script.py" task_train_length "$@"
