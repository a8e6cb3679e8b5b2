"""Benchmark: what vae_core's abstraction costs, and how close to matmul speed it trains.

1. Training samples/s of vae_core (VAE + objective + train_step) / a plain PyTorch loop written
   by hand: 784-512-32 MLP VAE, Adam 1e-3, batch 128, BCE with logits. Target >= 0.98.
2. Achieved training FLOP/s (matmul FLOPs of forward + backward = 3x forward) / the FLOP/s of a
   microbenchmark running exactly those matmuls (forward, input-grad, weight-grad GEMM of each
   layer) with torch.mm, at batch 128 and 512. Target >= 0.7 at batch 512.

Contenders run interleaved (order alternating each round), warm-up rounds discarded, one thread
count for all, medians reported. Last line of output: one JSON object with the figures.

    python bench/core.py [--threads N] [--rounds R] [--budget SECONDS]
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from common import interleaved, parser, ratio_of_medians_per_round, run
from torch import Tensor, nn

from vae_core import VAE, ModelConfig, ObjectiveConfig, OptimConfig, build_optimizer, train_step

D, H, L = 784, 512, 32
LAYERS = [(D, H), (H, 2 * L), (L, H), (H, D)]  # (in, out) of each Linear, encoder then decoder
FORWARD_FLOPS_PER_SAMPLE = sum(2 * n_in * n_out for n_in, n_out in LAYERS)
TRAIN_FLOPS_PER_SAMPLE = 3 * FORWARD_FLOPS_PER_SAMPLE  # backward = input grads + weight grads
WARMUP_ROUNDS = 3


# ---- the plain reference: what someone would write without vae_core --------------------------


class PlainVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc1, self.enc2 = nn.Linear(D, H), nn.Linear(H, 2 * L)
        self.dec1, self.dec2 = nn.Linear(L, H), nn.Linear(H, D)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.enc2(F.relu(self.enc1(x))).chunk(2, dim=-1)  # (B, L) each
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, L)
        return self.dec2(F.relu(self.dec1(z))), mu, logvar  # logits (B, D)


def plain_step(model: PlainVAE, opt: torch.optim.Optimizer, x: Tensor) -> None:
    logits, mu, logvar = model(x)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
    opt.zero_grad(set_to_none=True)
    (rec + kl).backward()
    opt.step()


# ---- contenders: each is a zero-argument callable doing one step -------------------------------


def _batches(batch_size: int, n: int = 4) -> list[Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(batch_size, D, generator=gen).round() for _ in range(n)]


def make_core_step(batch_size: int) -> Callable[[], None]:
    model = VAE(ModelConfig(input_shape=(D,), latent_dim=L, hidden_sizes=(H,))).train()
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    objective = ObjectiveConfig()
    data, step = _batches(batch_size), [0]

    def run() -> None:
        train_step(model, data[step[0] % len(data)], opt, objective, step[0])
        step[0] += 1

    return run


def make_plain_step(batch_size: int) -> Callable[[], None]:
    model = PlainVAE().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as build_optimizer on CPU
    data, step = _batches(batch_size), [0]

    def run() -> None:
        plain_step(model, opt, data[step[0] % len(data)])
        step[0] += 1

    return run


def make_matmul_step(batch_size: int) -> Callable[[], None]:
    """The GEMMs of one training step, nothing else: per layer y = x W^T, dx = dy W, dW = dy^T x."""
    gen = torch.Generator().manual_seed(0)
    mats = []
    for n_in, n_out in LAYERS:
        x = torch.randn(batch_size, n_in, generator=gen)  # (B, in)
        w = torch.randn(n_out, n_in, generator=gen)  # (out, in)
        dy = torch.randn(batch_size, n_out, generator=gen)  # (B, out)
        outs = (torch.empty(batch_size, n_out), torch.empty(batch_size, n_in), torch.empty_like(w))
        mats.append((x, w, dy, outs))

    def run() -> None:
        for x, w, dy, (y, dx, dw) in mats:
            torch.mm(x, w.t(), out=y)
            torch.mm(dy, w, out=dx)
            torch.mm(dy.t(), x, out=dw)

    return run


def main() -> dict:
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--budget", type=float, default=90.0, help="seconds for all rounds")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict[str, float | int | str] = {"threads": args.threads, "torch": torch.__version__}

    # Batch 128: vae_core vs the plain loop, and vs the matmul floor.
    t = interleaved(
        {"core": make_core_step(128), "plain": make_plain_step(128), "mm": make_matmul_step(128)},
        rounds=args.rounds,
        steps=5,
        warmup_rounds=WARMUP_ROUNDS,
        budget_s=args.budget / 2,
    )
    # Batch 512: vae_core vs the matmul floor.
    t512 = interleaved(
        {"core": make_core_step(512), "mm": make_matmul_step(512)},
        rounds=args.rounds,
        steps=2,
        warmup_rounds=WARMUP_ROUNDS,
        budget_s=args.budget / 2,
    )

    for bs, times in ((128, t), (512, t512)):
        core_s, mm_s = statistics.median(times["core"]), statistics.median(times["mm"])
        result[f"core_samples_per_s_bs{bs}"] = bs / core_s
        result[f"core_train_flops_bs{bs}"] = bs * TRAIN_FLOPS_PER_SAMPLE / core_s
        result[f"matmul_flops_bs{bs}"] = bs * TRAIN_FLOPS_PER_SAMPLE / mm_s
        result[f"flops_efficiency_bs{bs}"] = ratio_of_medians_per_round(times["mm"], times["core"])
    result["plain_samples_per_s_bs128"] = 128 / statistics.median(t["plain"])
    result["ratio_vs_plain"] = ratio_of_medians_per_round(t["plain"], t["core"])

    result["rounds_bs128"], result["rounds_bs512"] = len(t["core"]), len(t512["core"])
    print(
        f"threads={args.threads}  kept rounds {len(t['core'])} (bs128), {len(t512['core'])} "
        f"(bs512), after {WARMUP_ROUNDS} warm-up rounds each"
    )
    print(
        f"bs128: vae_core {result['core_samples_per_s_bs128']:.0f} samples/s, "
        f"plain {result['plain_samples_per_s_bs128']:.0f} samples/s, "
        f"ratio {result['ratio_vs_plain']:.3f} (target >= 0.98)"
    )
    for bs in (128, 512):
        print(
            f"bs{bs}: training {result[f'core_train_flops_bs{bs}'] / 1e9:.1f} GFLOP/s, "
            f"matmul {result[f'matmul_flops_bs{bs}'] / 1e9:.1f} GFLOP/s, "
            f"efficiency {result[f'flops_efficiency_bs{bs}']:.3f}"
            + (" (target >= 0.7)" if bs == 512 else "")
        )
    return result


if __name__ == "__main__":
    run(main)
