"""What the mixture's bookkeeping costs: the whole trainer's tokens/s on one shard directory given as --data_dir
against the same directory as a mixture (one source, and two sources splitting every batch 50/50), interleaved.

    python bench/mixture_cost.py [--steps 80] [--repeats 3] [--model_size tiny] [--length 128]

The inews corpus packed at ``--length`` tokens (a vocab built from it unless --tokenizer_path). Each arm is one
pretrain process (the shipped ds_configs/zero2.json, micro batch 16, no evaluation or checkpoint inside the loop);
its figure is summary.json's tokens_per_s: non-padding tokens / training wall time, over the run's steps (start-up,
evaluation, checkpoints and export excluded). Arms run in turn, ``--repeats`` rounds, so a drift of the machine's pace
hits every arm alike; reported: each arm's median over the rounds and its ratio to --data_dir. Run it alone.

End to end, the machine's pace moves by several per cent between runs of this length, more than the bookkeeping
costs; so the data path alone is also measured, where the whole difference lies: CPU milliseconds per step of
the loader (shards -> this rank's masked micro-batches, with the mixture's per-source counts), 300 steps after one
warm-up step, for each arm, set against the trainer's seconds per step from the --data_dir arm.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.phase_gain import pack  # noqa: E402
from bench.time_to_quality import default_vocab  # noqa: E402


def run(work: Path, name: str, data: list[str], a) -> float:
    out = work / name
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "launcher/pretrain.py", "--ds_config", "ds_configs/zero2.json", *data, "--output_dir", str(out),
           "--model_size", a.model_size, "--max_steps", str(a.steps), "--log_steps", str(a.steps),
           "--save_steps", "1000000000", "--ds", "train_micro_batch_size_per_gpu=16",
           "--ds", "scheduler.params.warmup_num_steps=8"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["tokens_per_s"]


def loader_ms(shards: Path, sources: int, steps: int = 300) -> float:
    """CPU ms per step of the data path: PretrainingData (sources == 0) or a MixedData of ``sources`` sources."""
    import time
    from itertools import islice

    from roberta_ds.reading.data import Layout, PretrainingData, ShardStream
    from roberta_ds.reading.masking import Masker, MaskingConfig
    from roberta_ds.reading.mixture import MixedData, PhaseSpec, Source
    from roberta_ds.shard_format import read_manifest

    m = read_manifest(shards)
    layout, masker = Layout(16, 1, 1, 0), Masker(MaskingConfig(), m.tokenizer)
    if sources == 0:
        data = PretrainingData(ShardStream(shards, m, "train", m.max_seq_length, 42, True), layout, masker, 42)
    else:
        data = MixedData([Source(f"s{i}", str(shards), 1.0) for i in range(sources)], [m] * sources,
                         [PhaseSpec(m.max_seq_length, 1.0)], layout, masker, 42, 16384)
        data.plan_steps(10**6)
    it = data.steps_from(0)
    next(it)
    t0 = time.process_time()
    for _ in islice(it, steps):
        pass
    return (time.process_time() - t0) / steps * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--model_size", default="tiny")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--work", default="runs/mixture_cost")
    p.add_argument("--tokenizer_path")
    a = p.parse_args()
    work = (ROOT / a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shards = pack(work, a.tokenizer_path or default_vocab(work), a.length)
    one = work / "one.json"
    one.write_text(json.dumps({"sources": [{"name": "inews", "dir": str(shards), "weight": 1}]}))
    two = work / "two.json"
    two.write_text(json.dumps({"sources": [{"name": "x", "dir": str(shards), "weight": 1},
                                           {"name": "y", "dir": str(shards), "weight": 1}]}))
    arms = {"--data_dir": ["--data_dir", str(shards)], "--mixture, 1 source": ["--mixture", str(one)],
            "--mixture, 2 sources 50/50": ["--mixture", str(two)]}
    got: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(a.repeats):
        for name, data in arms.items():
            got[name].append(run(work, f"arm{list(arms).index(name)}", data, a))
            print(f"round {r + 1} {name}: {got[name][-1]:,.0f} tokens/s", flush=True)
    base = statistics.median(got["--data_dir"])
    print(f"\n{platform.processor() or platform.machine()}, {a.model_size}, {a.length} tokens, {a.steps} steps per run, "
          f"median of {a.repeats} interleaved rounds (tokens/s = non-padding tokens / training wall time):")
    for name, v in got.items():
        print(f"  {name:28s} {statistics.median(v):>10,.0f}  x{statistics.median(v) / base:.3f}   "
              f"rounds {', '.join(f'{x:,.0f}' for x in v)}")
    tokens_per_step = 16 * a.length  # packed sequences: at most a split's last one is padded
    step_ms = tokens_per_step / base * 1000
    loader = {name: [loader_ms(shards, n) for _ in range(a.repeats)] for name, n in
              (("--data_dir", 0), ("--mixture, 1 source", 1), ("--mixture, 2 sources 50/50", 2))}
    plain = statistics.median(loader["--data_dir"])
    print(f"\nthe data path alone: CPU ms per step (median of {a.repeats}, 300 steps each), and the difference from "
          f"--data_dir against the trainer's {step_ms:.0f} ms per step (the --data_dir arm's median rate):")
    for name, v in loader.items():
        med = statistics.median(v)
        print(f"  {name:28s} {med:6.2f} ms  {'' if name == '--data_dir' else f'+{med - plain:.2f} ms = {(med - plain) / step_ms:.2%} of a step'}")


if __name__ == "__main__":
    main()
