#!/usr/bin/env bash
# GPU readiness check (bench/gpu_check.py has the details): roberta-ds `base` in bf16 under ZeRO-2 through the
# deepspeed launcher against the measured bf16 matmul ceiling and a run_mlm-style loop, plus 2 ranks over NCCL
# where 2 GPUs are present, and the model option sets (attention kinds, padded vocab, compile) on 1 rank. Meant
# to take under 8 minutes on one H100/H200-class GPU (estimated; it has not run on one yet).
#   bash bench/gpu_check.sh                 # on a GPU machine, after installing a CUDA torch and `pip install -e .`
#   bash bench/gpu_check.sh --device cpu    # the same steps on a CPU with the tiny preset
set -euo pipefail
cd "$(dirname "$0")/.."
# find_spec, not import: importing deepspeed costs ~3.5 s of CPU, and gpu_check.py imports it next anyway.
if ! python -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('roberta_ds', 'deepspeed'))))" 2>/dev/null; then
  echo "gpu_check: roberta_ds or deepspeed is not importable with $(command -v python); install first:" >&2
  echo "  python3 -m venv .venv && . .venv/bin/activate && pip install torch -e ." >&2
  exit 2
fi
exec python bench/gpu_check.py "$@"
