"""Did pretraining help? Fine-tune a classifier from a pretrained encoder and from scratch, same budget.

    python launcher/probe.py --model RUN/final_model --train headlines.txt --test_fraction 0.2 --out probe.json
    python launcher/probe.py --model none --tokenizer SHARDS/tokenizer --model_size tiny --train T --test S

parse -> load -> fine-tune both arms -> table + JSON; the work lives in roberta_ds/probe.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from roberta_ds.probe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
