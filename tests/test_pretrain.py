"""Pretraining through the real DeepSpeed engine (CPU accelerator, gloo) on a tiny preset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pretrain_helpers import (ROOT, eval_records, free_port, pretrain_args, rank_env, run_code, run_pretrain,
                              run_ranks, train_records)
from conftest import TWO_RANK_ARGS
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from roberta_ds.training.engine.checkpoint import export_checkpoint, fp32_state_dict

SHIPPED = sorted(p.stem for p in (ROOT / "ds_configs").glob("*.json"))


def _falls(run: Path) -> tuple[float, float]:
    losses = [r["loss"] for r in train_records(run)]
    return losses[0], sum(losses[-3:]) / 3


def test_ships_the_promised_configs():
    assert {"zero1", "zero2", "zero3", "zero3_offload", "zero2_short_run"} <= set(SHIPPED)
    for name in ("zero1", "zero2", "zero3", "zero3_offload"):  # the original run's engine settings
        cfg = json.loads((ROOT / "ds_configs" / f"{name}.json").read_text())
        assert "train_batch_size" not in cfg, f"{name}: train_batch_size must be left out"
        assert cfg["gradient_clipping"] == 1.0 and cfg["optimizer"]["type"] == "AdamW"
        assert cfg["optimizer"]["params"] == {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01,
                                              "torch_adam": True}  # torch's AdamW: no compiler needed (issue 19)
        assert cfg["scheduler"]["params"]["warmup_num_steps"] == 1000
        assert cfg["train_micro_batch_size_per_gpu"] == 16
    # The short-run recipe (README) differs from the original only where the recipe search said so.
    short = json.loads((ROOT / "ds_configs" / "zero2_short_run.json").read_text())
    assert "train_batch_size" not in short and short["gradient_clipping"] == 1.0
    assert short["optimizer"]["type"] == "AdamW" and short["optimizer"]["params"]["lr"] > 1e-4
    assert short["scheduler"]["type"] == "WarmupDecayLR" and short["scheduler"]["params"]["total_num_steps"] == "auto"


_SHM_PROBE = """
from roberta_ds.training.engine.setup import init_distributed
init_distributed()
import torch, torch.distributed as dist, deepspeed.comm.comm as c
t = torch.full((4,), float(dist.get_rank() + 1))
dist.all_reduce(t)
print("shm op:", c.cdb.shm_comm_op, "sum:", t.tolist())
"""
"""A rank's comm start-up: which shm op DeepSpeed built, and an all-reduce over its world."""


def _shm_probe(ext: Path, ranks: int) -> list[str]:
    """_SHM_PROBE's output in each of ``ranks`` forked processes (alone in its world when 1), with the extension
    cache ``ext``."""
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    worlds = [rank_env(r, ranks, port) for r in range(ranks)] if ranks > 1 else [{}]
    with ThreadPoolExecutor(ranks) as pool:
        procs = list(pool.map(lambda w: run_code(_SHM_PROBE, [], env={"TORCH_EXTENSIONS_DIR": str(ext), **w}), worlds))
    for proc in procs:
        assert proc.returncode == 0, proc.stdout[-3000:]
    return [proc.stdout for proc in procs]


@pytest.mark.slow
def test_a_process_alone_on_its_host_does_not_build_the_shared_memory_comm_op(tmp_path: Path):
    # DeepSpeed's CPU comm layer compiles its shared-memory all-reduce op when it starts, whatever the world size
    # (26 s on a fresh 2-core machine); a single process has no peer on its host to use it with.
    [out] = _shm_probe(tmp_path / "ext", 1)
    assert "shm op: None sum: [1.0, 1.0, 1.0, 1.0]" in out
    assert not (tmp_path / "ext" / "deepspeed_shm_comm").exists()


@pytest.mark.slow
def test_ranks_sharing_a_host_do_not_build_the_shared_memory_comm_op_and_still_reduce(tmp_path: Path):
    # Nor do several ranks of one host: only DeepSpeed's tensor-parallel inference all-reduce uses the op; the
    # training collectives go through torch.distributed (gloo), as this all-reduce does.
    outs = _shm_probe(tmp_path / "ext", 2)
    assert all("shm op: None sum: [3.0, 3.0, 3.0, 3.0]" in out for out in outs), outs
    assert not (tmp_path / "ext" / "deepspeed_shm_comm").exists()


