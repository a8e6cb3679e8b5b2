"""One pass over a stream of batches: train, validate, test. Plain torch, no Ray, no MLflow.

Each function takes an iterable of model-ready tensors ``x`` (B, *input_shape) and returns
sums (not means) so that the distributed loop can all-reduce them across ranks before dividing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vae_core.config import ObjectiveConfig
from vae_core.objectives import elbo, importance_sampled_nll, iwae_bound
from vae_core.training import train_step

NLL_CHUNK = 100  # importance samples per chunk: memory ~ NLL_CHUNK x B x features floats
MAX_MU_ROWS = 10_000  # posterior means kept for the active-units estimate


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: fp32) and whether fp16 needs a GradScaler."""

    dtype: torch.dtype | None = None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """``auto``: bf16 on GPUs that support it, fp16 (+GradScaler) on older GPUs, fp32 on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return Precision(None)
    if precision == "auto":
        bf16 = torch.cuda.is_bf16_supported()
        return Precision(torch.bfloat16 if bf16 else torch.float16)
    return Precision(torch.bfloat16 if precision == "bf16" else torch.float16)


@dataclass
class EpochSums:
    """Per-epoch sums over examples; ``means()`` divides by ``examples``."""

    loss: float = 0.0
    reconstruction: float = 0.0
    kl: float = 0.0
    neg_elbo: float = 0.0
    neg_iw_bound: float = 0.0  # -(k-sample IWAE bound); validation with iw_samples > 1 only
    examples: int = 0
    seconds: float = 0.0
    first_batch_at: float | None = None  # wall clock (time.time) when the first batch arrived
    mu: Tensor | None = field(default=None, repr=False)

    def as_list(self) -> list[float]:
        terms = [self.loss, self.reconstruction, self.kl, self.neg_elbo, self.neg_iw_bound]
        return [*terms, float(self.examples)]

    def replace_sums(self, values: list[float]) -> None:
        self.loss, self.reconstruction, self.kl, self.neg_elbo, self.neg_iw_bound = values[:5]
        self.examples = int(round(values[5]))

    def means(self) -> dict[str, float]:
        n = max(1, self.examples)
        out = {
            "loss": self.loss / n,
            "reconstruction": self.reconstruction / n,
            "kl": self.kl / n,
            "neg_elbo": self.neg_elbo / n,
        }
        if self.neg_iw_bound:
            out["neg_iw_bound"] = self.neg_iw_bound / n
        return out


def _add_terms(acc: list[Tensor], terms, batch: int) -> None:
    # Stays on the device: no host sync per step (matters on GPU).
    for i, t in enumerate((terms.loss, terms.reconstruction, terms.kl, terms.neg_elbo)):
        acc[i] += t.detach().float() * batch


def train_epoch(
    model: nn.Module,
    batches: Iterable[Tensor],
    optimizer: torch.optim.Optimizer,
    objective: ObjectiveConfig,
    step: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip_norm: float | None = None,
    precision: Precision = Precision(),
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[EpochSums, int]:
    """One pass of optimizer steps; returns the sums and the global step after the pass.

    ``step`` counts optimizer steps over the whole run (it drives the KL warm-up).
    """
    model.train()
    acc = [torch.zeros(()) for _ in range(4)]
    examples, start, first_at = 0, time.perf_counter(), None
    for x in batches:
        first_at = first_at or time.time()
        if acc[0].device != x.device:
            acc = [a.to(x.device) for a in acc]
        terms = train_step(
            model, x, optimizer, objective, step, grad_clip_norm, scheduler, precision.dtype, scaler
        )
        _add_terms(acc, terms, x.shape[0])
        examples += x.shape[0]
        step += 1
    sums = EpochSums(*(float(a) for a in acc), examples=examples, first_batch_at=first_at)
    sums.seconds = time.perf_counter() - start
    return sums, step


@torch.no_grad()
def validate_epoch(
    model: nn.Module, batches: Iterable[Tensor], keep_mu: bool = False, iw_samples: int = 1
) -> EpochSums:
    """The true negative ELBO (β=1, no warm-up) over the batches; ``model`` is the bare VAE.

    ``keep_mu``: also keep up to MAX_MU_ROWS posterior means (N, L) for the active-units count.
    ``iw_samples`` > 1: also sum the negative k-sample IWAE bound, the quantity an IWAE-trained
    model optimizes (and so the one to select it on: IWAE training loosens the ELBO).
    """
    model.eval()
    acc = [torch.zeros(()) for _ in range(4)]
    neg_iw_bound = torch.zeros(())
    mus: list[Tensor] = []
    kept, examples, start = 0, 0, time.perf_counter()
    for x in batches:
        if acc[0].device != x.device:
            acc = [a.to(x.device) for a in acc]
        _add_terms(acc, elbo(model, x), x.shape[0])
        if iw_samples > 1:
            neg_iw_bound = neg_iw_bound.to(x.device) - iwae_bound(model, x, iw_samples).sum()
        examples += x.shape[0]
        if keep_mu and kept < MAX_MU_ROWS:
            mus.append(model.encode(x)[0].float().cpu())  # (B, L)
            kept += x.shape[0]
    sums = EpochSums(*(float(a) for a in acc), float(neg_iw_bound), examples=examples)
    sums.seconds = time.perf_counter() - start
    sums.mu = torch.cat(mus)[:MAX_MU_ROWS] if mus else None
    return sums


@torch.no_grad()
def importance_sampled_nll_sum(
    model: nn.Module, batches: Iterable[Tensor], k: int, max_examples: int | None
) -> tuple[float, int]:
    """Sum of the k-sample IS estimate of -log p(x) over up to ``max_examples`` examples."""
    model.eval()
    total, examples = 0.0, 0
    for x in batches:
        if max_examples is not None:
            x = x[: max_examples - examples]
        if x.shape[0] == 0:
            continue  # keep draining: a Ray streaming split stalls if one rank stops early
        total += float(importance_sampled_nll(model, x, k=k, chunk_size=min(k, NLL_CHUNK)).sum())
        examples += x.shape[0]
    return total, examples
