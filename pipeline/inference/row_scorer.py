"""Per-row evaluation figures, as a callable class for Ray Data actors (or a plain loop).

Each row's k importance samples are drawn from a generator seeded by (seed, id), so a row's
figures do not depend on which batch, actor or machine evaluated it: the evaluation gives the
same numbers on one process or on a cluster, whatever the batch size. Rows are scored one at a
time for that reason; with k samples each, one row is already a (k, L) → (k, D) batch for the
decoder, so the per-row loop costs little next to the decoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pipeline.data import schema
from pipeline.data.batches import Preprocessor, to_torch_batch
from pipeline.data.hashing import id_hash
from pipeline.inference import complexity
from pipeline.inference.latent_encoder import ModelPayload, fixed_list
from vae_core import objectives

ROW_CHUNK = 1000  # samples decoded at once for one row; fixed, so the draws are too
FIGURES = ("neg_elbo", "reconstruction", "kl", "is_nll")
COMPLEXITY = "complexity_bits"  # with ``complexity=True``: the input's generic code length


class RowScorer:
    """Arrow rows (``id``, ``x``, optional ``label`` and pass-through columns) → ``id``, ``mu``,
    the ``FIGURES`` (float64 nats), the label / pass-through columns, and with ``complexity``
    (binary model inputs only) ``COMPLEXITY``: each input's code length in bits."""

    def __init__(
        self,
        payload: ModelPayload,
        k: int,
        seed: int = 0,
        keep: tuple[str, ...] = (),
        threads: int = 1,
        device: str = "cpu",
        complexity: bool = False,
    ) -> None:
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.vae = payload.build_vae(self.device)
        self.pre = Preprocessor.from_dict(payload.preprocessor)  # deterministic already
        self.k, self.seed, self.keep, self.complexity = k, seed, keep, complexity

    def __call__(self, table: pa.Table) -> pa.Table:
        batch = to_torch_batch(table, self.pre, self.device)
        seeds = id_hash(table.column(schema.ID), self.seed)  # (B,) uint64
        rows = [self._score_row(batch.x[i : i + 1], int(s)) for i, s in enumerate(seeds)]
        with torch.inference_mode():
            mu = self.vae.encode(batch.x)[0]  # (B, L)
        cols: dict[str, Any] = {schema.ID: table.column(schema.ID), schema.MU: fixed_list(mu)}
        for j, name in enumerate(FIGURES):
            cols[name] = pa.array(np.array([r[j] for r in rows], dtype=np.float64))
        if self.complexity:
            binary = (batch.x > 0.5).cpu().numpy().reshape(len(rows), -1)  # (B, numel)
            planes = complexity.as_planes(binary, tuple(self.vae.cfg.input_shape))
            cols[COMPLEXITY] = pa.array(complexity.code_length_bits(planes))
        for name in (schema.LABEL, *self.keep):
            if name in table.column_names:
                cols[name] = table.column(name)
        return pa.table(cols)

    def _score_row(self, x: torch.Tensor, seed: int) -> tuple[float, ...]:
        """One row (1, *shape) → its figures, from samples fixed by ``seed``."""
        torch.manual_seed(seed)  # rsample draws from the default generator
        with torch.inference_mode():
            terms = objectives.importance_sampled_terms(self.vae, x, self.k, ROW_CHUNK)
        return tuple(float(t[0]) for t in terms)
