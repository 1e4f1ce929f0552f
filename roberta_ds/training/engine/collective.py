"""Agreement across ranks: the one way a rank-local fact (a signal arrived, a write failed, a loss is not
finite) becomes a decision every rank takes at the same point, so no rank is left waiting in a collective."""

from __future__ import annotations

import torch
import torch.distributed as dist


def any_rank(flag: bool | torch.Tensor) -> bool:
    """Whether ``flag`` is true on any rank: one value all-reduced with MAX and read on the host (on a single
    rank, just read). ``flag`` may be a device tensor; NCCL needs the value on the GPU."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return bool(flag)
    t = flag.detach().double().reshape(1) if torch.is_tensor(flag) else torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl" and not t.is_cuda:
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


AGREE_STEPS = 5
"""Steps between the ranks' agreement points (a one-value collective): on a stop request (preemption.StopRequest)
and on the clock of a time budget or timed evaluations (schedule.RunClock.sync), so every rank acts after the same
step. On GPUs each is a host sync: every 5 steps costs nothing measurable next to the step."""
