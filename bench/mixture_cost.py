"""What the mixture's bookkeeping costs: the whole trainer's tokens/s on one shard directory given as --data_dir
against the same directory as a mixture (one source, and two sources splitting every batch 50/50), interleaved.

    python bench/mixture_cost.py [--steps 80] [--repeats 3] [--model_size tiny] [--length 128]

The inews corpus packed at ``--length`` tokens (a vocab built from it unless --tokenizer_path). Each arm is one
pretrain process (the shipped ds_configs/zero2.json, micro batch 16, no evaluation or checkpoint inside the loop);
its figure is summary.json's tokens_per_s: non-padding tokens / training wall time, over the run's steps (start-up,
evaluation, checkpoints and export excluded). Arms run in turn, ``--repeats`` rounds, so a drift of the machine's pace
hits every arm alike; reported: each arm's median over the rounds and its ratio to --data_dir. Run it alone.
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
           "--save_steps", "1000000000", "--ds", "train_micro_batch_size_per_gpu=16"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())["tokens_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--repeats", type=int, default=3)
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


if __name__ == "__main__":
    main()
