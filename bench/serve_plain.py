"""The plain baseline for ``bench/serve.py``: one uvicorn process, one Starlette route, the
torch model in memory, and the same micro-batching as ``vaepipe serve`` (rows of requests
arriving within ``--batch-wait-ms`` are scored together, at most ``--max-batch``).

It parses, checks, batches, scores and answers with the very code ``vaepipe serve`` uses
(``http_io``, ``MicroBatcher``, ``score_parts``), so the difference between the two is Ray Serve
itself.

    python bench/serve_plain.py --model models:/NAME@ALIAS --port 8100
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from pipeline.serving.batcher import MicroBatcher  # noqa: E402
from pipeline.serving.http_io import BadRequest, error_body, parse_request, predictions  # noqa: E402
from pipeline.serving.served_model import ServedModel, load_served, score_parts  # noqa: E402
from pipeline.tracking import mlflow_store  # noqa: E402


def build_app(model: ServedModel, batcher: MicroBatcher) -> Starlette:
    async def predict(request: Request) -> Response:
        try:
            parsed = parse_request(await request.body(), model.scorer.pre)
        except BadRequest as exc:
            return Response(error_body(exc.message), exc.status, media_type="application/json")
        _, scores = await batcher(parsed.rows)
        threshold = model.threshold if parsed.threshold is None else parsed.threshold
        body = {**model.identity(), "predictions": predictions(scores, threshold)}
        return Response(json.dumps(body).encode(), media_type="application/json")

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
    batcher = MicroBatcher(partial(score_parts, model), args.max_batch, args.batch_wait_ms / 1000)
    app = build_app(model, batcher)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
