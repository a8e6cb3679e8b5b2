"""``DataConfig``: which dataset to read and how to turn it into training batches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

BINARIZE_MODES = ("none", "static", "dynamic")
BUILTIN_SOURCES = ("digits", "shapes", "mnist")
NUMERIC_COLUMNS = "numeric"  # data.columns: every numeric column but the id and the label


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"
    """Path or pyarrow URI (Parquet, IDX dir, image folder, .npy) or a builtin: digits, shapes,
    mnist."""
    column: str | None = None
    """Data column of a Parquet source; None detects it (``x``, else the only array column)."""
    columns: tuple[str, ...] | str | None = None
    """Tabular Parquet: feature columns (one number each) assembled into float32 samples, or
    ``numeric`` for every numeric column but the id and label; excludes ``column``."""
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
    cache_share: float = 0.25
    """Training reads the train split once and keeps it in the Ray object store when it takes at
    most this share of the store (then every epoch reshuffles all rows in memory); bigger splits
    stream with a per-epoch order. 0: always stream."""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"data.source must be a non-empty string, got {self.source!r}")
        if self.column is not None and not self.column:
            raise ValueError("data.column must be a column name or null, got ''")
        self._check_columns()
        for name in ("id_column", "label_column"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"data.{name} must be a non-empty string")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
                raise ValueError(f"data.image_size must be [H, W] of positive ints, got {size}")
            object.__setattr__(self, "image_size", size)
        if self.binarize not in BINARIZE_MODES:
            raise ValueError(
                f"data.binarize must be one of {BINARIZE_MODES}, got {self.binarize!r}"
            )
        if self.standardize and self.binarize != "none":
            raise ValueError("data.standardize cannot be combined with data.binarize")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"data.{name} must be in [0, 1), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("data.val_fraction + data.test_fraction must be < 1")
        if not isinstance(self.cache_share, int | float) or not 0.0 <= self.cache_share <= 1.0:
            raise ValueError(f"data.cache_share must be in [0, 1], got {self.cache_share!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit <= 0):
            raise ValueError(f"data.limit must be a positive int or null, got {self.limit!r}")
        if not isinstance(self.shapes_rows, int) or self.shapes_rows <= 0:
            raise ValueError(f"data.shapes_rows must be a positive int, got {self.shapes_rows!r}")
        if not isinstance(self.shapes_resolution, int) or not 8 <= self.shapes_resolution <= 1024:
            raise ValueError(
                "data.shapes_resolution must be an int in [8, 1024], "
                f"got {self.shapes_resolution!r}"
            )

    def _check_columns(self) -> None:
        cols = self.columns
        if cols is None or cols == NUMERIC_COLUMNS:
            pass
        elif isinstance(cols, str) or not all(isinstance(c, str) and c for c in cols) or not cols:
            raise ValueError(
                f"data.columns must be a list of column names or {NUMERIC_COLUMNS!r}, got {cols!r}"
            )
        elif len(set(cols)) != len(cols):
            raise ValueError(f"data.columns names a column twice: {list(cols)}")
        else:
            object.__setattr__(self, "columns", tuple(cols))
        if cols is not None and self.column is not None:
            raise ValueError("data.column and data.columns exclude each other")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        """Build from a YAML mapping; an unknown key is a ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"data: unknown key(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if d.get("image_size") is not None:
            d["image_size"] = tuple(d["image_size"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for YAML/MLflow params."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if out["image_size"] is not None:
            out["image_size"] = list(out["image_size"])
        if isinstance(out["columns"], tuple):
            out["columns"] = list(out["columns"])
        return out
