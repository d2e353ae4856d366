#!/usr/bin/env bash
# GPU side (device tool, one call of at most 9 minutes): install the kit, rebuild the backbone from
# its compact form, run the four-system benchmark at full scale; results come back under $OUT.
#   CPU dry run of this very script (no kit, the project's venv, short budget):
#   DEVKIT=none PY=.venv/bin/python MINUTES=0.5 TEST_SETS=test1 OUT=runs/gpu-dry bash benchmarks/gpu/run.sh
set -euo pipefail
PY=${PY:-python3}
TMP=${TMPDIR:-/tmp}
if [ "${DEVKIT:-}" != none ]; then source .devkit/install.sh; fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu-out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
# the logs come back as one file (the device returns at most 8), also when the run fails or is cut short
trap '(cd "$TMP"/bench 2>/dev/null && tar czf "$OUT/logs.tgz" ./*.log) || true' EXIT
trap 'exit 143' TERM INT
"$PY" -c "import torch; print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU')"
"$PY" scripts/convert_backbone.py from-compact .gpu/e5.npz --out "$TMP"/e5
"$PY" benchmarks/translation_quality.py --data .gpu/data --backbone "$TMP"/e5 --scale full \
  --minutes "${MINUTES:-1.4}" --test-sets "${TEST_SETS:-test}" --work "$TMP"/bench --json "$OUT/results.json" 2>&1 | tee "$OUT/benchmark.log"
