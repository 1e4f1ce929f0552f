"""Check an exported model in the clients colleagues run (transformers 4.x/5.x, ONNX, sentence-transformers).

The command lives in roberta_ds/commands/check_clients.py and imports nothing of roberta-ds, so this script runs in a
colleague's environment from a checkout that was never installed (`pip install -e .` also gives the console command
roberta-ds-check-clients).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roberta_ds.commands.check_clients import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
