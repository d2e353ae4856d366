#!/usr/bin/env bash
# GPU side (device tool, one call of at most 9 minutes): install the kit, rebuild the backbone from
# its compact form, run the four-system benchmark at full scale; results come back under $OUT.
set -euo pipefail
source .devkit/install.sh
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
python3 -c "import rouge_score" 2>/dev/null || echo "note: rouge_score missing (not needed here)"
python3 scripts/convert_backbone.py from-compact .gpu/e5.npz --out /tmp/e5
OUT=${OUT:-runs/gpu-out}; mkdir -p "$OUT"
python3 benchmarks/translation_quality.py --data .gpu/data --backbone /tmp/e5 --scale full \
  --minutes ${MINUTES:-1.5} --test-sets test --work /tmp/bench --json "$OUT/results.json" 2>&1 | tee "$OUT/benchmark.log"
(cd /tmp/bench && tar czf "$OUT/logs.tgz" *.log)  # one file: the device returns at most 8
