"""What a pretraining run writes into its --output_dir, by name:

    RUN/metrics.jsonl          the records (observe/records.py)
    RUN/summary.json           the summary (observe/summary.py)
    RUN/effective_config.json  every setting the run used
    RUN/checkpoints/           DeepSpeed checkpoints (engine/checkpoint.py)
    RUN/final_model/           the Hugging Face export
    RUN/probe.json             the downstream probe, when run
"""

from __future__ import annotations

from pathlib import Path

METRICS_NAME = "metrics.jsonl"
SUMMARY_NAME = "summary.json"
PROBE_NAME = "probe.json"
"""launcher/probe.py --out RUN/probe.json: the report and the model card show it when present (the demo writes it)."""
EFFECTIVE_CONFIG_NAME = "effective_config.json"
CHECKPOINTS_DIRNAME = "checkpoints"
FINAL_MODEL_DIRNAME = "final_model"
RUN_ENTRIES = (METRICS_NAME, SUMMARY_NAME, EFFECTIVE_CONFIG_NAME, CHECKPOINTS_DIRNAME, FINAL_MODEL_DIRNAME, "wandb_run_id")
"""What a pretraining run writes into its --output_dir: a directory holding any of them holds a run."""


def refuse_used_run_dir(out: Path) -> None:
    """A new run (no --resume_from_checkpoint) must not write into another run's directory: its metrics would be
    appended to the old run's, and checkpoint rotation would mix the two runs' checkpoints."""
    used = [n for n in RUN_ENTRIES if (out / n).exists() and not ((out / n).is_dir() and not any((out / n).iterdir()))]
    if used:
        raise ValueError(
            f"--output_dir {out} already holds a run ({', '.join(used)}). Continue that run with "
            "--resume_from_checkpoint auto, or start a new one with another --output_dir; nothing was changed.")
