"""Benchmark: the time cost of each quality lever, as vae_core step time / the ``mnist`` config's.

Each contender is one optimizer step (``vae_core.train_step``: forward, objective, backward, clip,
Adam) on a batch of binary 28x28 images, with the model, objective and optimizer of the ``mnist``
config plus the lever's overrides (or of a whole shipped config, e.g. ``mnist-best``). Contenders
run interleaved with the baseline in ABBA order, warm-up rounds discarded; each ratio is the
median over rounds of (lever / baseline) in the same round, so the machine's load cancels. The
data pipeline is left out: a real epoch also reads and binarizes the data, so these are upper
bounds of the per-epoch ratio.

    python bench/quality_levers.py [--threads N] [--rounds R] [--budget SECONDS] [--only NAME ...]

The last line is one JSON object: ``{lever: ratio}`` and the baseline's ms per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from common import interleaved, parser, ratio_of_medians_per_round, run

from vae_core import VAE, build_optimizer, train_step

BATCH = 128
WARMUP_ROUNDS = 2
# lever -> (config, overrides); "baseline" is what every other contender is divided by.
LEVERS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("mnist", []),
    "bias_init": ("mnist", ["model.output_bias_init=data_mean"]),
    "latent50": ("mnist", ["model.latent_dim=50"]),
    "hidden1024_512": ("mnist", ["model.hidden_sizes=[1024,512]"]),
    "iwae5": ("mnist", ["objective.iw_samples=5", "objective.iw_gradient=iwae"]),
    "dreg5": ("mnist", ["objective.iw_samples=5", "objective.iw_gradient=dreg"]),
    "mnist-best": ("mnist-best", []),
}


def make_step(config: str, overrides: list[str]) -> Callable[[], None]:
    from pipeline.config.job import load_job_config

    job = load_job_config(config, [*overrides, "model.input_shape=[1,28,28]"])
    torch.manual_seed(0)
    model = VAE(job.model).train()
    if job.model.output_bias_init == "data_mean":
        model.init_output_bias(torch.full((1, 28, 28), 0.13))  # MNIST's mean; cost is the same
    opt = build_optimizer(model, job.optim)
    gen = torch.Generator().manual_seed(0)
    data = [torch.rand(BATCH, 1, 28, 28, generator=gen).round() for _ in range(4)]
    step = [0]

    def one() -> None:
        train_step(model, data[step[0] % 4], opt, job.objective, step[0], job.optim.grad_clip_norm)
        step[0] += 1

    return one


def main() -> dict:
    p = parser(__doc__)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--budget", type=float, default=40.0, help="seconds per lever")
    p.add_argument("--only", nargs="*", default=None, help="levers to time (all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in LEVERS if n != "baseline" and (args.only is None or n in args.only)]
    figures: dict[str, float | int] = {"threads": args.threads, "batch": BATCH}
    for name in names:
        steps = {n: make_step(*LEVERS[n]) for n in ("baseline", name)}
        t = interleaved(steps, args.rounds, 5, WARMUP_ROUNDS, args.budget)
        figures[name] = ratio_of_medians_per_round(t[name], t["baseline"])
        figures[f"{name}_rounds"] = len(t[name])
    base = make_step(*LEVERS["baseline"])
    t = interleaved({"baseline": base}, 5, 5, WARMUP_ROUNDS, 5.0)
    figures["baseline_ms_per_step"] = 1000 * sorted(t["baseline"])[len(t["baseline"]) // 2]
    return figures


if __name__ == "__main__":
    run(main)
