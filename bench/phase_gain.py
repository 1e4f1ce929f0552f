"""Sequence-length phases against one full-length phase, at the same wall-time budget, through the real trainer.

    python bench/phase_gain.py [--budget 6m] [--short 128] [--full 512] [--share 0.9] [--fractions 0.5,0.7]

The inews corpus packed once at ``--full`` tokens. Arms, one after another in one sitting (run it alone on the
machine: every arm is timed), all with the short-run recipe (ds_configs/zero2_short_run.json, the tiny preset,
dropout 0, sinusoid positions) and ``--time_budget`` (the lr schedule follows each arm's own clock and anneals at its
end):

  one phase    ``--time_budget B``, every step at ``--full`` tokens
  two phases   ``--phases SHORT:SHARE,FULL:1-SHARE`` with ``--time_budget f x B`` for each ``f`` of
               ``--fractions`` (the phase boundary at SHARE of that budget's clock)

Every arm's final model is evaluated held-out at ``--full`` tokens (the validation split's first
``--eval_sequences`` sequences at the full length, 15 % masking, fixed seed: the same sequences and masks for every
arm). The question the issue asks: does a two-phase run reach the one-phase run's final held-out loss in at most 70 %
of its wall time, i.e. is the two-phase arm at f = 0.7 at or below the one-phase arm's loss? Each arm's wall time is
its training clock (schedule.RunClock: steps, evaluations and checkpoints; start-up and export excluded).
Writes ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.time_to_quality import RECIPE_CONFIG, RECIPE_FLAGS, default_vocab  # noqa: E402
from roberta_ds.training.loop.schedule import parse_duration  # noqa: E402


def pack(work: Path, tokenizer_path: str, length: int) -> Path:
    out = work / f"shards{length}"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "data_tools", "pack", "--format", "inews", "--output", str(out),
                        "--tokenizer_path", tokenizer_path, "--max_seq_length", str(length), "--val_fraction", "0.02",
                        "--workers", "2"], cwd=ROOT, check=True)
    return out


def arm(shards: Path, out: Path, budget_s: float, eval_sequences: int, extra: list[str]) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "launcher/pretrain.py", "--ds_config", str(RECIPE_CONFIG), "--data_dir", str(shards),
           "--output_dir", str(out), *RECIPE_FLAGS, "--time_budget", f"{budget_s:.0f}s", "--eval_steps", "1000000000",
           "--eval_max_sequences", str(eval_sequences), "--log_steps", "200", "--save_steps", "1000000000",
           "--ds", "scheduler.params.warmup_num_steps=200", *extra]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    ev = s["eval"]
    return {"budget_s": budget_s, "clock_s": s["elapsed_s"], "process_wall_s": wall, "steps": s["steps"],
            "tokens": s["tokens"], "held_out_full_length": ev["loss"], "eval_seq_len": ev.get("seq_len"),
            "phases": s.get("phases"), "by_length": {k: v["loss"] for k, v in (ev.get("lengths") or {}).items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="6m")
    p.add_argument("--short", type=int, default=128)
    p.add_argument("--full", type=int, default=512)
    p.add_argument("--share", type=float, default=0.9, help="share of each two-phase budget at --short tokens")
    p.add_argument("--fractions", default="0.5,0.7", help="two-phase budgets as fractions of --budget")
    p.add_argument("--eval_sequences", type=int, default=512)
    p.add_argument("--work", default="runs/phase_gain")
    p.add_argument("--tokenizer_path")
    p.add_argument("--out", default="runs/phase_gain/phase_gain.json")
    a = p.parse_args()
    work = (ROOT / a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shards = pack(work, a.tokenizer_path or default_vocab(work), a.full)
    budget = parse_duration(a.budget)
    res = {"cpu": platform.processor() or platform.machine(), "budget_s": budget, "short": a.short, "full": a.full,
           "share": a.share, "one_phase": arm(shards, work / "one", budget, a.eval_sequences, [])}
    phases = f"{a.short}:{a.share:g},{a.full}:{1 - a.share:g}"
    res["two_phases"] = {}
    for f in [float(x) for x in a.fractions.split(",")]:
        res["two_phases"][f"{f:g}"] = arm(shards, work / f"two_{f:g}", f * budget, a.eval_sequences,
                                          ["--phases", phases])
    ref = res["one_phase"]["held_out_full_length"]
    print(f"\nheld-out loss at {a.full} tokens ({a.eval_sequences} validation sequences, fixed masking), one sitting:")
    print(f"  one phase at {a.full}, budget {budget:.0f} s: {ref:.4f} "
          f"({res['one_phase']['steps']} steps, {res['one_phase']['tokens']:,} tokens)")
    for f, r in res["two_phases"].items():
        print(f"  phases {phases}, budget {float(f):.0%} ({r['budget_s']:.0f} s): {r['held_out_full_length']:.4f} "
              f"({r['steps']} steps, {r['tokens']:,} tokens; {'reaches' if r['held_out_full_length'] <= ref else 'misses'}"
              f" the one-phase loss by {ref - r['held_out_full_length']:+.4f})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
