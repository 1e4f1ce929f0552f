"""python bench/optimizer_gain.py SHARDS WORK

torch AdamW (shipped configs) vs DeepSpeed's compiled FusedAdam (opt-in), the whole trainer on the CPU: tokens/s
over training time (summary.json), `small` preset, 128 tokens, micro batch 16, 24 steps, 2 interleaved repeats."""
import json
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pretrain_helpers import pretrain_main, ROOT
shards = Path(sys.argv[1]); work = Path(sys.argv[2]); work.mkdir(parents=True, exist_ok=True)
res = {"torch_adam": [], "fused_adam": []}
for rep in range(2):
    for arm, flag in (("torch_adam", "true"), ("fused_adam", "false")):
        out = work / f"{arm}_{rep}"
        rc = pretrain_main(["--ds_config", str(ROOT / "ds_configs/zero2.json"), "--data_dir", str(shards), "--output_dir", str(out),
                            "--model_size", "small", "--max_steps", "24", "--log_steps", "8", "--ds", "scheduler.params.warmup_num_steps=2",
                            "--ds", f"optimizer.params.torch_adam={flag}"])
        assert rc == 0
        s = json.loads((out / "summary.json").read_text())
        res[arm].append(s["tokens_per_s"])
        print(arm, rep, round(s["tokens_per_s"]), flush=True)
for arm, v in res.items():
    print(arm, "tokens/s (mean of 2):", round(sum(v) / len(v)))
print("fused / torch:", round(sum(res["fused_adam"]) / sum(res["torch_adam"]), 3))
