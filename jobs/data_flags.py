"""The data flags ``train``, ``encode``, ``evaluate`` and ``sample`` share.

``train`` turns them into ``data.*`` config keys; the inference commands hand them to
``pipeline.inference.model_data.resolve_model_data`` as overrides of what the model stored.
A flag not given is absent from ``data_overrides(args)``: the config (train) or the model
(inference) decides.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.config.data import BINARIZE_MODES

FIELDS = ("column", "image_size", "binarize", "standardize")  # DataConfig fields = flag dests


def add_data_flags(parser: argparse.ArgumentParser, *, data_required: bool, data_help: str) -> None:
    """``--data`` and how to read it; for a registered model the defaults are its own."""
    parser.add_argument("--data", required=data_required, help=data_help)
    group = parser.add_argument_group(
        "reading the data", "default: as in the config (train) or as the model was trained"
    )
    group.add_argument("--column", help="data column of a Parquet source (default: detect)")
    group.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="resize image-folder images to H x W",
    )
    group.add_argument("--binarize", choices=BINARIZE_MODES, help="Bernoulli binarization")
    group.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-feature standardization (inference: with the model's stored statistics)",
    )


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The data flags given, by ``DataConfig`` field name."""
    given = {field: getattr(args, field, None) for field in FIELDS}
    return {k: (list(v) if k == "image_size" else v) for k, v in given.items() if v is not None}
