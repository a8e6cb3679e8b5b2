"""The plain baseline for ``bench/serve.py``: one uvicorn process, one Starlette route, the
torch model in memory, and the same micro-batching as ``vaepipe serve`` written by hand (rows
of requests arriving within ``--batch-wait-ms`` are scored together, at most ``--max-batch``).

It parses, checks, scores and answers with the very functions ``vaepipe serve`` uses
(``http_io``, ``RowScorer``), so the difference between the two is Ray Serve itself.

    python bench/serve_plain.py --model models:/NAME@ALIAS --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from pipeline.serving.http_io import (  # noqa: E402
    BadRequest,
    error_body,
    json_body,
    parse_request,
    predictions,  # noqa: E402
)
from pipeline.serving.served_model import ServedModel, load_served  # noqa: E402
from pipeline.tracking import mlflow_store  # noqa: E402
from pipeline.tracking.scorer import Scores  # noqa: E402


class MicroBatcher:
    """Collect (rows, future) pairs; score up to ``max_batch`` rows in one call in a thread."""

    def __init__(self, model: ServedModel, max_batch: int, wait_s: float) -> None:
        self.model, self.max_batch, self.wait_s = model, max_batch, wait_s
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def score(self, rows: np.ndarray) -> Scores:
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0])
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while size < self.max_batch:
                left = deadline - asyncio.get_running_loop().time()
                try:  # as ``serve.batch``: past the deadline, still take what is queued
                    item = (
                        self.queue.get_nowait()
                        if left <= 0
                        else await asyncio.wait_for(self.queue.get(), left)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(item[0]) > self.max_batch:
                    self.queue.put_nowait(item)  # next batch's (serve.batch defers it too)
                    break
                batch.append(item)
                size += len(item[0])
            rows = np.concatenate([r for r, _ in batch])
            scores = await asyncio.to_thread(self.model.scorer, rows)
            parts = scores.split([len(r) for r, _ in batch])
            for (_, future), part in zip(batch, parts, strict=True):
                future.set_result(part)


def build_app(model: ServedModel, batcher: MicroBatcher) -> Starlette:
    async def predict(request: Request) -> Response:
        try:
            parsed = parse_request(await request.body(), model.scorer.pre)
        except BadRequest as exc:
            return Response(error_body(exc.message), exc.status, media_type="application/json")
        scores = await batcher.score(parsed.rows)
        threshold = model.threshold if parsed.threshold is None else parsed.threshold
        body = {**model.identity(), "predictions": predictions(scores, threshold)}
        return Response(json_body(body), media_type="application/json")

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/", predict, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mlflow_store.configure()
    model = load_served(args.model)
    app = build_app(model, MicroBatcher(model, args.max_batch, args.batch_wait_ms / 1000.0))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
