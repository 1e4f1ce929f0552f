"""bench/gpu_check.sh, the GPU readiness check, rehearsed on the CPU with the tiny preset (issue 9): every step it
runs on a GPU runs here too (pack, bf16 ceiling, the launcher on 1 and 2 ranks, the run_mlm-style arm)."""

from __future__ import annotations

import pytest

import json
import subprocess
from pathlib import Path

from pretrain_helpers import ROOT, single_process_env


@pytest.mark.slow
def test_gpu_check_runs_every_step_on_the_cpu(vocab_dir: Path, tmp_path: Path):
    work = tmp_path / "gpu_check"
    env = single_process_env()
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--device", "cpu", "--ranks", "2",
                           "--tokenizer", str(vocab_dir), "--work", str(work), "--steps", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((work / "gpu_check.json").read_text())
    assert (work / "inews512_part1of8" / "manifest.json").exists()
    assert result["preset"] == "tiny" and result["length"] == 512 and result["bf16_ceiling_flops_per_s"] > 0
    arms = {r["arm"]: r for r in result["rows"]}
    assert set(arms) == {"roberta-ds ZeRO-2, 1 rank", "roberta-ds ZeRO-2, 2 ranks", "run_mlm-style loop, 1 rank",
                         "roberta-ds ZeRO-2, 1 rank, eager+vocab64"}  # the model options' arm, rehearsed
    vocab = json.loads((work / "inews512_part1of8" / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    options = json.loads((work / "run_tiny_512_eager+vocab64" / "final_model" / "config.json").read_text())
    assert options["attn_implementation"] == "eager" and options["vocab_size"] == vocab  # exported unpadded
    ran = json.loads((work / "run_tiny_512_eager+vocab64" / "effective_config.json").read_text())["model"]
    assert ran["vocab_size"] == -(-vocab // 64) * 64 and ran["attn_implementation"] == "eager", ran
    assert "best option set on 1 rank: " in proc.stdout
    assert arms["roberta-ds ZeRO-2, 2 ranks"]["world_size"] == 2  # the launcher really started 2 ranks
    assert arms["roberta-ds ZeRO-2, 1 rank"]["world_size"] == 1
    for row in result["rows"]:
        assert row["useful_tokens_per_s"] > 0 and 0 < row["mfu"] < 1, row
    # The run was bf16 through DeepSpeed, as on a GPU.
    cfg = json.loads((work / "run_tiny_512_1rank" / "effective_config.json").read_text())
    assert cfg["precision"] == "bf16" and cfg["deepspeed"]["bf16"]["enabled"] is True, cfg["deepspeed"]["bf16"]
    assert "2 ranks: " in proc.stdout and "roberta-ds / run_mlm-style: " in proc.stdout
    # which Adam ran, printed and recorded: the shipped config's torch AdamW, nothing compiled
    assert "optimizer torch.optim.AdamW" in proc.stdout
    assert arms["roberta-ds ZeRO-2, 1 rank"]["optimizer_implementation"].startswith("torch.optim.AdamW")


@pytest.mark.slow
def test_gpu_check_without_a_gpu_says_how_to_rehearse(tmp_path: Path):
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "no CUDA GPU is visible" in proc.stderr and "--device cpu" in proc.stderr
