"""DeepSpeed config loading, overrides and the derived "auto" values."""

from __future__ import annotations

import pytest
from pretrain_helpers import ROOT

from roberta_ds.training.engine import ds_config

SHIPPED = sorted((ROOT / "ds_configs").glob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_configs_resolve(path):
    cfg = ds_config.resolve(ds_config.load_ds_config(path, []), total_steps=7777, world_size=4)
    assert cfg["scheduler"]["params"]["total_num_steps"] == 7777
    assert cfg["scheduler"]["params"]["warmup_max_lr"] == cfg["optimizer"]["params"]["lr"]
    assert cfg["optimizer"]["params"]["lr"] == (2e-3 if path.stem == "zero2_short_run" else 1e-4)
    assert ds_config.precision(cfg) == ds_config.hardware_precision()
    assert not any(v == "auto" for _, v in ds_config._walk(cfg))


def test_overrides_parse_json_values_and_bare_strings():
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero2.json", [
        "optimizer.params.lr=5e-4", "zero_optimization.offload_optimizer.device=cpu", "bf16.enabled=true",
        "optimizer.params.betas=[0.9, 0.98]"])
    assert cfg["optimizer"]["params"]["lr"] == 5e-4 and cfg["optimizer"]["params"]["betas"] == [0.9, 0.98]
    assert cfg["zero_optimization"]["offload_optimizer"] == {"device": "cpu"}
    resolved = ds_config.resolve(cfg, total_steps=5000, world_size=1)
    assert ds_config.precision(resolved) == "bf16" and resolved["fp16"]["enabled"] is False


def test_a_fixed_total_that_disagrees_with_the_run_is_refused():
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero1.json", ["scheduler.params.total_num_steps=100"])
    with pytest.raises(ds_config.DSConfigError, match='total_num_steps = 100 but the run has 5000 steps'):
        ds_config.resolve(cfg, total_steps=5000, world_size=1)


def test_missing_file_lists_the_shipped_configs(tmp_path):
    with pytest.raises(ds_config.DSConfigError, match=r"no such file \(shipped configs in ds_configs/: \['zero1.json'"):
        ds_config.load_ds_config(tmp_path / "nope.json", [])


@pytest.mark.parametrize("hardware,overrides,expected", [
    ("fp32", [], "fp32"),
    ("bf16", [], "bf16"),
    ("fp16", [], "fp16"),
    ("bf16", ["bf16.enabled=false"], "fp32"),   # explicit off is never rewritten, even on an Ampere GPU
    ("fp16", ["fp16.enabled=false"], "fp32"),
    ("fp32", ["bf16.enabled=true"], "bf16"),    # explicit on wins over the other's "auto"
    ("bf16", ["fp16.enabled=true"], "fp16"),
])
def test_auto_precision_decides_only_what_is_left_to_it(monkeypatch, hardware, overrides, expected):
    monkeypatch.setattr(ds_config, "hardware_precision", lambda: hardware)
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero2.json", overrides)
    assert ds_config.precision(ds_config.resolve(cfg, total_steps=5000, world_size=1)) == expected


def test_bad_batch_settings_are_one_message_not_a_traceback():
    cfg = ds_config.load_ds_config(ROOT / "ds_configs" / "zero2.json",
                                   ["train_micro_batch_size_per_gpu=auto", "gradient_accumulation_steps=0"])
    with pytest.raises(ds_config.DSConfigError) as e:
        ds_config.batch_layout(cfg)
    assert "train_micro_batch_size_per_gpu = 'auto': must be a positive integer" in str(e.value)
    assert "gradient_accumulation_steps = 0: must be a positive integer" in str(e.value)


def test_zero_1_and_2_run_as_stage_0_on_one_fp32_rank_only():
    """ds_config.one_rank_stage: one rank in fp32 has nothing to partition; everything else keeps its stage."""
    from roberta_ds.training.engine.ds_config import one_rank_stage

    def cfg(stage: int, bf16: bool = False, offload: bool = False) -> dict:
        zero = {"stage": stage, "overlap_comm": True, **({"offload_optimizer": {"device": "cpu"}} if offload else {})}
        return {"bf16": {"enabled": bf16}, "fp16": {"enabled": False}, "zero_optimization": zero}

    for stage in (1, 2):
        out, note = one_rank_stage(cfg(stage), 1, None)
        assert out["zero_optimization"] == {"stage": 0} and f"ZeRO stage {stage} runs as stage 0" in note
        assert one_rank_stage(cfg(stage), 1, 0)[0]["zero_optimization"]["stage"] == 0  # resuming a stage-0 one
    kept = [one_rank_stage(cfg(2), 2, None), one_rank_stage(cfg(2, bf16=True), 1, None),
            one_rank_stage(cfg(2, offload=True), 1, None), one_rank_stage(cfg(3), 1, None),
            one_rank_stage(cfg(2), 1, 2)]  # a checkpoint with ZeRO partitions resumes under ZeRO
    assert [(c["zero_optimization"]["stage"], note) for c, note in kept] == [(2, None), (2, None), (2, None),
                                                                            (3, None), (2, None)]
