"""Report one run, or compare several side by side.

The command lives in roberta_ds/commands/report.py; this script runs it from a checkout that was never installed
(`pip install -e .` also gives the console command roberta-ds-report).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from roberta_ds.commands.report import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
