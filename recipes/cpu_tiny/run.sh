#!/usr/bin/env bash
# The CPU recipe end to end on the embedded corpus: the inews train and dev articles packed as two sources (with one
# vocab), mixed 70/30, 64 then 128 tokens. STEPS=... changes the length (default 600, a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${RECIPE_DIR:-runs/cpu_tiny}
mkdir -p "$OUT"
[ -f "$OUT/tokenizer/tokenizer.json" ] || \
  python -m data_tools build-vocab --format inews --inews_splits train,dev --output "$OUT/tokenizer" --vocab_size 21128
for split in train dev; do
  [ -f "$OUT/shards/$split/manifest.json" ] || \
    python -m data_tools pack --format inews --inews_splits "$split" --output "$OUT/shards/$split" \
      --tokenizer_path "$OUT/tokenizer" --max_seq_length 128 --val_fraction 0.02 --workers 2
done
cat > "$OUT/mixture.json" <<JSON
{"sources": [{"name": "train", "dir": "shards/train", "weight": 0.7},
             {"name": "dev", "dir": "shards/dev", "weight": 0.3}]}
JSON
python launcher/pretrain.py @recipes/cpu_tiny/pretrain.args --mixture "$OUT/mixture.json" --output_dir "$OUT/run" \
  --max_steps "${STEPS:-600}" --ds scheduler.params.warmup_num_steps=100 --phase_warmup_steps 20 \
  --log_steps 50 --eval_steps 200 --eval_max_sequences 256 --save_steps 200 --resume_from_checkpoint auto
