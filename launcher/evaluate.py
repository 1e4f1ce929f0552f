"""Held-out masked-LM metrics of a saved model at a fixed 15 % masking and seed (comparable across runs).

The command lives in roberta_ds/commands/evaluate.py; this script runs it from a checkout that was never installed
(`pip install -e .` also gives the console command roberta-ds-evaluate).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roberta_ds.commands.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(destroy_process_group=True))
