"""The loader alone against the training step it feeds, in the same run.

    python bench/loader_throughput.py --shards SHARDS [--wwm_shards SHARDS_WWM] [--model_size tiny] [--steps 60]

Loader arms: shards -> this rank's masked, collated micro-batches (roberta_ds.reading.data.PretrainingData, exactly
what the trainer consumes), with 0, 1 and 2 loader worker processes, on the given shards and (if given) on
shards packed with --wwm (whole-word masking). Timed from the second batch on (worker start-up excluded and
printed apart). The step arm: forward, backward and optimizer step of the model through the DeepSpeed engine
(ds_configs/zero2.json) on batches built beforehand, so it is the step alone. The ratio loader / step says how
far the loader is from being the bottleneck with the loader in the training process (0 workers); workers run
beside the step and add their rate. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def loader_rate(shards: Path, micro: int, steps: int, workers: int, wwm: bool) -> dict:
    from roberta_ds.reading.data import Layout, PretrainingData, ShardStream
    from roberta_ds.reading.masking import Masker, MaskingConfig
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(shards)
    stream = ShardStream(shards, m, "train", m.max_seq_length, seed=0, shuffle=True)
    data = PretrainingData(stream, Layout(micro, 1, 1, 0), Masker(MaskingConfig(wwm=wwm), m.tokenizer), 0,
                           num_workers=workers)
    t_start = time.perf_counter()
    it = data.steps(0)
    next(it)
    first = time.perf_counter() - t_start
    t0 = time.perf_counter()
    n = sum(1 for _ in zip(range(steps), it))
    dt = time.perf_counter() - t0
    return {"steps_per_s": n / dt, "first_batch_s": first, "steps": n}


def step_rate(shards: Path, model_size: str, micro: int, steps: int) -> dict:
    from roberta_ds.training.engine import ds_config
    from roberta_ds.reading.data import Layout, PretrainingData, ShardStream, model_inputs, to_device
    from roberta_ds.training.engine.setup import build_engine, device, init_distributed
    from roberta_ds.reading.masking import Masker, MaskingConfig
    from roberta_ds.training.model import ModelConfig, SparseMaskedLM, build_model, roberta_config
    from roberta_ds.shard_format import read_manifest

    init_distributed()
    m = read_manifest(shards)
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero2.json",
                                   [f"train_micro_batch_size_per_gpu={micro}", "scheduler.params.warmup_num_steps=1"])
    cfg = ds_config.resolve(cfg, total_steps=steps + 2, world_size=1)
    model_cfg = roberta_config(ModelConfig(model_size), m.tokenizer, m.max_seq_length)
    engine, _ = build_engine(SparseMaskedLM(build_model(model_cfg, seed=0)), cfg)
    stream = ShardStream(shards, m, "train", m.max_seq_length, seed=0, shuffle=True)
    data = PretrainingData(stream, Layout(micro, 1, 1, 0), Masker(MaskingConfig(), m.tokenizer), 0)
    batches = [to_device(mbs[0], device()) for mbs, _ in zip(data.steps(0), range(steps + 2))]
    t0 = None
    for i, mb in enumerate(batches):
        if i == 2:
            t0 = time.perf_counter()
        loss_sum, _ = engine(**model_inputs(mb))
        engine.backward(loss_sum / mb["n_masked_tensor"].clamp(min=1), scale_wrt_gas=False)
        engine.step()
    dt = time.perf_counter() - t0
    return {"steps_per_s": steps / dt, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True, help="a data_tools pack output (no --wwm needed)")
    ap.add_argument("--wwm_shards", type=Path, default=None, help="the same corpus packed with --wwm")
    ap.add_argument("--model_size", default="tiny")
    ap.add_argument("--micro_batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    a = ap.parse_args()

    step = step_rate(a.shards, a.model_size, a.micro_batch, a.steps)
    rows = []
    for shards, wwm in [(a.shards, False)] + ([(a.wwm_shards, True)] if a.wwm_shards else []):
        for workers in (0, 1, 2):
            r = loader_rate(shards, a.micro_batch, a.steps * 5, workers, wwm)
            rows.append({"wwm": wwm, "workers": workers, **r, "ratio_to_step": r["steps_per_s"] / step["steps_per_s"]})
    print(f"step ({a.model_size}, micro batch {a.micro_batch}, ZeRO-2, fp32): {step['steps_per_s']:.2f} steps/s "
          f"(mean over {step['steps']} steps)")
    print(f"{'masking':>8} {'workers':>8} {'loader steps/s':>15} {'x the step':>11} {'first batch s':>14}")
    for r in rows:
        print(f"{'wwm' if r['wwm'] else 'token':>8} {r['workers']:>8} {r['steps_per_s']:>15.1f} "
              f"{r['ratio_to_step']:>11.1f} {r['first_batch_s']:>14.2f}")
    print("loader steps/s: micro-batches per second, mean over the timed batches (from the second one)")
    print(json.dumps({"step": step, "loader": rows}, indent=1))


if __name__ == "__main__":
    main()
