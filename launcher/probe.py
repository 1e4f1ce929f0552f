"""Did pretraining help? Fine-tune a classifier from a pretrained encoder and from scratch, same budget.

The command lives in roberta_ds/commands/probe.py; this script runs it from a checkout that was never installed
(`pip install -e .` also gives the console command roberta-ds-probe).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roberta_ds.commands.probe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
