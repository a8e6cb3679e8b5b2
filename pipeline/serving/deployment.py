"""The Ray Serve deployment behind ``vaepipe serve``: HTTP JSON in, micro-batched scoring.

One replica holds one ``ServedModel``. Requests are parsed and checked on the replica's event
loop; their rows wait up to ``batch_wait_s`` to be scored together (Serve's ``@serve.batch``,
counted in rows, at most ``max_batch``), and the torch work runs in a thread so the loop keeps
parsing the next requests meanwhile. A request with more rows than ``max_batch`` is a batch
already and is scored at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import numpy as np
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from pipeline.serving.http_io import (
    MAX_BODY_BYTES,
    BadRequest,
    error_body,
    json_body,
    parse_request,
    predictions,
)
from pipeline.serving.served_model import ServedModel, current_version, load_served
from pipeline.tracking.scorer import Scores

log = logging.getLogger(__name__)


def _rows_in(items: list[np.ndarray]) -> int:
    return sum(len(x) for x in items)


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json_body(payload), status, media_type="application/json")


def _error(exc: BadRequest) -> Response:
    return Response(error_body(exc.message), exc.status, media_type="application/json")


@serve.deployment(name="VaeScorer")
class VaeScorer:
    def __init__(
        self,
        uri: str,
        max_batch: int = 64,
        batch_wait_s: float = 0.005,
        device: str = "cpu",
        threads: int = 1,
        poll_s: float = 5.0,
    ) -> None:
        torch.set_num_threads(threads)
        self.uri, self.device, self.max_batch = uri, device, max_batch
        self.model: ServedModel = load_served(uri, device)
        self.score_batch.set_max_batch_size(max_batch)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_s)
        self._stop = threading.Event()
        if "@" in uri and poll_s > 0:  # an alias can move; a version number cannot
            threading.Thread(target=self._follow_alias, args=(poll_s,), daemon=True).start()

    def _follow_alias(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                version = current_version(self.uri)
                if version != self.model.version:
                    new = load_served(self.uri, self.device)
                    log.info(
                        "alias moved: %s version %s -> %s",
                        self.uri,
                        self.model.version,
                        new.version,
                    )
                    self.model = new  # one assignment: batches in flight keep the old one
            except Exception as exc:  # a registry hiccup must not stop serving the loaded one
                log.warning(
                    "checking %s failed, still serving version %s: %s",
                    self.uri,
                    self.model.version,
                    exc,
                )

    def __del__(self) -> None:
        self._stop.set()

    async def __call__(self, request: Request) -> Response:
        # The scope's path, not ``request.url``: building a URL object cost ~2% of the replica's
        # CPU per request (py-spy, 32 clients).
        path = request.scope["path"].rstrip("/")
        if request.method == "GET" and path == "/healthz":
            return _json({"status": "ok"})
        if request.method == "GET" and path == "/readyz":
            return _json({"ready": True, **self.model.identity()})
        if path not in ("", "/predict"):
            return _error(BadRequest(404, f"no route {path}: POST / or /predict, GET /healthz"))
        if request.method != "POST":
            return _error(BadRequest(405, "use POST with a JSON body"))
        try:
            return await self._predict(request)
        except BadRequest as exc:
            return _error(exc)

    async def _predict(self, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body over {MAX_BODY_BYTES} bytes")
        parsed = parse_request(await request.body(), self.model.scorer.pre)
        if len(parsed.rows) > self.max_batch:
            model = self.model
            scores = await asyncio.to_thread(model.scorer, parsed.rows)
        else:
            model, scores = await self.score_batch(parsed.rows)
        threshold = model.threshold if parsed.threshold is None else parsed.threshold
        return _json({**model.identity(), "predictions": predictions(scores, threshold)})

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=_rows_in)
    async def score_batch(self, batches: list[np.ndarray]) -> list[tuple[ServedModel, Scores]]:
        """Score several requests' rows (each (b_i, *shape)) in one forward pass."""
        model = self.model  # the whole batch runs on one version, whatever happens meanwhile
        scores = await asyncio.to_thread(model.scorer, np.concatenate(batches))
        return [(model, part) for part in scores.split([len(rows) for rows in batches])]
