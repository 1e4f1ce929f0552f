"""Held-out masked-LM metrics of a saved model at a fixed 15 % masking and seed (comparable across runs).

    python launcher/evaluate.py --model RUN/final_model --data_dir SHARDS [--split validation] [--out res.json]
    deepspeed --num_gpus N launcher/evaluate.py --model RUN/checkpoints/global_step500 --data_dir SHARDS

parse -> load -> check model against shards -> evaluate -> JSON; the work lives in roberta_ds/evaluate_saved.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from roberta_ds.evaluate_saved import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
