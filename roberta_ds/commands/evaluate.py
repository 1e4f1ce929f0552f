"""Held-out masked-LM metrics of a saved model at a fixed 15 % masking and seed (comparable across runs).

    python launcher/evaluate.py --model RUN/final_model --data_dir SHARDS [--split validation] [--out res.json]
    deepspeed --num_gpus N launcher/evaluate.py --model RUN/checkpoints/global_step500 --data_dir SHARDS

parse -> load and check the model against the shards -> evaluate -> JSON on stdout; the work lives in
roberta_ds/downstream/saved_model.py (evaluate_saved).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from roberta_ds import cli_args
from roberta_ds.commands import prog
from roberta_ds.downstream.eval_config import EvalConfig

DESCRIPTION = ("Held-out masked-LM loss, perplexity and accuracy of a saved model at a fixed 15 % masking and seed "
               "(comparable across runs). JSON on stdout.")


def main(argv: list[str] | None = None, *, destroy_process_group: bool = False) -> int:
    try:
        cfg = cli_args.parse(EvalConfig, argv, prog("evaluate"), DESCRIPTION, launched_by_deepspeed=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # After parsing: --help and bad settings answer without importing torch and transformers (seconds).
    import torch.distributed as dist

    from roberta_ds.downstream.saved_model import evaluate_saved

    try:
        res = evaluate_saved(cfg)
    except ValueError as e:  # bad settings, model or data: one message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        # As pretrain's main: a process that calls main() again (the tests) keeps its group; DeepSpeed's comm
        # layer holds on to it, and a destroyed one breaks the next engine built in the same process.
        if destroy_process_group and dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:  # the result is all-reduced: rank 0 speaks for all
        text = json.dumps(res, indent=1, ensure_ascii=False)
        print(text)
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(text + "\n", encoding="utf-8")
    return 0


def console_main() -> int:
    """The console command ``roberta-ds-evaluate`` (and launcher/evaluate.py): the process ends after it."""
    return main(destroy_process_group=True)


if __name__ == "__main__":
    sys.exit(console_main())
