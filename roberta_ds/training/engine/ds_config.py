"""DeepSpeed configuration: ds_configs/*.json are the single source of engine settings.

This module loads a file, applies ``--ds key.path=value`` overrides, resolves the few
``"auto"`` values that are derived (scheduler total steps, warmup peak = optimizer lr,
precision), and checks the result, collecting every problem before raising once.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path

import torch

AUTO = "auto"

# Top-level keys DeepSpeed 0.19 reads; anything else is silently ignored by DeepSpeed, so we refuse it.
KNOWN_TOP_LEVEL = {
    "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "optimizer",
    "scheduler", "gradient_clipping", "fp16", "bf16", "zero_optimization", "steps_per_print",
    "wall_clock_breakdown", "prescale_gradients", "gradient_predivide_factor", "communication_data_type",
    "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "activation_checkpointing",
    "flops_profiler", "comms_logger", "tensorboard", "wandb", "csv_monitor", "checkpoint", "data_types",
    "aio", "dump_state", "torch_autocast", "memory_breakdown", "compile", "seq_parallel_communication_data_type",
    "gradient_accumulation_dtype", "dataloader_drop_last", "timers", "disable_allgather", "sparse_gradients",
}
REQUIRED = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "optimizer", "gradient_clipping")


class DSConfigError(ValueError):
    pass


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise DSConfigError(f"--ds {text!r}: expected KEY.PATH=VALUE, e.g. --ds optimizer.params.lr=5e-4")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare strings: --ds zero_optimization.offload_optimizer.device=cpu
    return key.strip().split("."), value


def load_ds_config(path: str | Path, overrides: list[str]) -> dict:
    path = Path(path)
    if not path.exists():
        shipped = sorted(p.name for p in (Path(__file__).resolve().parents[3] / "ds_configs").glob("*.json"))
        raise DSConfigError(f"--ds_config {path}: no such file (shipped configs in ds_configs/: {shipped})")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DSConfigError(f"--ds_config {path}: not valid JSON ({e})") from e
    problems = []
    for text in overrides:
        try:
            keys, value = parse_override(text)
        except DSConfigError as e:
            problems.append(str(e))
            continue
        node = cfg
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                problems.append(f"--ds {text}: {k!r} is not a section")
                break
            node = node.setdefault(k, {})
        else:
            node[keys[-1]] = value
    problems += check_keys(cfg)
    if problems:
        raise DSConfigError("DeepSpeed config problems:\n  " + "\n  ".join(problems))
    return cfg


def check_keys(cfg: dict) -> list[str]:
    problems = []
    for key in cfg:
        if key not in KNOWN_TOP_LEVEL:
            near = difflib.get_close_matches(key, KNOWN_TOP_LEVEL, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"unknown DeepSpeed key {key!r}{hint}")
    zero = cfg.get("zero_optimization")
    if isinstance(zero, dict):
        from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

        try:
            DeepSpeedZeroConfig(**zero)
        except Exception as e:  # pydantic ValidationError: lists every bad field
            lines = [ln for ln in str(e).splitlines() if ln and not ln.startswith("  For further")]
            problems.append("zero_optimization: " + "; ".join(lines[1:] or lines))
    return problems


def zero_stage(cfg: dict) -> int:
    """The ZeRO stage of a (resolved) DeepSpeed config; 0 without zero_optimization."""
    return (cfg.get("zero_optimization") or {}).get("stage", 0)


def peak_lr(cfg: dict) -> float | None:
    """The optimizer's configured learning rate (the schedule's peak)."""
    return ((cfg.get("optimizer") or {}).get("params") or {}).get("lr")


def precision(cfg: dict) -> str:
    """'bf16', 'fp16' or 'fp32' after resolution; before it, 'bf16/fp16' while an "auto" is still undecided."""
    if cfg.get("bf16", {}).get("enabled") is True:
        return "bf16"
    if cfg.get("fp16", {}).get("enabled") is True:
        return "fp16"
    if any(cfg.get(p, {}).get("enabled") == AUTO for p in ("bf16", "fp16")):
        return "bf16/fp16"
    return "fp32"


def one_rank_stage(cfg: dict, world_size: int, saved_stage: int | None) -> tuple[dict, str | None]:
    """The resolved config to run, and a note when it differs: on one rank in fp32, ZeRO-1 and -2 run as stage 0.

    One rank has nothing to partition, and in fp32 their bookkeeping (gradient buckets, a flat fp32 copy of every
    weight updated and copied back) cost 13 % of the step against stage 0 on the AMD EPYC (bench/README.md, "On the
    AMD EPYC"). A stage-0 checkpoint resumes on more ranks under ZeRO-1/2 (checkpoint.load). Kept as configured:
    bf16/fp16 (DeepSpeed's stage-0 optimizers for them keep the same fp32 copies), offload, stage 3, more ranks, and
    a resume of a checkpoint saved with ZeRO partitioning (``saved_stage`` > 0), whose optimizer files need it."""
    zero = cfg.get("zero_optimization") or {}
    stage = zero.get("stage", 0)
    offload = zero.get("offload_optimizer", {}).get("device", "none") not in ("none", None)
    if world_size != 1 or stage not in (1, 2) or precision(cfg) != "fp32" or offload or saved_stage not in (None, 0):
        return cfg, None
    out = copy.deepcopy(cfg)
    out["zero_optimization"] = {"stage": 0}  # the other keys are stage-1/2 settings
    return out, (f"ZeRO stage {stage} runs as stage 0 on this one rank (fp32: nothing to partition, and its buckets "
                 "and fp32 copies cost about an eighth of the step); checkpoints resume on more ranks under ZeRO-1/2")


def _static_problems(cfg: dict) -> list[str]:
    """Problems visible in the file alone (no run length or hardware needed)."""
    problems = [f"missing {k!r}: write it explicitly in the ds_config" for k in REQUIRED if k not in cfg]
    if "train_batch_size" in cfg:
        problems.append(
            "train_batch_size is set: leave it out so the file works at any world size "
            "(it is derived: micro batch x gradient accumulation x ranks)"
        )
    for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        if k in cfg and (not isinstance(cfg[k], int) or isinstance(cfg[k], bool) or cfg[k] < 1):
            problems.append(f"{k} = {cfg[k]!r}: must be a positive integer")
    if cfg.get("bf16", {}).get("enabled") is True and cfg.get("fp16", {}).get("enabled") is True:
        problems.append("bf16.enabled and fp16.enabled are both true: choose one")
    return problems


def batch_layout(cfg: dict) -> tuple[int, int]:
    """(micro batch per rank, accumulation steps); unusable values raise one error listing every problem in the
    file. Otherwise the remaining problems are reported by ``resolve``, together with the run-length ones."""
    keys = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    usable = all(isinstance(cfg.get(k), int) and not isinstance(cfg[k], bool) and cfg[k] >= 1 for k in keys)
    if not usable:  # nothing else can be checked without a batch layout: report what is known now
        raise DSConfigError("DeepSpeed config problems:\n  " + "\n  ".join(_static_problems(cfg)))
    return cfg[keys[0]], cfg[keys[1]]


def hardware_precision() -> str:
    """What "auto" means here: bf16 on GPUs with native bf16 (Ampere+), fp16 on older GPUs, fp32 on CPU."""
    if not torch.cuda.is_available():
        return "fp32"
    try:  # torch >= 2.3 counts emulated bf16 (V100, T4) as supported unless told not to
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp16"


def check_device_precision(cfg: dict) -> None:
    """A resolved fp16/bf16 that this device cannot run, named before DeepSpeed fails with a bare "not supported"."""
    from deepspeed.accelerator import get_accelerator

    accel, problems = get_accelerator(), []
    for p, supported in (("fp16", accel.is_fp16_supported), ("bf16", accel.is_bf16_supported)):
        if cfg.get(p, {}).get("enabled") is True and not supported():
            hint = (" (DeepSpeed's CPU accelerator needs AVX512-FP16 for fp16)" if accel.device_name() == "cpu" else "")
            problems.append(f"{p}.enabled = true but this {accel.device_name()} device does not support {p}{hint}: "
                            f"use --ds {p}.enabled=false (fp32), or \"auto\" to let the hardware choose")
    if problems:
        raise DSConfigError("DeepSpeed config problems:\n  " + "\n  ".join(problems))


def resolve(cfg: dict, *, total_steps: int, world_size: int) -> dict:
    """Fill derived "auto" values and check the settings against each other; one error lists every problem."""
    cfg = copy.deepcopy(cfg)
    problems = _static_problems(cfg)

    # Precision: only keys set to "auto" are decided here; an explicit true/false is never rewritten.
    want = {p: cfg.get(p, {}).get("enabled", False) for p in ("bf16", "fp16")}
    autos = [p for p, v in want.items() if v == AUTO]
    if autos:
        explicit_on = [p for p, v in want.items() if v is True]
        hardware = hardware_precision()
        # The hardware's choice if it is left to "auto"; else (explicitly off, or the other one on) nothing.
        pick = None if explicit_on else (hardware if hardware in autos else None)
        for p in autos:
            cfg[p]["enabled"] = pick == p

    opt = cfg.get("optimizer", {})
    lr = opt.get("params", {}).get("lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        problems.append(f"optimizer.params.lr = {lr!r}: must be a positive number")
    sched = cfg.get("scheduler")
    if sched is not None:
        params = sched.setdefault("params", {})
        if params.get("total_num_steps") == AUTO:
            params["total_num_steps"] = total_steps
        elif "total_num_steps" in params and params["total_num_steps"] != total_steps:
            problems.append(
                f"scheduler.params.total_num_steps = {params['total_num_steps']} but the run has {total_steps} "
                "steps: set it to \"auto\" (derived from epochs or --max_steps)"
            )
        if params.get("warmup_max_lr") == AUTO:
            params["warmup_max_lr"] = lr
        warm = params.get("warmup_num_steps", 0)
        if isinstance(warm, int) and warm >= total_steps and sched.get("type") == "WarmupDecayLR":
            problems.append(
                f"scheduler.params.warmup_num_steps = {warm} >= the run's {total_steps} steps: the lr would never "
                f"decay; lower it, e.g. --ds scheduler.params.warmup_num_steps={max(1, total_steps // 10)}"
            )
        for k, v in params.items():
            if v == AUTO:
                problems.append(f"scheduler.params.{k} = \"auto\": only total_num_steps and warmup_max_lr are derived")
    zero = cfg.get("zero_optimization", {})
    stage = zero.get("stage", 0)
    if zero.get("offload_param", {}).get("device", "none") not in ("none", None) and stage != 3:
        problems.append(f"zero_optimization.offload_param needs stage 3 (stage is {stage})")
    for key, value in _walk(cfg):
        if value == AUTO:
            problems.append(f"{key} = \"auto\" is not a derived setting here: give a value")
    if problems:
        raise DSConfigError("DeepSpeed config problems:\n  " + "\n  ".join(problems))
    return cfg


def _walk(d: dict, prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _walk(v, key + ".")
        else:
            yield key, v