@pytest.mark.slow
def test_the_shipped_configs_build_no_op(shard_dir: Path, tmp_path: Path):
    # A GPU node with pip's CUDA torch has no nvcc: the shipped configs must start there. DeepSpeed's "torch_adam"
    # takes torch's AdamW; a fresh process with an empty extension cache trains every shipped config and builds
    # nothing (the compiled Adam ops are an opt-in, tested below).
    # A process of its own, forked from the tests' fork server (imports done, no op loaded), as a fresh one.
    code = ("from pretrain_helpers import run_pretrain; "
            f"rcs = [run_pretrain({str(shard_dir)!r}, {str(tmp_path)!r} + '/' + c, c, 3) for c in {SHIPPED!r}]; "
            "print('exit codes', rcs)")
    proc = run_code(code, [], timeout=600, env={"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")})
    assert proc.returncode == 0 and f"exit codes {[0] * len(SHIPPED)}" in proc.stdout, proc.stdout[-5000:]
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").iterdir()), list((tmp_path / "ext").iterdir())
    for config in SHIPPED:
        used = json.loads((tmp_path / config / "effective_config.json").read_text())["optimizer_implementation"]
        assert used.startswith("torch.optim.AdamW"), (config, used)


@pytest.mark.slow
@pytest.mark.builds_ops
def test_the_compiled_fused_adam_op_builds_trains_and_resumes_with_the_same_losses(shard_dir: Path, tmp_path: Path,
                                                                                   ops_built: str):
    """The opt-in compiled Adam of the GPU configs (--ds optimizer.params.torch_adam=false): DeepSpeed builds
    fused_adam, the loss falls, and a run resumed in a new process repeats the uninterrupted run's losses exactly.
    The op keeps beta^t in C++ state, which engine.beta_power_reset puts back on pow() before every step; without
    the reset the losses part at step 22. Weights: within 1e-6, not bitwise. Within the whole suite the resumed
    run's attention key biases (whose gradients are ~0, so Adam's update is all rounding) ended 1e-7 from the
    uninterrupted run's; run alone they were equal. The shipped configs (torch's AdamW) resume bitwise:
    test_exact_resume_reproduces_losses_and_weights and the kill tests."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # 30 steps, resumed at 20: repeated multiplication and pow() give the same beta^t for the first ten or so
    # steps, so a shorter run would not show what the reset is for (it passed without the reset at 10 steps).
    extra = ("--save_steps", "20", "--ds", "optimizer.params.torch_adam=false")
    assert run_pretrain(shard_dir, straight, "zero2", 30, *extra) == 0
    used = json.loads((straight / "effective_config.json").read_text())["optimizer_implementation"]
    assert used == "deepspeed FusedAdam (compiled op fused_adam)"
    first, last = _falls(straight)
    assert last < first - 0.3, f"fused_adam: loss did not fall ({first:.3f} -> {last:.3f})"
    assert run_pretrain(shard_dir, resumed, "zero2", 30, *extra, "--stop_at_step", "20") == 0
    # The resume in a new process, as after a restart: the op's C++ state is per process, so an in-process resume
    # would continue its beta^t products where the stopped run left them and hide what a restart changes.
    # (A process forked from the tests' fork server, which has loaded no op: as a restarted one.)
    proc = run_code("import sys; from pretrain_helpers import pretrain_main; sys.exit(pretrain_main(sys.argv[1:]))",
                    pretrain_args(shard_dir, resumed, "zero2", 30, *extra, "--resume_from_checkpoint", "auto"), 600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert [(r["step"], r["loss"]) for r in train_records(straight)] == [(r["step"], r["loss"]) for r in
                                                                        train_records(resumed)]
    wa = load_file(straight / "final_model" / "model.safetensors")
    wb = load_file(resumed / "final_model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6) for k in wa), "final weights differ"


@pytest.mark.slow
@pytest.mark.builds_ops
def test_the_compiled_cpu_adam_op_builds_and_trains_under_offload(shard_dir: Path, tmp_path: Path, ops_built: str):
    """ZeRO-Offload's compiled optimizer (DeepSpeedCPUAdam) as the opt-in of zero3_offload: it builds and trains."""
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero3_offload", 12, "--ds", "optimizer.params.torch_adam=false") == 0
    used = json.loads((run / "effective_config.json").read_text())["optimizer_implementation"]
    assert used == "deepspeed DeepSpeedCPUAdam (compiled op cpu_adam)"
    first, last = _falls(run)
    assert last < first - 0.3, f"cpu_adam: loss did not fall ({first:.3f} -> {last:.3f})"


