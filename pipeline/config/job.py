"""The training job's configuration: one section per concern, loaded from YAML.

A job config is a YAML file with the sections ``data``, ``model``, ``objective``, ``optim``,
``train``, ``scaling`` and ``tracking``; every key is optional. Every section, here and in
``vae_core.config``, is declared and checked the one way ``vae_core.typed_config`` describes:
typed fields (an int refuses 2.5 and "3", a bool refuses "false"), ranges, unknown keys refused
with the closest known key suggested, every error one line naming the full key
(``train.epochs``), the value and what is allowed — before Ray or MLflow starts.

``--set a.b=value`` overrides one key after loading; the value is parsed as YAML, so
``--set model.hidden_sizes=[256,128]`` gives a list and ``--set train.epochs=5`` an int.
``check_job_key("train.epochs", 5)`` checks one key and value with the same rules, for anything
else that names config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from pipeline.config.data import DataConfig
from pipeline.errors import UserError
from vae_core.config import (
    ConfigError,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    TypedConfig,
    check_key,
    setting,
)

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "jobs" / "configs"
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainSettings(TypedConfig):
    key_prefix: ClassVar[str] = "train"

    epochs: int = setting(20, ge=1)
    """Maximum number of passes over the training split."""
    batch_size: int = setting(128, ge=1)
    """Examples per step on each worker (the global batch is this times the worker count)."""
    seed: int = 0
    """Seeds model init, shuffling and binarization: the same seed reproduces a run."""
    early_stopping_patience: int | None = setting(None, ge=1)
    """Stop after this many epochs without a better validation loss; None: never stop early."""
    nll_samples: int = setting(1000, ge=0)
    """k, the importance samples per test example for the final IS-NLL; 0 skips it."""
    nll_examples: int | None = setting(2000, ge=1)
    """Test examples for the IS-NLL (it costs k forward passes each); None: the whole split."""
    log_images: bool = True
    """Log reconstructions, prior samples and latent traversals as images every epoch."""
    shuffle_buffer: int = setting(4096, ge=0)
    """Rows shuffled together in the training stream (at least one ~8 MiB fetch); 0: no shuffle."""
    max_failures: int = setting(2, ge=-1)
    """Worker-group restarts (from the last checkpoint) before the run fails; -1: no limit."""
    hang_timeout_s: float = setting(600.0, ge=1)
    """A rank that makes no progress this long (no batch arrives or is stepped, no checkpoint is
    written) ends its own process, and a rank waiting this long for the others (all-reduce, the
    per-epoch report) fails: either way the worker group restarts from the last checkpoint like
    after a dead worker, any number of workers. Default 10 minutes (not torch's 30); it must
    exceed the longest legitimate pause: a split's first batch on a busy cluster, a checkpoint
    upload, one test batch's IS-NLL."""
    placement_timeout_s: float = setting(90.0, ge=3)
    """How long a worker group may wait, in all, for the cluster to hold it (a node lost and
    not replaced) before the job fails with a "not enough resources" line; an autoscaling
    cluster that adds nodes on demand needs more than a node's start-up time."""


@dataclass(frozen=True)
class ScalingSettings(TypedConfig):
    key_prefix: ClassVar[str] = "scaling"

    workers: int = setting(1, ge=0)
    """Training workers (DDP ranks); 0 picks the layout (one per node on CPU, one per GPU)."""
    use_gpu: bool = False
    """One GPU per worker, NCCL between them; otherwise CPU with gloo."""
    cpus_per_worker: float | None = setting(None, gt=0)
    """CPUs reserved per worker; None sizes it from the cluster, leaving CPU for Ray Data."""
    precision: Precision = "auto"
    """auto (bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16."""


@dataclass(frozen=True)
class TrackingSettings(TypedConfig):
    key_prefix: ClassVar[str] = "tracking"

    enabled: bool = True
    """Track in MLflow and register the model; false trains only (quick trials, benchmarks)."""
    experiment: str = setting("vaepipe", min_len=1)
    """MLflow experiment the run goes into."""
    model_name: str = setting("vae", min_len=1)
    """Registered model name; every successful run adds a version."""
    run_name: str | None = setting(None, min_len=1)
    """Name of the run: rerunning a name resumes it from its last checkpoint; None: a new run."""
    storage_path: str | None = setting(None, min_len=1)
    """Checkpoint storage (a local path or a pyarrow URI such as s3://...); None: ./ray_results."""

    def check(self) -> None:
        if self.run_name is not None and "/" in self.run_name:
            self.fail("run_name", "must be a non-empty name without '/'")


@dataclass(frozen=True)
class TrainJobConfig(TypedConfig):
    """The whole job: one field per YAML section; a missing section takes its defaults."""

    data: DataConfig = field(default_factory=DataConfig)
    """Which dataset to read and how to turn it into batches."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The VAE's architecture and likelihood (input_shape is filled from the data)."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """β-ELBO with warm-up and free bits, or the IWAE bound."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Adam/AdamW, learning-rate schedule, gradient clipping."""
    train: TrainSettings = field(default_factory=TrainSettings)
    """Epochs, batch size, early stopping, the final IS-NLL, fault tolerance."""
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    """Workers, GPUs, CPUs per worker, precision."""
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    """MLflow experiment, registered model name, run name, checkpoint storage."""

    def to_yaml(self) -> str:
        """The resolved config as YAML that ``load_job_config`` reads back to an equal config."""
        return yaml.dump(self.to_dict(), Dumper=_ConfigDumper, sort_keys=False)


class _ConfigDumper(yaml.SafeDumper):
    """Sections and keys one per line; lists such as ``hidden_sizes: [128, 64]`` on theirs."""


_ConfigDumper.add_representer(
    list, lambda dumper, v: dumper.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def check_job_key(key: str, value: Any) -> Any:
    """Check one dotted job-config key and its value (``"train.epochs", 3``) like a config would.

    Returns the value as stored (lists as tuples, ints as floats for float fields); raises
    ``ConfigError`` naming the key, the value and what is allowed, or the closest known key.
    """
    return check_key(TrainJobConfig, key, value)


def shipped_configs() -> list[str]:
    """Names of the configs in ``jobs/configs`` (usable as ``--config NAME``)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def resolve_config_path(path_or_name: str) -> Path:
    """A file path, or the name of a shipped config (``mnist`` → jobs/configs/mnist.yaml)."""
    return resolve_shipped(path_or_name, SHIPPED_DIR, "config")


def resolve_shipped(path_or_name: str, folder: Path, kind: str) -> Path:
    """``path_or_name`` if it is a file, else ``folder/<name>.yaml``; else a UserError naming
    the shipped ``kind``s there."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = folder / f"{path_or_name}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise UserError(f"{kind} {path_or_name!r} is neither a file nor a shipped {kind} ({names})")


def apply_override(d: dict[str, Any], override: str) -> None:
    """Set ``a.b=value`` in the nested dict ``d``; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {override!r} must look like section.key=value")
    node = d
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section", key)
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: not a YAML value: {_one_line(exc)}") from None


def load_job_config(path_or_shipped_name: str | None, overrides: list[str]) -> TrainJobConfig:
    """Read a YAML job config (or the defaults), apply ``--set`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path_or_shipped_name:
        path = resolve_config_path(path_or_shipped_name)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {_one_line(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a YAML mapping of sections")
        raw = loaded or {}
    for override in overrides:
        apply_override(raw, override)
    return TrainJobConfig.from_dict(raw)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
