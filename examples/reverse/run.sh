#!/usr/bin/env bash
# Toy end-to-end run on CPU (~1 minute on 2 cores): data -> fairseq-preprocess -> fairseq-train
# (stage 1: diffusion LM from random init) -> fairseq-train (stage 2: length head on the frozen
# backbone) -> fairseq-generate with oracle length and with a predicted-length beam of 3 -> BLEU.
# Usage: [ATTENTION=prefix_lm] bash examples/reverse/run.sh [WORK_DIR]   (default attention: full)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$ROOT/runs/reverse}
ATTENTION=${ATTENTION:-full}
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
  --max-tokens 4000 --max-update 500 --dropout 0 --attention-dropout 0 --cpu --seed 1 --num-workers 0 \
  --disable-validation --no-epoch-checkpoints --save-dir "$WORK/ckpt" --attention-strategy "$ATTENTION" \
  --log-format simple --log-interval 100 2>&1 | grep -E "train_inner|done training"
fairseq-train "$WORK/bin" --user-dir "$ROOT/fairseq_dlm" --task diffusion_lm --arch xlmr_diffusion_tiny \
  --length-head --freeze-backbone --criterion diffusion_length --finetune-from-model "$WORK/ckpt/checkpoint_last.pt" \
  --optimizer torch_adamw --lr 1e-3 --weight-decay 0.01 --max-tokens 4000 --max-update 300 --dropout 0 \
  --attention-dropout 0 --cpu --seed 1 --num-workers 0 --no-epoch-checkpoints --save-dir "$WORK/ckpt_len" \
  --attention-strategy "$ATTENTION" \
  --log-format simple 2>&1 | grep -E "valid on 'valid' subset" | tail -1
fairseq-generate "$WORK/bin" --user-dir "$ROOT/fairseq_dlm" --task diffusion_lm --path "$WORK/ckpt/checkpoint_last.pt" \
  --gen-subset test --oracle-length --iter-decode-max-iter 10 --batch-size 64 --cpu --scoring sacrebleu \
  --results-path "$WORK/gen_oracle" 2> /dev/null
fairseq-generate "$WORK/bin" --user-dir "$ROOT/fairseq_dlm" --task diffusion_lm --path "$WORK/ckpt_len/checkpoint_last.pt" \
  --gen-subset test --iter-decode-with-beam 3 --iter-decode-max-iter 10 --batch-size 64 --cpu --scoring sacrebleu \
  --results-path "$WORK/gen_beam3" 2> /dev/null
set +x
grep -E "^(S|T|H)-0\b" "$WORK/gen_beam3/generate-test.txt"
echo "oracle length:          $(tail -1 "$WORK/gen_oracle/generate-test.txt")"
echo "predicted lengths, LB=3: $(tail -1 "$WORK/gen_beam3/generate-test.txt")"