@pytest.mark.parametrize("config", SHIPPED)
def test_every_shipped_config_trains_and_exports(config: str, shard_dir: Path, tmp_path: Path):
    run = tmp_path / config
    linear = torch.nn.functional.linear
    assert run_pretrain(shard_dir, run, config, 12) == 0
    # ZeRO-3 replaces F.linear process-wide; the next run in this process must get the original back
    assert torch.nn.functional.linear is linear
    first, last = _falls(run)
    assert last < first - 0.3, f"{config}: loss did not fall ({first:.3f} -> {last:.3f})"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["initial_loss"] == pytest.approx(first)
    configured = json.loads((ROOT / "ds_configs" / f"{config}.json").read_text())["zero_optimization"]["stage"]
    # ZeRO-1/2 on one fp32 rank run as stage 0 (ds_config.one_rank_stage); stage 3 and offload as configured
    assert summary["zero_stage"] == (0 if configured in (1, 2) and "offload" not in config else configured)

    # The export is a standard HF model: weights equal the consolidated fp32 checkpoint, decoder tied.
    model = AutoModelForMaskedLM.from_pretrained(run / "final_model")
    assert model.lm_head.decoder.weight.data_ptr() == model.roberta.embeddings.word_embeddings.weight.data_ptr()
    ckpt = fp32_state_dict(run / "checkpoints" / "global_step12")
    for name, tensor in model.state_dict().items():
        if name in ckpt:
            assert torch.equal(tensor, ckpt[name]), f"{name} changed in export"
    fill = pipeline("fill-mask", model=str(run / "final_model"), tokenizer=str(run / "final_model"))
    out = fill("今天北京的天气[MASK]好。")
    assert len(out) == 5 and all(0.0 <= o["score"] <= 1.0 for o in out)


