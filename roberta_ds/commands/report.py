"""Report one run, or compare several side by side.

    python launcher/report.py RUN                      # RUN/report.md, RUN/loss.png, RUN/report.json
    python launcher/report.py RUN_A RUN_B --out DIR    # side-by-side table + one overlaid curve in DIR

The work lives in roberta_ds/reports/report.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from roberta_ds import cli_args
from roberta_ds.commands import prog
from roberta_ds.cli_args import cli


@dataclass
class ReportCommand:
    runs: list[str] = field(metadata=cli(positional=True))
    """Run directories (launcher/pretrain.py --output_dir)."""
    out: str | None = None
    """Output directory (default: the run itself; required for several runs)."""


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(ReportCommand, argv, prog("report"),
                          "Report one run, or compare several side by side.")
    # After parsing: --help answers without importing torch (seconds).
    from roberta_ds.reports.model_card import write_model_card
    from roberta_ds.training.run_files import FINAL_MODEL_DIRNAME, SUMMARY_NAME
    from roberta_ds.reports.report import write_report

    try:
        written = write_report(args.runs, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for run in map(Path, args.runs):  # refresh the model cards: a probe may have run since the export
        if (run / FINAL_MODEL_DIRNAME).is_dir() and (run / SUMMARY_NAME).exists():
            written.append(write_model_card(run, run / FINAL_MODEL_DIRNAME))
    report = written[0].read_text(encoding="utf-8")
    warn = report.split("## Warnings\n\n", 1)[1].split("\n\n## ", 1)[0]
    print(f"wrote {', '.join(str(w) for w in written)}\nwarnings:\n{warn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
