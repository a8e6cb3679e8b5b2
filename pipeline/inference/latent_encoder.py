"""The batch-inference callable: ingested Arrow rows in, latent Arrow rows out.

One instance per Ray actor: the model is built once in ``__init__`` and every batch runs under
``torch.inference_mode()``. The same class serves the plain-loop baseline in ``bench/encode.py``,
so the benchmark measures the pipeline around it, not a different computation.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch

from pipeline.data import schema
from pipeline.data.batches import Preprocessor, to_torch_batch
from vae_core import objectives
from vae_core.config import ModelConfig
from vae_core.model import VAE, VAEOutput

# Size of one latent Parquet file (uncompressed; float latents barely compress): 128 MiB, or
# less with a small object store. The write operator holds a file's rows in the object store
# until it has enough; holding more than a small part of the store backpressures the encoder
# (measured: 10x slower with 900k-row files on a 100 MiB store).
MAX_FILE_BYTES = 128 * 1024 * 1024
MIN_FILE_BYTES = 4 * 1024 * 1024
FILE_SHARE_OF_STORE = 1 / 16


@dataclass(frozen=True)
class ModelPayload:
    """What an actor needs to rebuild the model: plain values and tensors, no code."""

    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    preprocessor: dict[str, Any]
    metadata: dict[bytes, bytes]  # Parquet file metadata naming model, source, version

    @classmethod
    def from_vae(
        cls, vae: VAE, preprocessor: Preprocessor, metadata: dict[bytes, bytes]
    ) -> ModelPayload:
        """``preprocessor``: as ``model_data.resolve_model_data`` gives it (deterministic)."""
        state = {k: v.detach().cpu() for k, v in vae.state_dict().items()}
        return cls(vae.cfg.to_dict(), state, preprocessor.to_dict(), metadata)

    def build_vae(self, device: torch.device) -> VAE:
        """The model, on ``device``, in eval mode (run once per actor)."""
        vae = VAE(ModelConfig.from_dict(self.model_config))
        vae.load_state_dict(self.state_dict)
        return vae.to(device).eval()


@dataclass(frozen=True)
class EncodePlan:
    """Actor layout for encoding, sized from the cluster so reads and writes keep a share."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float
    threads: int  # torch intra-op threads per actor
    object_store_bytes: float = 0.0

    @property
    def device(self) -> str:
        return "cuda" if self.gpus_per_actor > 0 else "cpu"


