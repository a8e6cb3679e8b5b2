"""One resolver for "registered model + ``--data``": read the data the way the model saw it.

``encode``, ``evaluate`` and ``sample --reconstruct`` all start here. The model stores its
training ``DataConfig`` and its ``Preprocessor``; from them come

* how rows are read: the Parquet column, id/label columns, the image size (the model's own
  (H, W) when training kept the first image's size), the ``shapes`` resolution; and, when
  ``--data`` names the training source itself, the whole training config, so the train/val/test
  splits are the training run's (``test`` = rows the model never saw);
* how rows become model input: scaling, binarization, standardization (its stored statistics),
  with dynamic binarization made deterministic (a fixed draw per id) so reruns agree.

The user overrides any of these with the flags ``jobs/data_flags.py`` adds to all four
commands; ``overrides`` holds the ones given, by ``DataConfig`` field name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.config.data import DataConfig
from pipeline.data.batches import Preprocessor
from pipeline.data.label_filter import without_label_filter
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.tracking.registry import LoadedModel

# Which DataConfig fields say how a source's rows are read, whatever the source: carried from
# training to another source. The split fields (fractions, seed) only carry with the source.
READING_FIELDS = (
    "column",
    "columns",
    "numeric_columns",
    "id_column",
    "label_column",
    "image_size",
    "shapes_resolution",
)
# What a user may override (the shared flags): reading, and the model-input transform.
OVERRIDABLE = ("column", "image_size", "binarize", "standardize")


@dataclass(frozen=True)
class ModelData:
    data: DataConfig
    """How to read ``--data`` (splits included)."""
    preprocessor: Preprocessor
    """Stored sample -> model input, deterministic."""


def resolve_model_data(
    loaded: LoadedModel, source: str, overrides: Mapping[str, Any] | None = None
) -> ModelData:
    """The data config and preprocessor for ``source`` read as ``loaded`` was trained."""
    overrides = _checked(overrides)
    # A model trained on some labels only still scores every row it is given.
    data = without_label_filter(_data_config(loaded, source, overrides))
    return ModelData(data, model_preprocessor(loaded, overrides))


def model_preprocessor(
    loaded: LoadedModel, overrides: Mapping[str, Any] | None = None
) -> Preprocessor:
    """The model's stored preprocessor, deterministic, with the user's overrides."""
    overrides = _checked(overrides)
    pre = Preprocessor.from_dict(loaded.preprocessor)
    if overrides.get("standardize") is False:
        pre = dataclasses.replace(pre, mean=None, std=None)
    elif overrides.get("standardize") and pre.mean is None:
        raise UserError(
            f"--standardize: model {loaded.uri} was trained without standardization, "
            "so it stores no statistics to standardize with"
        )
    if "binarize" in overrides:
        if overrides["binarize"] != "none" and pre.mean is not None:
            raise UserError(
                f"--binarize {overrides['binarize']}: model {loaded.uri} standardizes its "
                "input; add --no-standardize to binarize instead"
            )
        pre = dataclasses.replace(pre, binarize=overrides["binarize"])
    if pre.binarize == "dynamic":
        # A fixed draw per id: the same distribution as training, the same input on every rerun.
        pre = dataclasses.replace(pre, binarize="static")
    return pre


def check_layout(loaded: LoadedModel, layout: XLayout, source: str) -> None:
    """The samples of ``source`` must have the model's shape and the stored dtype (scaling
    depends on it: uint8 is divided by 255, floats are not)."""
    expected = tuple(loaded.vae.cfg.input_shape)
    if tuple(layout.shape) != expected:
        raise UserError(
            f"model {loaded.uri} expects samples of shape {list(expected)}, "
            f"but {source} has shape {list(layout.shape)}"
        )
    stored = (loaded.preprocessor.get("layout") or {}).get("dtype")
    if stored is not None and stored != layout.dtype:
        raise UserError(
            f"model {loaded.uri} was trained on {stored} samples, but {source} holds {layout.dtype}"
        )


def _data_config(loaded: LoadedModel, source: str, overrides: dict[str, Any]) -> DataConfig:
    stored = dict(loaded.data_config or {})
    if stored.get("source") == source:
        base = dict(stored)  # the training rows: the same splits
    else:
        base = {k: stored[k] for k in READING_FIELDS if k in stored} | {"source": source}
    if base.get("image_size") is None:
        base["image_size"] = _image_size(loaded)
    # binarize/standardize act through the preprocessor; in the config they only document.
    base |= {k: v for k, v in overrides.items() if k in ("column", "image_size")}
    base |= {"binarize": "none", "standardize": False}
    try:
        return DataConfig.from_dict(base)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _image_size(loaded: LoadedModel) -> tuple[int, int] | None:
    """(H, W) of an image model (C, H, W), so image folders are resized to what it takes."""
    shape = tuple(loaded.vae.cfg.input_shape)
    return (int(shape[1]), int(shape[2])) if len(shape) == 3 else None


def _checked(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(overrides or {})
    unknown = sorted(set(out) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"not a data override: {unknown}; known: {list(OVERRIDABLE)}")
    return out
