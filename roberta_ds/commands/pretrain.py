"""Pretrain a Chinese RoBERTa masked LM from packed shards.

    deepspeed [--num_gpus N | --hostfile H] launcher/pretrain.py --ds_config ds_configs/zero2.json \
        --data_dir SHARDS --output_dir RUN [--model_size base] [--max_steps N] ...

parse -> build (validates everything first) -> train -> export; all the work lives in roberta_ds/.
"""

from __future__ import annotations

import sys

from roberta_ds import cli_args
from roberta_ds.commands import prog
from roberta_ds.training.engine import launch_env
from roberta_ds.training.config import RunConfig

DESCRIPTION = "Pretrain a Chinese RoBERTa masked LM from packed shards with DeepSpeed."


def parse_args(argv: list[str] | None = None) -> RunConfig:
    return cli_args.parse(RunConfig, argv, prog("pretrain"), DESCRIPTION, launched_by_deepspeed=True)


def main(argv: list[str] | None = None, *, destroy_process_group: bool = False) -> int:
    try:
        cfg = parse_args(argv)
        # A half-set launcher environment (sbatch's own shell, a missing MASTER_ADDR) is refused before the
        # seconds of importing torch and DeepSpeed, on every process of the job; the engine setup reads it again.
        launch_env.detect()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch
    import torch.distributed as dist

    from roberta_ds.training.build import build_run
    from roberta_ds.training.engine.checkpoint import CheckpointWriteError, adopt_legacy_export, export_checkpoint, tag_for
    from roberta_ds.reports.model_card import write_model_card
    from roberta_ds.training.loop.preemption import EXIT_REQUEUE
    from roberta_ds.training.run_files import FINAL_MODEL_DIRNAME
    from roberta_ds.training.trainer import PREEMPTED, SafetyStop, Trainer

    # A ZeRO-3 engine replaces torch.nn.functional.linear for the whole process (DeepSpeed's memory-efficient
    # linear: "this will persist unless manually reset"). A later run in the same process (tests, a notebook
    # calling main() again) would train through ZeRO-3's autograd function, whose gradients differ from F.linear's
    # in the last bit: a ZeRO-2 run after a ZeRO-3 one no longer repeated a fresh process's losses. Put it back.
    linear = torch.nn.functional.linear
    try:
        if cfg.train.estimate_memory:
            from roberta_ds.training.build import memory_report

            print(memory_report(cfg))
            return 0
        run = build_run(cfg)
        trainer = Trainer(run)
        summary = trainer.train()
        if trainer.stopped == PREEMPTED:
            return EXIT_REQUEUE  # checkpoint saved: requeue the job, it resumes with --resume_from_checkpoint auto
        if summary is not None and run.is_main:  # None: stopped at --stop_at_step, to be resumed
            final = run.out / FINAL_MODEL_DIRNAME
            adopt_legacy_export(final)
            export_checkpoint(run.ckpt_root / tag_for(summary.steps), final)
            write_model_card(run.out, final)
            run.console.print(f"exported Hugging Face model to {final} (model card: README.md)")
    except ValueError as e:  # bad settings or data: one message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (SafetyStop, CheckpointWriteError) as e:  # a safety stop: the message says what happened and what to do
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        torch.nn.functional.linear = linear
        # Tests call main() several times in one process; the process group is kept for them.
        if destroy_process_group and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def console_main() -> int:
    """The console command ``roberta-ds-pretrain``: one process (several go through ``deepspeed``)."""
    return main(destroy_process_group=True)


if __name__ == "__main__":
    sys.exit(console_main())