def test_exact_resume_reproduces_losses_and_weights(shard_dir: Path, tmp_path: Path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = ("--save_steps", "4", "--eval_steps", "5", "--eval_max_sequences", "32")  # dropout stays 0.1
    assert run_pretrain(shard_dir, straight, "zero2", 10, *extra) == 0
    assert run_pretrain(shard_dir, resumed, "zero2", 10, *extra, "--stop_at_step", "6") == 0
    assert not (resumed / "final_model").exists()
    assert json.loads((resumed / "checkpoints" / "global_step6" / "roberta_ds_state.json").read_text())[
        "data_cursor"] == {"epoch": 0, "step_in_epoch": 6, "global_batch": 16, "seq_len": 128}
    assert run_pretrain(shard_dir, resumed, "zero2", 10, *extra, "--resume_from_checkpoint", "auto") == 0

    a = [(r["step"], r["loss"]) for r in train_records(straight)]
    b = [(r["step"], r["loss"]) for r in train_records(resumed)]
    assert a == b, "resumed run's losses differ from the uninterrupted run's"
    assert [e["loss"] for e in eval_records(straight)] == [e["loss"] for e in eval_records(resumed)]
    wa = load_file(straight / "final_model" / "model.safetensors")
    wb = load_file(resumed / "final_model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), "final weights differ"
    # Keep-last-K: only the newest 3 checkpoints remain.
    kept = sorted(p.name for p in (straight / "checkpoints").glob("global_step*"))
    assert kept == ["global_step10", "global_step4", "global_step8"]
    # Export of any saved checkpoint, through the module entry point's function.
    out = export_checkpoint(straight / "checkpoints" / "global_step8", tmp_path / "step8")
    assert AutoTokenizer.from_pretrained(out).vocab_size == json.loads(
        (shard_dir / "manifest.json").read_text())["tokenizer"]["vocab_size"]


def test_resume_between_log_steps_keeps_every_count(shard_dir: Path, tmp_path: Path):
    """A checkpoint that falls between logging steps must not lose the unlogged steps' counts."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = ("--log_steps", "3", "--save_steps", "4")
    assert run_pretrain(shard_dir, straight, "zero2", 10, *extra) == 0
    assert run_pretrain(shard_dir, resumed, "zero2", 10, *extra, "--stop_at_step", "5") == 0
    assert run_pretrain(shard_dir, resumed, "zero2", 10, *extra, "--resume_from_checkpoint", "auto") == 0
    a, b = (json.loads((r / "summary.json").read_text()) for r in (straight, resumed))
    assert a["tokens"] == b["tokens"] >= 10 * 16 * 127  # every step counted once ([PAD] only in a remainder)
    assert a["sequences"] == b["sequences"] == 10 * 16
    assert a["final_window_loss"] == b["final_window_loss"] and a["final_window_steps"] == b["final_window_steps"]
    for e in a["epoch_mean_loss"]:
        assert a["epoch_mean_loss"][e] == pytest.approx(b["epoch_mean_loss"][e], rel=1e-12)
    # The records after the common checkpoint at step 8 are identical.
    assert [(r["step"], r["loss"]) for r in train_records(straight) if r["step"] > 8] == \
        [(r["step"], r["loss"]) for r in train_records(resumed) if r["step"] > 8]
    # Re-running a finished run resumes at its end and leaves the summary's numbers as they were.
    assert run_pretrain(shard_dir, straight, "zero2", 10, *extra, "--resume_from_checkpoint", "auto") == 0
    again = json.loads((straight / "summary.json").read_text())
    assert again["final_window_loss"] == a["final_window_loss"] and again["tokens"] == a["tokens"]


def test_shards_shorter_than_their_manifest_stop_with_a_message(shard_dir: Path, tmp_path: Path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(shard_dir, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["splits"]["train"]["shards"][0]["sequences"] += 800  # promises 50 more steps than the tar holds
    (bad / "manifest.json").write_text(json.dumps(m))
    assert run_pretrain(bad, tmp_path / "run", "zero2", 1000, "--num_train_epochs", "1", "--max_steps", "1000") == 2
    err = capsys.readouterr().err
    assert "shard-00000.tar, sample " in err and "the manifest implies" in err, err
    assert "python -m data_tools verify" in err


def test_resume_with_other_shards_and_model_lists_every_conflict(shard_dir: Path, tmp_path: Path, zh_docs,
                                                               other_shards: Path, capsys):
    run = tmp_path / "run"
    assert run_pretrain(shard_dir, run, "zero2", 3) == 0
    rc = run_pretrain(other_shards, run, "zero2", 6, "--hidden_size", "64", "--resume_from_checkpoint", "auto")
    assert rc == 2
    err = capsys.readouterr().err
    for conflict in ("cannot resume", "tokenizer vocab_size", "tokenizer vocab_sha256", "model hidden_size"):
        assert conflict in err, err


def test_shards_whose_tokenizer_does_not_match_the_manifest_are_refused(shard_dir: Path, other_shards: Path,
                                                                      tmp_path: Path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(shard_dir, bad)
    shutil.rmtree(bad / "tokenizer")
    shutil.copytree(other_shards / "tokenizer", bad / "tokenizer")
    assert run_pretrain(bad, tmp_path / "run", "zero2", 3) == 2
    err = capsys.readouterr().err
    assert "does not match the manifest" in err and "vocab_size" in err and "re-run `python -m data_tools pack`" in err.lower()


def test_bad_ds_settings_get_one_message_listing_every_problem(shard_dir: Path, tmp_path: Path, capsys):
    rc = run_pretrain(shard_dir, tmp_path / "run", "zero2", 3, "--ds", "zero_optimisation.stage=1",
                      "--ds", "zero_optimization.stagee=1", "--ds", "train_batch_size=32", "--ds", "nonsense")
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown DeepSpeed key 'zero_optimisation' (did you mean 'zero_optimization'?)" in err
    assert "stagee" in err and "expected KEY.PATH=VALUE" in err
    rc = run_pretrain(shard_dir, tmp_path / "run", "zero2", 3, "--ds", "train_batch_size=32",
                      "--ds", "bf16.enabled=true", "--ds", "fp16.enabled=true",
                      "--ds", "scheduler.params.warmup_num_steps=50")
    assert rc == 2
    err = capsys.readouterr().err
    assert "train_batch_size is set" in err and "both true" in err and "warmup_num_steps = 50 >= the run's 3" in err


def _native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX-512 bf16); without it (an AVX2 AMD EPYC) a bf16 run goes
    through a slow emulation: 22 s for this test's 12 steps, a quarter of the inner loop, so it runs with the slow
    tests there."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.mark.parametrize("precision", [pytest.param("bf16", marks=[] if _native_bf16() else [pytest.mark.slow]),
                                       "fp16"])
def test_mixed_precision_trains(precision: str, shard_dir: Path, tmp_path: Path, capsys):
    from deepspeed.accelerator import get_accelerator

    run = tmp_path / precision
    rc = run_pretrain(shard_dir, run, "zero2", 12, "--ds", f"{precision}.enabled=true")
    if precision == "fp16" and not get_accelerator().is_fp16_supported():
        # CPUs without AVX512-FP16: refused up front with the fix, not DeepSpeed's bare "not supported".
        assert rc == 2
        assert "fp16.enabled = true but this cpu device does not support fp16" in capsys.readouterr().err
        return
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["precision"] == precision
    # The export carries the fp32 master weights, not the half-precision copy the engine computes with.
    weights = load_file(run / "final_model" / "model.safetensors")
    half = torch.bfloat16 if precision == "bf16" else torch.float16
    assert any(not torch.equal(w, w.to(half).float()) for w in weights.values()), "export holds rounded weights"
    first, last = _falls(run)
    assert last < first - 0.2, f"{precision}: loss did not fall ({first:.3f} -> {last:.3f})"
    # fp16 starts at loss scale 2**16; overflowed steps are skipped, and counted.
    assert summary["skipped_steps"] == train_records(run)[-1]["skipped_steps"]


def test_gradient_accumulation_matches_a_larger_micro_batch(shard_dir: Path, tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_pretrain(shard_dir, a, "zero2", 4, "--dropout", "0") == 0
    assert run_pretrain(shard_dir, b, "zero2", 4, "--dropout", "0", "--ds", "train_micro_batch_size_per_gpu=8",
                        "--ds", "gradient_accumulation_steps=2") == 0
    for x, y in zip(train_records(a), train_records(b)):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)


@pytest.mark.multiproc
@pytest.mark.parametrize("config", ["zero2", "zero3"])
def test_two_processes_match_one_process(config: str, shard_dir: Path, tmp_path: Path, two_rank_run):
    """2 ranks x micro 8 == 1 rank x micro 16 (same global batches, globally normalised loss)."""
    one = tmp_path / "one"
    if config == "zero2":
        two = two_rank_run(config)  # the deepspeed launcher's 2-rank run (conftest), shared with test_launchers
    else:
        two = tmp_path / "two"
        proc = run_ranks(2, pretrain_args(shard_dir, two, config, 8, *TWO_RANK_ARGS,
                                          "--ds", "train_micro_batch_size_per_gpu=8"))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert run_pretrain(shard_dir, one, config, 8, *TWO_RANK_ARGS) == 0
    assert json.loads((two / "summary.json").read_text())["world_size"] == 2
    ra, rb = train_records(one), train_records(two)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra + eval_records(one), rb + eval_records(two)):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5), (x, y)
