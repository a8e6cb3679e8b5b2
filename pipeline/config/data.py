"""``DataConfig``: which dataset to read and how to turn it into training batches.

A ``vae_core.typed_config`` section like every other: one typed line per field, then its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from vae_core.config import TypedConfig, setting

Binarize = Literal["none", "static", "dynamic"]
BINARIZE_MODES = get_args(Binarize)
BUILTIN_SOURCES = ("digits", "shapes", "mnist")


@dataclass(frozen=True)
class DataConfig(TypedConfig):
    key_prefix: ClassVar[str] = "data"

    source: str = setting("digits", min_len=1)
    """Path or pyarrow URI (Parquet, IDX dir, image folder, .npy) or a builtin: digits, shapes,
    mnist."""
    column: str | None = setting(None, min_len=1)
    """Data column of a Parquet source; None detects it (``x``, else the only array column)."""
    columns: tuple[str, ...] | None = setting(None, min_len=1)
    """Tabular Parquet: the feature columns (one number each), assembled into float32 samples."""
    numeric_columns: bool = False
    """Tabular Parquet: every numeric column but the id and label is a feature."""
    id_column: str = setting("id", min_len=1)
    """Column holding stable unique row ids; derived from file and row position when absent."""
    label_column: str = setting("label", min_len=1)
    """Integer label column, used when present."""
    image_size: tuple[int, int] | None = setting(None, ge=1)
    """(H, W) that image-folder images are resized to; None keeps the first image's size."""
    binarize: Binarize = "none"
    """Bernoulli-likelihood binarization: none, static (fixed per id), dynamic (fresh per batch)."""
    standardize: bool = False
    """Subtract the per-feature mean and divide by the std (one streaming pass over train)."""
    val_fraction: float = setting(0.1, ge=0, lt=1)
    """Fraction of rows in the validation split (of train rows when the source has a split)."""
    test_fraction: float = setting(0.1, ge=0, lt=1)
    """Fraction of rows in the test split when the source has no test split of its own."""
    seed: int = 0
    """Seed of the id-hash split, static binarization and the shapes generator."""
    limit: int | None = setting(None, ge=1)
    """Cap on rows per split (tests, demos); None reads everything."""
    include_labels: tuple[int, ...] | None = None
    """Train only on rows with these labels (one-class anomaly detection: the normal class);
    encode, evaluate and the served model still score every row."""
    exclude_labels: tuple[int, ...] = ()
    """Train without rows that have these labels."""
    shapes_rows: int = setting(20_000, ge=1)
    """Number of rows of the procedural ``shapes`` dataset."""
    shapes_resolution: int = setting(64, ge=8, le=1024)
    """Side in pixels of ``shapes`` images (64 like dSprites; 28 for the 1M-row bench)."""
    cache_share: float = setting(0.25, ge=0, le=1)
    """Training reads the train split once and keeps it in the Ray object store when it takes at
    most this share of the store (every epoch then reshuffles all its rows in memory); bigger
    splits stream in a per-epoch order. 0: always stream."""

    def check(self) -> None:
        picked = [k for k in ("column", "columns") if getattr(self, k) is not None]
        picked += ["numeric_columns"] if self.numeric_columns else []
        if len(picked) > 1:
            self.fail(picked[1], f"excludes data.{picked[0]} (name the samples one way)")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            self.fail("columns", "names a column twice")
        if self.include_labels is not None and not self.include_labels:
            self.fail("include_labels", "must name at least one label (or be null for all)")
        if set(self.include_labels or ()) & set(self.exclude_labels):
            self.fail("exclude_labels", "overlaps data.include_labels")
        if self.standardize and self.binarize != "none":
            self.fail("standardize", f"cannot be combined with data.binarize={self.binarize!r}")
        if self.val_fraction + self.test_fraction >= 1.0:
            self.fail(
                "val_fraction", f"with data.test_fraction={self.test_fraction} the sum must be < 1"
            )
