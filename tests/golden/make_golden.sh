#!/usr/bin/env bash
# Rebuild the golden decoding fixture of tests/cli/test_golden_decoding.py (run it only when decoding is
# *meant* to change, and say so in the commit): trains the toy models with examples/reverse/run.sh
# (full and prefix-LM attention), keeps the length stages' weights (no optimizer state), the dictionaries and the
# binarized test split, and decodes every configuration of tests/golden/decode.py into hp.txt.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for ATTENTION in full prefix_lm; do
  ATTENTION=$ATTENTION bash "$ROOT/examples/reverse/run.sh" "$WORK/$ATTENTION" > "$WORK/$ATTENTION.log"
done
rm -rf "$HERE/data" "$HERE/models" && mkdir -p "$HERE/data" "$HERE/models"
cp "$WORK"/full/bin/dict.src.txt "$WORK"/full/bin/dict.tgt.txt "$WORK"/full/bin/test.src-tgt.* "$HERE/data/"
"$PY" - "$WORK" "$HERE/models" <<'PY'
import sys
import torch
work, models = sys.argv[1:]
for attention in ("full", "prefix_lm"):  # the length stage's checkpoint: stage 1's backbone, bit for bit, + the head
    state = torch.load(f"{work}/{attention}/ckpt_len/checkpoint_last.pt", weights_only=False)
    state["cfg"]["task"]["data"] = "."  # the fixture's data folder is passed on the command line
    kept = {k: state[k] for k in ("args", "cfg", "model", "criterion", "optimizer_history")}
    kept["extra_state"] = {}
    torch.save(kept, f"{models}/{attention}.pt")
PY
"$PY" "$HERE/decode.py" "$WORK/decoded"
cp "$WORK/decoded/hp.txt" "$HERE/hp.txt"
echo "wrote $HERE/hp.txt ($(grep -c '^== ' "$HERE/hp.txt") configurations)"
