#!/usr/bin/env bash
# Toy end-to-end run on CPU (~2 minutes on 2 cores): data -> fairseq-preprocess -> fairseq-train
# (diffusion LM from random init) -> fairseq-generate (oracle length, 10 steps) -> BLEU.
# Usage: bash examples/reverse/run.sh [WORK_DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$ROOT/runs/reverse}
[ -x "$ROOT/.venv/bin/python" ] && export PATH="$ROOT/.venv/bin:$PATH"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONWARNINGS=ignore HF_HUB_OFFLINE=1
rm -rf "$WORK" && mkdir -p "$WORK"
set -x
python "$ROOT/examples/reverse/make_data.py" "$WORK/raw"
fairseq-preprocess --source-lang src --target-lang tgt --joined-dictionary --workers 2 \
  --trainpref "$WORK/raw/train" --validpref "$WORK/raw/valid" --testpref "$WORK/raw/test" \
  --destdir "$WORK/bin" > "$WORK/preprocess.log" 2>&1
fairseq-train "$WORK/bin" --user-dir "$ROOT/fairseq_dlm" --task diffusion_lm --arch xlmr_diffusion_tiny \
  --criterion diffusion_lm --optimizer torch_adamw --lr 3e-3 --lr-scheduler inverse_sqrt --warmup-updates 50 \
  --max-tokens 4000 --max-update 500 --dropout 0 --attention-dropout 0 --cpu --seed 1 \
  --disable-validation --no-epoch-checkpoints --save-dir "$WORK/ckpt" \
  --log-format simple --log-interval 100 2>&1 | grep -E "train_inner|done training"
fairseq-generate "$WORK/bin" --user-dir "$ROOT/fairseq_dlm" --task diffusion_lm --path "$WORK/ckpt/checkpoint_last.pt" \
  --gen-subset test --oracle-length --iter-decode-max-iter 10 --batch-size 64 --cpu --scoring sacrebleu \
  --results-path "$WORK/gen"
set +x
grep -E "^(S|T|H)-0\b" "$WORK/gen/generate-test.txt"
tail -1 "$WORK/gen/generate-test.txt"
