"""One resolver for "registered model + --data": the data read as the model was trained."""

from __future__ import annotations

import pytest

from pipeline.config.data import DataConfig
from pipeline.data.batches import Preprocessor
from pipeline.data.schema import XLayout
from pipeline.errors import UserError
from pipeline.inference.model_data import check_layout, model_preprocessor, resolve_model_data
from pipeline.tracking.registry import LoadedModel
from vae_core.config import ModelConfig
from vae_core.model import VAE

SHAPE = (1, 8, 8)
TRAINED = DataConfig(
    source="/data/train.parquet",
    column="pixels",
    label_column="digit",
    binarize="dynamic",
    val_fraction=0.2,
    seed=7,
)


def _loaded(data: DataConfig | None = TRAINED, standardized: bool = False) -> LoadedModel:
    layout = XLayout(SHAPE, "uint8")
    stats = dict(mean=[0.5] * 64, std=[0.2] * 64) if standardized else {}
    binarize = "none" if standardized else (data.binarize if data else "none")
    pre = Preprocessor(layout=layout, binarize=binarize, binarize_seed=3, **stats)
    vae = VAE(ModelConfig(input_shape=SHAPE, latent_dim=2, hidden_sizes=(8,)))
    return LoadedModel(
        vae=vae,
        preprocessor=pre.to_dict(),
        name="tiny",
        version="1",
        run_id=None,
        data_source=data.source if data else None,
        uri="models:/tiny/1",
        data_config=data.to_dict() if data else None,
    )


def test_the_training_source_is_read_with_the_training_config_and_splits():
    got = resolve_model_data(_loaded(), TRAINED.source)
    assert got.data.column == "pixels" and got.data.label_column == "digit"
    assert got.data.val_fraction == 0.2 and got.data.seed == 7  # the same splits
    assert got.preprocessor.binarize == "static"  # deterministic: a fixed draw per id
    assert got.preprocessor.binarize_seed == 3


def test_another_source_keeps_how_rows_are_read_but_not_the_splits():
    got = resolve_model_data(_loaded(), "/data/other.parquet")
    assert got.data.source == "/data/other.parquet"
    assert got.data.column == "pixels" and got.data.label_column == "digit"
    assert got.data.val_fraction == DataConfig().val_fraction and got.data.seed == 0
    assert got.data.image_size == (8, 8)  # an image folder is resized to what the model takes


def test_a_model_without_a_stored_config_reads_with_defaults():
    got = resolve_model_data(_loaded(data=None), "digits")
    assert got.data == DataConfig(source="digits", image_size=(8, 8))


def test_user_overrides_win():
    got = resolve_model_data(
        _loaded(), TRAINED.source, {"column": "x", "image_size": [8, 8], "binarize": "none"}
    )
    assert got.data.column == "x" and got.preprocessor.binarize == "none"
    pre = model_preprocessor(_loaded(standardized=True), {"standardize": False})
    assert pre.mean is None and pre.std is None


@pytest.mark.parametrize(
    "standardized, overrides, match",
    [
        (False, {"standardize": True}, "trained without standardization"),
        (True, {"binarize": "static"}, "add --no-standardize"),
        (False, {"image_size": [0, 8]}, "data.image_size"),
    ],
)
def test_contradicting_overrides_are_one_line_user_errors(standardized, overrides, match):
    with pytest.raises(UserError, match=match):
        resolve_model_data(_loaded(standardized=standardized), "digits", overrides)


def test_samples_must_match_the_model_shape_and_stored_dtype():
    check_layout(_loaded(), XLayout(SHAPE, "uint8"), "src")
    with pytest.raises(UserError, match=r"expects samples of shape \[1, 8, 8\]"):
        check_layout(_loaded(), XLayout((1, 28, 28), "uint8"), "src")
    with pytest.raises(UserError, match="trained on uint8 samples, but src holds float32"):
        check_layout(_loaded(), XLayout(SHAPE, "float32"), "src")
