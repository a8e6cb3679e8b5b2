"""The training job's configuration: one frozen dataclass per section, loaded from YAML.

A job config is a YAML file with the sections ``data``, ``model``, ``objective``, ``optim``,
``train``, ``scaling`` and ``tracking``; every key is optional and unknown keys are errors.
``--set a.b=value`` overrides one key after loading; the value is parsed as YAML, so
``--set model.hidden_sizes=[256,128]`` gives a list and ``--set train.epochs=5`` an int.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.data import DataConfig
from pipeline.errors import ConfigError, UserError
from vae_core.config import ModelConfig, ObjectiveConfig, OptimConfig

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "jobs" / "configs"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _check_keys(cls: type, d: dict[str, Any], section: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key!s} (known: {', '.join(sorted(names))})")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20
    """Maximum number of passes over the training split."""
    batch_size: int = 128
    """Examples per step on each worker (the global batch is this times the worker count)."""
    seed: int = 0
    """Seeds model init, shuffling and binarization: the same seed reproduces a run."""
    early_stopping_patience: int | None = None
    """Stop after this many epochs without a better validation loss; None: never stop early."""
    nll_samples: int = 1000
    """k, the importance samples per test example for the final IS-NLL; 0 skips it."""
    nll_examples: int | None = 2000
    """Test examples for the IS-NLL (it costs k forward passes each); None: the whole split."""
    log_images: bool = True
    """Log reconstructions, prior samples and latent traversals as images every epoch."""
    shuffle_buffer: int = 4096
    """Rows shuffled together in the training stream (at least one ~8 MiB fetch); 0: no shuffle."""
    max_failures: int = 2
    """Worker-group restarts (from the last checkpoint) before the run fails; -1: no limit."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                f"train.early_stopping_patience must be >= 1 or null, "
                f"got {self.early_stopping_patience}"
            )
        if self.nll_samples < 0:
            raise ConfigError(f"train.nll_samples must be >= 0, got {self.nll_samples}")
        if self.nll_examples is not None and self.nll_examples < 1:
            raise ConfigError(f"train.nll_examples must be >= 1 or null, got {self.nll_examples}")
        if self.max_failures < -1:
            raise ConfigError(f"train.max_failures must be >= -1, got {self.max_failures}")
        if self.shuffle_buffer < 0:
            raise ConfigError(f"train.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")


@dataclass(frozen=True)
class ScalingSettings:
    workers: int = 1
    """Training workers (DDP ranks); 0 picks the layout (one per node on CPU, one per GPU)."""
    use_gpu: bool = False
    """One GPU per worker, NCCL between them; otherwise CPU with gloo."""
    cpus_per_worker: float | None = None
    """CPUs reserved per worker; None sizes it from the cluster, leaving CPU for Ray Data."""
    precision: str = "auto"
    """auto (bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"scaling.workers must be >= 0, got {self.workers}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(
                f"scaling.cpus_per_worker must be > 0 or null, got {self.cpus_per_worker}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"scaling.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )


@dataclass(frozen=True)
class TrackingSettings:
    enabled: bool = True
    """Track in MLflow and register the model; false trains only (quick trials, benchmarks)."""
    experiment: str = "vaepipe"
    """MLflow experiment the run goes into."""
    model_name: str = "vae"
    """Registered model name; every successful run adds a version."""
    run_name: str | None = None
    """Name of the run: rerunning a name resumes it from its last checkpoint; None: a new run."""
    storage_path: str | None = None
    """Checkpoint storage (a local path or a pyarrow URI such as s3://...); None: ./ray_results."""

    def __post_init__(self) -> None:
        for name in ("experiment", "model_name"):
            if not getattr(self, name):
                raise ConfigError(f"tracking.{name} must not be empty")
        name = self.run_name
        if name is not None and (not isinstance(name, str) or "/" in name or not name.strip()):
            raise ConfigError(
                f"tracking.run_name must be a non-empty name without '/', got {self.run_name!r}"
            )


def _plain_from_dict(cls: type, d: dict[str, Any], section: str) -> Any:
    _check_keys(cls, d, section)
    return cls(**d)


def _section_from_dict(cls: type, d: dict[str, Any] | None, section: str) -> Any:
    if d is not None and not isinstance(d, dict):
        raise ConfigError(f"section {section} must be a mapping, got {d!r}")
    d = dict(d or {})
    try:
        if hasattr(cls, "from_dict"):
            return cls.from_dict(d)
        return _plain_from_dict(cls, d, section)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        # Name the YAML section, so "unknown key(s) ['x']" says where the key was.
        raise ConfigError(msg if f"{section}." in msg else f"{section}: {msg}") from None


def _section_to_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dataclasses.asdict(obj)


@dataclass(frozen=True)
class TrainJobConfig:
    data: DataConfig
    model: ModelConfig
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainJobConfig:
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for key in d:
            if key not in sections:
                raise ConfigError(f"unknown section {key!r} (known: {', '.join(sections)})")
        types = _SECTION_TYPES
        return cls(**{name: _section_from_dict(types[name], d.get(name), name) for name in types})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _section_to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}


_SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "objective": ObjectiveConfig,
    "optim": OptimConfig,
    "train": TrainSettings,
    "scaling": ScalingSettings,
    "tracking": TrackingSettings,
}


def shipped_configs() -> list[str]:
    """Names of the configs in ``jobs/configs`` (usable as ``--config NAME``)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def resolve_config_path(path_or_name: str) -> Path:
    """A file path, or the name of a shipped config (``mnist`` → jobs/configs/mnist.yaml)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / f"{path_or_name}.yaml"
    if shipped.is_file():
        return shipped
    raise UserError(
        f"config {path_or_name!r} is neither a file nor a shipped config "
        f"({', '.join(shipped_configs())})"
    )


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
            raise ConfigError(f"override {override!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: not a YAML value: {_one_line(exc)}") from None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


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
