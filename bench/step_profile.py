"""Where a training step's time goes: roberta-ds's bare step in a plain PyTorch loop against the same step through the
DeepSpeed engine and through the trainer's own step, in one process, in interleaved blocks.

    python bench/step_profile.py --shards S512 [--shape 256x4] [--length 128] [--stages 2,0] [--blocks 6] [--ops]

For each ZeRO stage in --stages one engine is built the way launcher/pretrain.py builds it (ds_configs/zero2.json with
the stage set; fp32, one process); the bare arm is the same model (SparseMaskedLM, same seed) with torch AdamW and
clipping. Each block runs 5 steps of the bare loop, then 5 through engine.forward/backward/step, then 5 through
Trainer._train_step (which adds the non-finite check and the window sums), on the same pre-masked batches (data loading
is measured by bench/loader_throughput.py). Printed: the median milliseconds per step of each phase, over all blocks.
--ops adds torch.profiler's self CPU time per op for 5 bare and 5 engine steps, largest differences first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import train_throughput as tt  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--shape", default="256x4", choices=tt.SHAPES)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--stages", default="2,0", help="ZeRO stages to compare, comma-separated")
    ap.add_argument("--blocks", type=int, default=6, help="interleaved blocks of 5 steps per arm")
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's per-op difference")
    a = ap.parse_args(argv)

    import torch

    from roberta_ds import cli_args
    from roberta_ds.training.build import build_run
    from roberta_ds.training.config import RunConfig
    from roberta_ds.reading.data import model_inputs
    from roberta_ds.training.model import SparseMaskedLM, build_model
    from roberta_ds.training.trainer import Trainer, WindowAccumulator

    setting = tt.Setting()
    m, raw = tt._packed_batches(a.shards, a.length, 40, setting.micro)
    for stage in a.stages.split(","):
        argv_run = tt.roberta_ds_argv(a.shards, Path(tempfile.mkdtemp(prefix="step_profile_")), a.shape, a.length,
                                      1000, setting) + ["--ds", f"zero_optimization.stage={stage}"]
        run = build_run(cli_args.parse(RunConfig, argv_run, "bench", "bench"))
        trainer = Trainer(run)
        bare = SparseMaskedLM(build_model(run.hf_config, seed=0)).train()
        opt = torch.optim.AdamW(bare.parameters(), lr=1e-4, weight_decay=0.01)

        def bare_step(b):
            t0 = time.perf_counter()
            loss = bare(**model_inputs(b))[0] / b["n_masked"]
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(bare.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        def engine_step(b):
            e = run.engine
            t0 = time.perf_counter()
            loss_sum, _ = e(**model_inputs(b))
            t1 = time.perf_counter()
            e.backward(loss_sum / b["n_masked"], scale_wrt_gas=False)
            t2 = time.perf_counter()
            e.step()
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        window = WindowAccumulator(run.device)

        def trainer_step(b):
            t0 = time.perf_counter()
            trainer._step([b], window)
            return (time.perf_counter() - t0,)

        for b in raw[:2]:  # warm-up
            bare_step(b), engine_step(b), trainer_step(b)
        times: dict[str, list[tuple]] = {"bare": [], "engine": [], "trainer": []}
        for blk in range(a.blocks):
            batches = [raw[2 + (blk * 5 + i) % 38] for i in range(5)]
            for name, fn in (("bare", bare_step), ("engine", engine_step), ("trainer", trainer_step)):
                times[name] += [fn(b) for b in batches]
        med = {k: [statistics.median(x[i] for x in v) * 1e3 for i in range(len(v[0]))] for k, v in times.items()}
        tot = {k: statistics.median(sum(x) for x in v) * 1e3 for k, v in times.items()}
        print(f"{a.shape} at {a.length}, micro batch {setting.micro}, fp32, ZeRO stage {stage}: median ms per step over "
              f"{a.blocks} interleaved blocks of 5")
        print(f"{'arm':>8} {'forward':>8} {'backward':>9} {'opt step':>9} {'total':>8} {'/ bare':>7}")
        for k in ("bare", "engine"):
            f, bw, s = med[k]
            print(f"{k:>8} {f:>8.1f} {bw:>9.1f} {s:>9.1f} {tot[k]:>8.1f} {tot[k] / tot['bare']:>6.3f}x")
        print(f"{'trainer':>8} {'':>8} {'':>9} {'':>9} {tot['trainer']:>8.1f} {tot['trainer'] / tot['bare']:>6.3f}x")
        if a.ops:
            from torch.profiler import ProfilerActivity, profile

            per = {}
            for name, fn in (("bare", bare_step), ("engine", engine_step)):
                with profile(activities=[ProfilerActivity.CPU]) as p:
                    for b in raw[2:7]:
                        fn(b)
                per[name] = {e.key: (e.self_cpu_time_total / 5e3, e.count / 5) for e in p.key_averages()}
            keys = sorted(set(per["bare"]) | set(per["engine"]),
                          key=lambda k: -abs(per["engine"].get(k, (0, 0))[0] - per["bare"].get(k, (0, 0))[0]))
            print(f"{'op (torch.profiler, self CPU)':>42} {'bare ms/step':>13} {'engine ms/step':>15} {'calls/step':>11}")
            for k in keys[:12]:
                b, e = per["bare"].get(k, (0, 0)), per["engine"].get(k, (0, 0))
                print(f"{k[:42]:>42} {b[0]:>13.1f} {e[0]:>15.1f} {b[1]:>5.0f}/{e[1]:<5.0f}")


if __name__ == "__main__":
    main()
