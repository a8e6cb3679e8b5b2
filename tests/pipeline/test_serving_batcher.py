"""``vaepipe serve``'s micro-batching without servers: rows batched, order kept, errors spread."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.serving.batcher import MicroBatcher


def rows(*ids: int) -> np.ndarray:
    return np.array([[i] for i in ids])  # (len(ids), 1): one row per id


def run_requests(batcher: MicroBatcher, requests: list[np.ndarray]) -> list:
    async def main():
        return await asyncio.gather(*(batcher(r) for r in requests))

    return asyncio.run(main())


def test_requests_are_batched_in_rows_and_answered_in_order():
    calls: list[list[int]] = []

    def score(parts):  # one call per batch; answers: each request's ids, doubled
        calls.append([int(i) for p in parts for i in p[:, 0]])
        return [(p[:, 0] * 2).tolist() for p in parts]

    batcher = MicroBatcher(score, max_rows=3, wait_s=0.05)
    answers = run_requests(batcher, [rows(1), rows(2, 3), rows(4), rows(5)])
    assert answers == [[2], [4, 6], [8], [10]]
    # 3 rows close the first batch; the next request would overflow it and opens the second.
    assert calls == [[1, 2, 3], [4, 5]]


def test_a_failing_batch_fails_its_requests_and_the_next_batch_is_served():
    def score(parts):
        if any(p[0, 0] < 0 for p in parts):
            raise ValueError("bad batch")
        return [int(p[0, 0]) for p in parts]

    batcher = MicroBatcher(score, max_rows=2, wait_s=0.01)

    async def main():
        bad = await asyncio.gather(batcher(rows(-1)), batcher(rows(1)), return_exceptions=True)
        good = await batcher(rows(7))
        return bad, good

    bad, good = asyncio.run(main())
    assert all(isinstance(e, ValueError) for e in bad)
    assert good == 7


@pytest.mark.parametrize("wait_s", [0.0, 0.01])
def test_a_lone_request_is_scored_after_the_wait(wait_s):
    batcher = MicroBatcher(lambda parts: [len(p) for p in parts], max_rows=64, wait_s=wait_s)
    assert run_requests(batcher, [rows(1, 2)]) == [2]
