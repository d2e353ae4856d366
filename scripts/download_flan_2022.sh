#!/usr/bin/env bash
# The paper's scripts/download_flan_2022.sh: the FLAN 2022 shards of the mixture into data/flan_2022.
# See scripts/download_flan_2022.py --help.
set -euo pipefail
HERE="$(dirname "$0")"
PY="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" "$HERE/download_flan_2022.py" "$@"
