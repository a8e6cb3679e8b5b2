"""Procedural dSprites-like shapes: square, ellipse or heart at a scale, rotation and position.

Each row's factors are drawn from a hash of (id, seed), so a row is the same however the set
is partitioned, and rows are rendered inside Ray tasks from row ranges (streaming, any size).
Factor grids follow dSprites: 3 shapes, 6 scales, 40 orientations, 32×32 positions.
Ground-truth factors are kept as columns (``shape``, ``scale``, ``orientation``, ``pos_x``,
``pos_y``); ``label`` is the shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.config.data import DataConfig
from pipeline.data.hashing import id_hash, to_unit
from pipeline.data.schema import XLayout
from pipeline.data.sources import SourcePlan, rows_table

SHAPE_NAMES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
POSITIONS = np.linspace(0.0, 1.0, 32)
FACTOR_COLUMNS = ("shape", "scale", "orientation", "pos_x", "pos_y")
UNIT_BYTES = 16 << 20
RENDER_ROWS = 2048  # rows rendered at once: bounds the (B, R, R) float temporaries


@dataclass(frozen=True)
class ShapesUnit:
    start: int
    stop: int
    resolution: int
    seed: int


def factors(ids: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """(N,) ids → factor values, each from its own hash stream of (id, seed)."""
    sizes = (len(SHAPE_NAMES), len(SCALES), len(ORIENTATIONS), len(POSITIONS), len(POSITIONS))
    idx = [(to_unit(id_hash(ids, seed * 8 + k)) * n).astype(np.int64) for k, n in enumerate(sizes)]
    return {
        "shape": idx[0],
        "scale": SCALES[idx[1]].astype(np.float32),
        "orientation": ORIENTATIONS[idx[2]].astype(np.float32),
        "pos_x": POSITIONS[idx[3]].astype(np.float32),
        "pos_y": POSITIONS[idx[4]].astype(np.float32),
    }


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership test in the shape's own frame, unit half-size; u right, v down."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == 1:
        return u * u + (v / 0.6) ** 2 <= 1.0
    hx, hy = 1.2 * u, 0.15 - 1.2 * v  # the heart curve, point down
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy**3 <= 0.0


def render(f: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """Factors of B rows → (B, 1, R, R) uint8 images, 0 or 255."""
    grid = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1  # (R,) in [-1, 1]
    out = np.zeros((len(f["shape"]), resolution, resolution), dtype=np.uint8)
    for s in range(len(SHAPE_NAMES)):
        rows = np.flatnonzero(f["shape"] == s)
        if rows.size == 0:
            continue
        half = (0.5 * f["scale"][rows])[:, None, None]  # (b, 1, 1)
        theta = f["orientation"][rows][:, None, None]
        dx = grid[None, None, :] - ((f["pos_x"][rows] * 2 - 1) * 0.5)[:, None, None]  # (b, 1, R)
        dy = grid[None, :, None] - ((f["pos_y"][rows] * 2 - 1) * 0.5)[:, None, None]  # (b, R, 1)
        cos, sin = np.cos(theta), np.sin(theta)
        u = (cos * dx + sin * dy) / half  # (b, R, R)
        v = (cos * dy - sin * dx) / half
        out[rows] = _inside(s, u, v).astype(np.uint8) * 255
    return out[:, None]


def read_unit(unit: ShapesUnit) -> pa.Table:
    ids = np.arange(unit.start, unit.stop, dtype=np.int64)
    f = factors(ids, unit.seed)
    x = np.concatenate(
        [
            render({k: v[i : i + RENDER_ROWS] for k, v in f.items()}, unit.resolution)
            for i in range(0, len(ids), RENDER_ROWS)
        ]
    )
    return rows_table(ids, x, f["shape"], {k: f[k] for k in FACTOR_COLUMNS})


def plan(cfg: DataConfig) -> SourcePlan:
    n, res = cfg.shapes_rows, cfg.shapes_resolution
    step = max(RENDER_ROWS, UNIT_BYTES // (res * res))
    units = [ShapesUnit(s, min(s + step, n), res, cfg.seed) for s in range(0, n, step)]
    return SourcePlan(
        units={"train": units},
        read=read_unit,
        layout=XLayout((1, res, res), "uint8"),
        has_labels=True,
        description=f"procedural shapes ({n} rows of {res}x{res}, seed {cfg.seed})",
        rows=n,
    )
