"""Image folders (PNG/JPEG): class subfolders become labels, images resized to a fixed size.

Layout is (C, H, W) uint8 with C = 1 when the first image is grayscale, else 3 (RGB; alpha is
dropped). Ids are the paths relative to the folder. The driver lists paths and opens one
image header; decoding happens in Ray tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.schema import XLayout
from pipeline.data.sources import IMAGE_SUFFIXES, SourcePlan, rows_table
from pipeline.errors import UserError

IMAGES_PER_UNIT = 2048
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass(frozen=True)
class ImagesUnit:
    root: str
    paths: tuple[str, ...]  # relative to root
    labels: tuple[int, ...] | None
    size: tuple[int, int]  # (H, W)
    channels: int


def load_image(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """One file → (C, H, W) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"{path}: cannot decode image ({exc})") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def read_unit(unit: ImagesUnit) -> pa.Table:
    x = np.stack(
        [load_image(os.path.join(unit.root, p), unit.size, unit.channels) for p in unit.paths]
    )
    labels = None if unit.labels is None else np.asarray(unit.labels)
    return rows_table(pa.array(unit.paths, pa.string()), x, labels)


def list_images(root: str) -> list[str]:
    """Image paths relative to ``root``, sorted, hidden entries skipped."""
    found = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                found.append(name if rel == "." else os.path.join(rel, name))
    return found


def _first_header(path: str) -> tuple[tuple[int, int], int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return (img.height, img.width), 1 if img.mode in GRAY_MODES else 3
    except OSError as exc:
        raise UserError(f"{path}: cannot decode image ({exc})") from None


def plan(cfg: DataConfig) -> SourcePlan:
    root = cfg.source.removeprefix("file://")
    paths = list_images(root)
    if not paths:
        raise UserError(f"{root}: no PNG or JPEG images")
    nested = [os.sep in p for p in paths]
    if any(nested) and not all(nested):
        raise UserError(f"{root}: images both at the top level and in class subfolders")
    classes = sorted({p.split(os.sep)[0] for p in paths}) if all(nested) else None
    labels = None if classes is None else [classes.index(p.split(os.sep)[0]) for p in paths]
    first_size, channels = _first_header(os.path.join(root, paths[0]))
    size = cfg.image_size or first_size
    units = [
        ImagesUnit(
            root,
            tuple(paths[i : i + IMAGES_PER_UNIT]),
            None if labels is None else tuple(labels[i : i + IMAGES_PER_UNIT]),
            size,
            channels,
        )
        for i in range(0, len(paths), IMAGES_PER_UNIT)
    ]
    n_classes = f", {len(classes)} classes" if classes else ""
    return SourcePlan(
        units={"train": units},
        read=read_unit,
        layout=XLayout((channels, *size), "uint8"),
        has_labels=classes is not None,
        description=f"image folder {root} ({len(paths)} images{n_classes})",
        rows=len(paths),
    )
