"""Export any saved checkpoint to a Hugging Face model directory.

The command lives in roberta_ds/commands/export.py; this script runs it from a checkout that was never installed
(`pip install -e .` also gives the console command roberta-ds-export).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roberta_ds.commands.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
