"""The ordered, bounded process pool of pack and near-dups: results in input order, so outputs do not depend on the
number of workers."""

from __future__ import annotations

import multiprocessing as mp
from collections import deque

from data_tools import tokenize_worker


class OrderedPool:
    """Ordered, bounded pool: at most 2 chunks per worker in flight, so memory stays flat
    (multiprocessing's imap would read the whole corpus ahead into its task queue).
    One worker runs in-process: no IPC, the same code path."""

    def __init__(self, workers: int, init, init_args: tuple):
        self.workers, self.init, self.init_args, self.pool = workers, init, init_args, None

    def __enter__(self) -> "OrderedPool":
        if self.workers > 1:
            # spawn, not fork: the parent may hold tokenizers/OpenMP threads that fork would copy mid-state.
            self.pool = mp.get_context("spawn").Pool(self.workers, self.init, self.init_args)
        else:
            self.init(*self.init_args)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def map_ordered(self, chunks, fn=tokenize_worker.process_chunk):
        if self.pool is None:
            for c in chunks:
                yield fn(c)
            return
        inflight: deque = deque()
        for c in chunks:
            inflight.append(self.pool.apply_async(fn, (c,)))
            if len(inflight) >= 2 * self.workers:
                yield inflight.popleft().get()
        while inflight:
            yield inflight.popleft().get()
