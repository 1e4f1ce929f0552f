"""The sums behind the records: a logging window's sums over all ranks (WindowTotals), accumulated on the device
without a host sync per step (WindowAccumulator), and an epoch's (EpochTotals)."""

from __future__ import annotations

from dataclasses import dataclass, field

@dataclass
class WindowTotals:
    """One logging window's sums over all ranks."""

    loss_sum: float
    correct: float
    masked: float
    tokens: float
    steps: int
    source_sequences: list[float] = field(default_factory=list)
    """Mixtures: sequences per source (all ranks)."""
    source_tokens: list[float] = field(default_factory=list)
    """Mixtures: non-padding tokens per source (all ranks)."""

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.masked, 1.0)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.masked, 1.0)


class WindowAccumulator:
    """Sums of the current logging window. The loss sums stay on the device (no host sync per step);
    masked and real token counts are known on the host from the loader. ``close`` is the loop's one sync."""

    def __init__(self, device, n_sources: int = 0) -> None:
        import torch

        self._device = device
        self._acc = torch.zeros(2, dtype=torch.float64, device=device)  # loss_sum, correct
        self._host = [0, 0]  # masked tokens, real tokens
        self.n_sources = n_sources
        self._sources = [0.0] * (2 * n_sources)  # mixtures: sequences, then tokens, per source (host numbers)
        self.steps = 0

    def add(self, loss_sum, correct, n_masked: int, n_tokens: int, source_counts=None) -> None:
        import torch

        self._acc += torch.stack([loss_sum.detach().double(), correct.detach().double()])
        self._host[0] += n_masked
        self._host[1] += n_tokens
        if source_counts is not None:
            self._sources = [a + float(b) for a, b in zip(self._sources, source_counts)]

    def close(self) -> WindowTotals:
        """Sum the window over ranks, read it, and start a new window."""
        import torch
        import torch.distributed as dist

        host = torch.tensor(self._host + self._sources, dtype=torch.float64, device=self._device)
        total = torch.cat([self._acc, host])
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(total)
        loss_sum, correct, masked, tokens, *src = total.tolist()
        n = self.n_sources
        out = WindowTotals(loss_sum, correct, masked, tokens, self.steps, src[:n], src[n:])
        self._acc.zero_()
        self._host = [0, 0]
        self._sources = [0.0] * (2 * n)
        self.steps = 0
        return out


@dataclass
class EpochTotals:
    """An epoch's sums so far (all ranks): its mean loss is loss_sum / masked."""

    loss_sum: float = 0.0
    masked: float = 0.0
    tokens: float = 0.0
    steps: int = 0

    def add(self, w: WindowTotals) -> None:
        self.loss_sum += w.loss_sum
        self.masked += w.masked
        self.tokens += w.tokens
        self.steps += w.steps

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.masked, 1.0)

