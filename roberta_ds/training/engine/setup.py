"""Process group and DeepSpeed engine setup (CUDA/NCCL on GPUs, gloo through DeepSpeed's CPU accelerator)."""

from __future__ import annotations

import importlib
import logging
import os

import deepspeed
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from torch import nn

from roberta_ds.training.engine import launch_env


def init_distributed() -> tuple[int, int, int]:
    """Join (or create) the process group; returns (rank, world_size, local_rank).

    The world comes from whichever launcher started the process (launch_env: deepspeed, torchrun, srun, mpirun);
    a process started by none is a 1-rank run. Its variables are written as torch.distributed's (RANK, ...), so
    DeepSpeed never falls back to MPI discovery (which fails on a missing mpi4py).
    """
    global LAUNCH
    if dist.is_initialized() and LAUNCH is not None:  # main() called again in one process (tests): same world
        return dist.get_rank(), dist.get_world_size(), LAUNCH.local_rank
    world = launch_env.detect()
    world.export()
    LAUNCH = world
    if not os.environ.get("ROBERTA_DS_VERBOSE"):
        # DeepSpeed logs every engine setting at INFO; our own log says what matters.
        from deepspeed.utils import logger as ds_logger

        ds_logger.setLevel(logging.WARNING)
    accel = get_accelerator()
    if accel.device_name() == "cpu":
        # Ranks on one CPU host share its cores; oversubscription made ZeRO-3 6x slower (docs/architecture.md).
        if "OMP_NUM_THREADS" not in os.environ or world.local_world_size > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, world.local_world_size)))
        _skip_shm_comm_op()
    else:
        # srun --gpus-per-task shows each task only its own GPU(s): the local rank then counts past them.
        accel.set_device(world.local_rank % max(1, accel.device_count()))
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=accel.communication_backend_name())
    return dist.get_rank(), dist.get_world_size(), world.local_rank


LAUNCH: launch_env.World | None = None
"""How this process's world was formed (set by init_distributed; the run's log header names it)."""


def _skip_shm_comm_op() -> None:
    """Do not build DeepSpeed's shared-memory all-reduce op: training never calls it.

    On the CPU accelerator DeepSpeed compiles that C++ op (deepspeed_shm_comm) whenever its comm layer starts,
    whatever the world size: 26-37 s of a fresh 2-core machine's first run (bench/README). Only
    ``deepspeed.comm.inference_all_reduce`` uses it, the all-reduce of DeepSpeed's tensor-parallel inference
    (module_inject); training's collectives (ZeRO's reduce-scatter and all-gather, the loss and eval all-reduces)
    go through torch.distributed (gloo on a CPU) with or without it. DeepSpeed has no setting for it, so its
    builder is replaced before the comm layer starts, in this process only.
    """
    # importlib, not `import deepspeed.comm.torch as m`: that resolves to the torch package that
    # deepspeed.comm imports under the same name.
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def device() -> torch.device:
    accel = get_accelerator()
    if accel.device_name() == "cpu":
        return torch.device("cpu")
    return torch.device(accel.device_name(), accel.current_device())


def param_groups(model: nn.Module) -> list[dict]:
    """Weight decay on matrices only: biases and LayerNorm weights get none (BERT, RoBERTa)."""
    decay, no_decay = [], []
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied decoder/embedding weight appears once
            continue
        seen.add(id(p))
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_engine(model: nn.Module, ds_config: dict):
    engine, _, _, scheduler = deepspeed.initialize(model=model, model_parameters=param_groups(model), config=ds_config)
    if not (engine.zero_optimization() or engine.fp16_enabled() or engine.bfloat16_enabled()):
        _keep_clip_norm(engine)
    return engine, scheduler


def _keep_clip_norm(engine) -> None:
    """DeepSpeed's fp32 stage-0 step clips the gradients and drops the norm it computed (clip_fp32_gradients), so
    get_global_grad_norm() is None there, where ZeRO and the bf16/fp16 optimizers keep it: keep it too (the same
    clip_grad_norm_ call, its result stored; no extra work)."""
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip() -> None:
        engine._global_grad_norm = clip_grad_norm_(parameters=engine.module.parameters(),
                                                   max_norm=engine.gradient_clipping(), mpu=engine.mpu)

    engine.clip_fp32_gradients = clip


def optimizer_implementation(engine) -> str:
    """Which Adam ran: torch's (DeepSpeed's ``torch_adam``, the shipped configs: nothing to compile) or one of
    DeepSpeed's compiled ops (FusedAdam, DeepSpeedCPUAdam: JIT-built with a compiler on first use)."""
    opt = getattr(engine, "basic_optimizer", None) or _base_optimizer(engine)
    kind = type(opt)
    if kind.__module__.startswith("torch."):
        foreach = opt.defaults.get("foreach")
        fused = opt.defaults.get("fused")
        how = "fused" if fused else "foreach" if foreach else "for-loop" if foreach is False else "torch's default kernel"
        return f"torch.optim.{kind.__name__} ({how}; no compiled op)"
    op = {"FusedAdam": "fused_adam", "DeepSpeedCPUAdam": "cpu_adam"}.get(kind.__name__)
    return f"deepspeed {kind.__name__}" + (f" (compiled op {op})" if op else "")


def _base_optimizer(engine):
    opt = engine.optimizer
    for _ in range(4):  # ZeRO / fp16 wrappers keep the real optimizer as .optimizer
        if type(opt).__name__ in ("FusedAdam", "DeepSpeedCPUAdam") or not hasattr(opt, "optimizer"):
            break
        opt = opt.optimizer
    return opt


def beta_power_reset(engine):
    """A function to call before every optimizer step so that Adam computes beta^t with pow(), or None.

    DeepSpeed's CPU Adam kernel (DeepSpeedCPUAdam, used for ZeRO offload; and FusedAdam on the CPU
    accelerator) keeps beta1^t and beta2^t in C++ state and advances them by one multiplication per
    step, but computes them with pow() when the betas or the step jump, as in a process that has just
    loaded a checkpoint. The two differ in the last bit, so a resumed run drifted from an uninterrupted
    one (7.5e-7 to 1.3e-6 in the final weights, issue 10). Resetting before every step puts every step
    on pow(), whatever the process has done before: resume is bitwise from any checkpoint. The reset runs
    the kernel once on a 1-element dummy with betas of 0 (no real tensor is touched; microseconds).
    CUDA's FusedAdam keeps no such state: None.
    """
    opt = _base_optimizer(engine)
    kind = type(opt).__name__
    p, g, m, v = (torch.zeros(1, dtype=torch.float32) for _ in range(4))
    if kind == "DeepSpeedCPUAdam":
        return lambda: opt.ds_opt_adam.adam_update(opt.opt_id, 1, 0.0, 0.0, 0.0, 1e-8, 0.0, True, p, g, m, v)
    if kind == "FusedAdam" and get_accelerator().device_name() == "cpu":
        mode = int(opt.adam_w_mode)
        return lambda: opt.multi_tensor_adam(2048 * 32, opt._dummy_overflow_buf, [[g], [p], [m], [v]], 0.0, 0.0, 0.0,
                                             1e-8, 1, mode, 1, 0.0)
    return None
