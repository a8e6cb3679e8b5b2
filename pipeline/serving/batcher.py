"""Micro-batching for ``vaepipe serve``: requests' rows arriving close together, scored at once.

The first request of a batch waits at most ``wait_s`` for others; the batch closes earlier when
``max_rows`` rows are in, and a request whose rows would overflow it opens the next batch. The
scoring function runs in a worker thread, so the event loop keeps reading and parsing requests
meanwhile; one batch scores at a time.

Why not Ray Serve's ``@serve.batch``: on a 2-core host ``bench/serve.py`` measured its
bookkeeping per call (argument flattening through ``inspect.signature``, a batch-size function
re-run over the whole batch on every arrival, metrics per wake-up) at about 0.09 ms of the
replica's 0.41 ms CPU per request, the largest share of what the replica spent beyond the plain
ASGI app. This is the same policy with nothing else per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

R = TypeVar("R")


class MicroBatcher(Generic[R]):
    """``await batcher(rows)`` → this request's answer, from ``score(parts)``: one call per
    batch with every request's rows, in arrival order, returning one answer per part."""

    def __init__(
        self, score: Callable[[list[np.ndarray]], list[R]], max_rows: int, wait_s: float
    ) -> None:
        self.score, self.max_rows, self.wait_s = score, max_rows, wait_s
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] | None = None
        self.task: asyncio.Task | None = None  # the batching loop; held so it is not collected
        self.carried: tuple[np.ndarray, asyncio.Future] | None = None  # opens the next batch

    async def __call__(self, rows: np.ndarray) -> R:
        if self.task is None:  # created on first use, in the loop that serves the requests
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((rows, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            parts = [rows for rows, _ in batch]
            try:
                answers = await asyncio.to_thread(self.score, parts)
            except Exception as exc:  # every request of the batch gets the error, not a hang
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # a request cancelled meanwhile has nobody to answer
                    future.set_result(answer)

    async def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        first, self.carried = self.carried, None
        batch = [first if first is not None else await self.queue.get()]
        rows = len(batch[0][0])
        deadline = loop.time() + self.wait_s
        while rows < self.max_rows:
            left = deadline - loop.time()
            try:  # past the deadline, still take what is already queued
                item = (
                    self.queue.get_nowait()
                    if left <= 0
                    else await asyncio.wait_for(self.queue.get(), left)
                )
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if rows + len(item[0]) > self.max_rows:
                self.carried = item
                break
            batch.append(item)
            rows += len(item[0])
        return batch
