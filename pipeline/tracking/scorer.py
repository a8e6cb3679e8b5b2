"""Raw stored samples in, latents and anomaly scores out: what a registered model answers.

The registered model (``pyfunc_model.py``), ``vaepipe serve`` and the threshold chosen at
registration all score through ``RowScorer``, so they cannot drift apart:

    rows (B, numel) uint8 or float, exactly as stored  --check_rows-->  (B, *shape)
      --stored preprocessor (deterministic: binarization thresholds at 0.5)-->  float32
      --VAE--> mu (B, L), logvar (B, L), score (B,) = one-sample negative ELBO in nats

The score's posterior sample is drawn from a generator seeded per call (``SCORE_SEED``), so one
request always gets the same answer; the process-wide torch RNG is left alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.data.batches import Preprocessor
from pipeline.errors import UserError
from vae_core import objectives
from vae_core.model import VAE

SCORE_SEED = 0
DEFAULT_QUANTILE = 0.99
MAX_ROWS = 1024  # one request's rows; more is a client error, not a reason to run out of memory


@dataclass(frozen=True)
class Scores:
    """One batch's answers, numpy on the CPU."""

    mu: np.ndarray  # (B, L) float32
    logvar: np.ndarray  # (B, L) float32
    score: np.ndarray  # (B,) float32, nats; higher = more anomalous

    def split(self, sizes: list[int]) -> list[Scores]:
        """Cut a batch's answers back into its requests' (``sizes`` rows each, in order)."""
        out, start = [], 0
        for n in sizes:
            end = start + n
            out.append(Scores(self.mu[start:end], self.logvar[start:end], self.score[start:end]))
            start = end
        return out

    def is_anomaly(self, threshold: float | None) -> np.ndarray:
        """(B,) bool; no threshold (none stored, none asked) flags nothing."""
        if threshold is None:
            return np.zeros(self.score.shape, dtype=bool)
        return self.score > threshold


def serving_preprocessor(d: dict[str, Any]) -> Preprocessor:
    """The stored preprocessor without randomness: a request has no ids, so binarization
    (dynamic or static at training) thresholds at 0.5."""
    pre = Preprocessor.from_dict(d)
    if pre.binarize != "none":
        pre = dataclasses.replace(pre, binarize="static")
    return pre


def check_rows(rows: Any, pre: Preprocessor, max_rows: int = MAX_ROWS) -> np.ndarray:
    """A request's rows → (B, *shape) array in the stored dtype, or ``UserError`` naming why.

    Accepts (B, numel) or (B, *shape); uint8 layouts take integers 0..255, float layouts any
    finite number.
    """
    layout = pre.layout
    try:
        x = np.asarray(rows)
    except ValueError:
        raise UserError("rows must be a rectangular list of numbers") from None
    if x.ndim == 0 or x.shape[0] == 0:
        raise UserError("no rows: send at least one sample")
    if x.shape[0] > max_rows:
        raise UserError(f"{x.shape[0]} rows in one request; at most {max_rows}")
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise UserError("rows must be a rectangular list of numbers")
    width = math.prod(x.shape[1:])
    if width != layout.numel:
        raise UserError(f"each row must have {layout.numel} values ({layout.shape}), got {width}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise UserError("rows contain NaN or infinity")
    return _to_layout_dtype(x, layout.dtype).reshape(x.shape[0], *layout.shape)


def _to_layout_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype != "uint8":
        return x.astype(dtype, copy=False)
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and not (x == np.round(x)).all():
            raise UserError("this model takes uint8 pixels: rows must be integers 0..255")
        if x.min() < 0 or x.max() > 255:
            raise UserError("this model takes uint8 pixels: values must be in 0..255")
    return x.astype(np.uint8, copy=False)


class RowScorer:
    """A VAE and its stored preprocessor, answering raw rows (checked by ``check_rows``)."""

    def __init__(self, vae: VAE, preprocessor: dict[str, Any], device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.pre = serving_preprocessor(preprocessor)

    def __call__(self, x: np.ndarray) -> Scores:
        """x: (B, *shape) in the stored dtype → Scores."""
        captured: list[Any] = []
        # negative_elbo runs one forward pass: keep its (mu, logvar) instead of encoding twice.
        hook = self.vae.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            with torch.inference_mode(), torch.random.fork_rng(devices=self._rng_devices()):
                torch.manual_seed(SCORE_SEED)
                inputs = self.pre(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
                score = objectives.negative_elbo(self.vae, inputs)  # (B,)
        finally:
            hook.remove()
        out = captured[-1]
        return Scores(_numpy(out.mu), _numpy(out.logvar), _numpy(score))

    def _rng_devices(self) -> list[int]:
        if self.device.type == "cuda":
            return [self.device.index or 0]
        return []


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def threshold_from(scores: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> float:
    """The anomaly threshold: this quantile of the validation scores."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"threshold quantile must be in (0, 1), got {quantile}")
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        raise ValueError("no finite validation scores to choose a threshold from")
    return float(np.quantile(finite, quantile))


def score_in_chunks(scorer: RowScorer, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """(N,) scores of many raw rows, ``chunk`` at a time."""
    parts = [scorer(rows[i : i + chunk]).score for i in range(0, len(rows), chunk)]
    return np.concatenate(parts) if parts else np.empty(0, np.float32)
