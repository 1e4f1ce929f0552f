"""Pretrain a Chinese RoBERTa masked LM from packed shards.

    deepspeed [--num_gpus N | --hostfile H] launcher/pretrain.py --ds_config ds_configs/zero2.json \
        --data_dir SHARDS --output_dir RUN [--model_size base] [--max_steps N] ...

parse -> validate -> build -> train -> export; all the work lives in roberta_ds/.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from roberta_ds.config import parse_args  # noqa: E402


def main(argv: list[str] | None = None, *, destroy_process_group: bool = False) -> int:
    try:
        cfg = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    from roberta_ds.trainer import Trainer

    try:
        trainer = Trainer(cfg)
        trainer.train()
    except ValueError as e:  # bad settings or data: one message, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        # Tests call main() several times in one process; the process group is kept for them.
        if destroy_process_group and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(destroy_process_group=True))