def plan_encoding(
    cluster: dict[str, float], threads: int | None = None, cpu_nodes: int = 1
) -> EncodePlan:
    """One actor per GPU; on CPU a small pool reserving at most half the CPUs, with at least
    one actor per CPU node (so a second machine adds a scorer).

    Measured on 2 cores: two 1-CPU actors starve the read and write tasks and the job stalls.
    The reservation is what Ray schedules by; ``threads`` is what torch actually uses (capped
    by this machine's cores, since tests may declare more logical CPUs than there are).
    """
    cpus = float(cluster.get("CPU", 1.0))
    gpus = int(cluster.get("GPU", 0.0))
    store = float(cluster.get("object_store_memory", 0.0))
    cores = os.cpu_count() or 1
    if gpus > 0:
        per = math.floor(min(1.0, cpus / (2 * gpus)) * 100) / 100
        return EncodePlan(gpus, max(per, 0.01), 1.0, threads or 1, store)
    # ~8 CPUs per actor: 4 for torch, the rest for I/O; Ray Data spreads the pool over nodes.
    actors = max(1, cpu_nodes, int(cpus // 8))
    # A fractional reservation: Ray Data budgets CPUs per operator, and a whole-CPU actor on a
    # small machine leaves the read operator backpressured (measured: 30 s stalls on 2 cores).
    # And each node keeps a whole CPU free, or its 1-CPU read tasks never start (on 1-CPU nodes
    # the actors reserve nothing: measured, a 0.25 reservation there hung the job).
    room = cpus / max(1, cpu_nodes) - 1.0
    per = math.floor(max(0.0, min(4.0, cpus / (4 * actors), room)) * 100) / 100
    auto_threads = max(1, min(4, cores - 1, int(cpus * 0.75 / actors)))
    return EncodePlan(actors, per, 0.0, threads or auto_threads, store)


def plan_for_cluster(threads: int | None = None) -> EncodePlan:
    """``plan_encoding`` for the connected Ray cluster: its resources and its alive CPU nodes."""
    import ray

    cpu_nodes = sum(1 for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0)
    return plan_encoding(ray.cluster_resources(), threads, cpu_nodes)


def map_on_actors(
    ds: Any, fn: type, kwargs: dict[str, Any], plan: EncodePlan, batch_size: int
) -> Any:
    """``ds`` through the callable class ``fn`` on an actor pool laid out by ``plan`` (pyarrow
    batches in and out; ``threads`` and ``device`` added to ``kwargs``)."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(
        fn,
        fn_constructor_kwargs={**kwargs, "threads": plan.threads, "device": plan.device},
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor or None,
    )


def rows_per_file(latent_dim: int, with_z: bool, object_store_bytes: float) -> int:
    """Rows that make one latent file of a sensible size for this cluster."""
    target = min(MAX_FILE_BYTES, max(MIN_FILE_BYTES, object_store_bytes * FILE_SHARE_OF_STORE))
    vectors = 3 if with_z else 2
    row_bytes = 8 + 4 * latent_dim * vectors + 4 + 8  # id, vectors, score, label
    return max(1, int(target // row_bytes))


def batch_seed(ids: Any) -> int:
    """A seed fixed by the batch's first id, so a rerun draws the same z for the same rows."""
    first = ids[0].as_py() if isinstance(ids, pa.Array) else ids[0]
    return zlib.crc32(json.dumps(first, default=str).encode())


def fixed_list(x: torch.Tensor) -> pa.FixedSizeListArray:
    """(B, L) float32 tensor -> fixed_size_list<float32>[L] without a per-row copy."""
    flat = x.detach().to("cpu", torch.float32).contiguous().numpy().reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), x.shape[1])


BatchHook = Callable[[pa.Table], None]  # sees each input batch in the actor, before encoding


class LatentEncoder:
    """Callable class for ``Dataset.map_batches(..., batch_format="pyarrow")``.

    ``batch_hook``: called with every input batch inside the actor before it is encoded; the
    one place where a caller's code joins the actors (the reliability tests make a worker
    process exit here). Must be picklable; None in normal use.
    """

    def __init__(
        self,
        payload: ModelPayload,
        with_z: bool = False,
        threads: int = 1,
        device: str = "cpu",
        batch_hook: BatchHook | None = None,
    ) -> None:
        self.batch_hook = batch_hook
        torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.vae = payload.build_vae(self.device)
        self.pre = Preprocessor.from_dict(payload.preprocessor)
        self.with_z = with_z
        self.metadata = payload.metadata
        self._captured: list[VAEOutput] = []
        # negative_elbo runs one forward pass; keep its output (mu, logvar, z) instead of
        # encoding a second time. The objective itself stays in vae_core.
        self.vae.register_forward_hook(lambda _m, _i, out: self._captured.append(out))

    def __call__(self, table: pa.Table) -> pa.Table:
        if self.batch_hook is not None:
            self.batch_hook(table)
        with torch.inference_mode():
            batch = to_torch_batch(table, self.pre, self.device)
            torch.manual_seed(batch_seed(batch.ids))
            self._captured.clear()
            score = objectives.negative_elbo(self.vae, batch.x)  # (B,)
            out = self._captured[-1]  # mu, logvar, z: (B, L) each
        return self._to_table(table, out, score)

    def _to_table(self, table: pa.Table, out: VAEOutput, score: torch.Tensor) -> pa.Table:
        ids = table.column(schema.ID).combine_chunks()
        labels = schema.LABEL in table.column_names
        cols: list[pa.Array] = [ids, fixed_list(out.mu), fixed_list(out.logvar)]
        if self.with_z:
            cols.append(fixed_list(out.z))
        cols.append(pa.array(score.to("cpu", torch.float32).numpy()))
        if labels:
            cols.append(table.column(schema.LABEL).combine_chunks().cast(pa.int64()))
        latent = schema.latent_schema(out.mu.shape[1], ids.type, self.with_z, labels)
        return pa.Table.from_arrays(cols, schema=latent.with_metadata(self.metadata))
