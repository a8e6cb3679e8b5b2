"""``DataConfig``: which dataset to read and how to turn it into training batches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError

BINARIZE_MODES = ("none", "static", "dynamic")
BUILTIN_SOURCES = ("digits", "shapes", "mnist")


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"
    """Path or pyarrow URI (Parquet, IDX dir, image folder, .npy) or a builtin: digits, shapes,
    mnist."""
    column: str | None = None
    """Data column of a Parquet source; None detects it (``x``, else the only array column)."""
    id_column: str = "id"
    """Column holding stable unique row ids; derived from file and row position when absent."""
    label_column: str = "label"
    """Integer label column, used when present."""
    image_size: tuple[int, int] | None = None
    """(H, W) that image-folder images are resized to; None keeps the first image's size."""
    binarize: str = "none"
    """Bernoulli-likelihood binarization: none, static (fixed per id), dynamic (fresh per batch)."""
    standardize: bool = False
    """Subtract the per-feature mean and divide by the std (one streaming pass over train)."""
    val_fraction: float = 0.1
    """Fraction of rows in the validation split (of train rows when the source has a split)."""
    test_fraction: float = 0.1
    """Fraction of rows in the test split when the source has no test split of its own."""
    seed: int = 0
    """Seed of the id-hash split, static binarization and the shapes generator."""
    limit: int | None = None
    """Cap on rows per split (tests, demos); None reads everything."""
    shapes_rows: int = 20_000
    """Number of rows of the procedural ``shapes`` dataset."""
    shapes_resolution: int = 64
    """Side in pixels of ``shapes`` images (64 like dSprites; 28 for the 1M-row bench)."""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"data.source must be a non-empty string, got {self.source!r}")
        if self.column is not None and not self.column:
            raise ConfigError("data.column must be a column name or null, got ''")
        for name in ("id_column", "label_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"data.{name} must be a non-empty string")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
                raise ConfigError(f"data.image_size must be [H, W] of positive ints, got {size}")
            object.__setattr__(self, "image_size", size)
        if self.binarize not in BINARIZE_MODES:
            raise ConfigError(
                f"data.binarize must be one of {BINARIZE_MODES}, got {self.binarize!r}"
            )
        if self.standardize and self.binarize != "none":
            raise ConfigError("data.standardize cannot be combined with data.binarize")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"data.{name} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must be < 1")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit <= 0):
            raise ConfigError(f"data.limit must be a positive int or null, got {self.limit!r}")
        if not isinstance(self.shapes_rows, int) or self.shapes_rows <= 0:
            raise ConfigError(f"data.shapes_rows must be a positive int, got {self.shapes_rows!r}")
        if not isinstance(self.shapes_resolution, int) or not 8 <= self.shapes_resolution <= 1024:
            raise ConfigError(
                "data.shapes_resolution must be an int in [8, 1024], "
                f"got {self.shapes_resolution!r}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Build from a YAML mapping; an unknown key is a ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"data: unknown key(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for YAML/MLflow params."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["image_size"] is not None:
            out["image_size"] = list(out["image_size"])
        return out
