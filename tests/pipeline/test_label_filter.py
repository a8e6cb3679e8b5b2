"""data.include_labels / data.exclude_labels: training on some labels only."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config.data import DataConfig
from pipeline.data.label_filter import LabelFilter, without_label_filter
from pipeline.errors import UserError
from vae_core.config import ConfigError


def test_keeps_included_and_drops_excluded_labels():
    labels = np.array([0, 1, 2, 3, 3])
    assert LabelFilter((3,), ()).keeps(labels).tolist() == [False, False, False, True, True]
    assert LabelFilter(None, (0, 3)).keeps(labels).tolist() == [False, True, True, False, False]
    assert LabelFilter.from_config(DataConfig()) is None


def test_config_refuses_empty_and_overlapping_filters_in_one_line():
    with pytest.raises(ConfigError, match=r"data\.include_labels.*at least one label"):
        DataConfig(include_labels=())
    with pytest.raises(ConfigError, match=r"data\.exclude_labels.*overlaps"):
        DataConfig(include_labels=(1, 2), exclude_labels=(2,))
    with pytest.raises(ConfigError, match=r"data\.include_labels"):
        DataConfig.from_dict({"include_labels": ["three"]})


def test_inference_reads_every_row_of_a_filtered_models_data():
    cfg = DataConfig(source="digits", include_labels=(3,), exclude_labels=(4,))
    assert LabelFilter.from_config(without_label_filter(cfg)) is None


@pytest.mark.ray
def test_training_splits_hold_only_the_normal_label(ray_local):
    from pipeline.data.ingest import open_source

    src = open_source(DataConfig(source="digits", include_labels=(3,)))
    assert set(src.splits["train"].unique("label")) == {3}
    assert set(src.splits["test"].unique("label")) == {3}
    with pytest.raises(UserError, match=r"label\(s\) \[42\] not in digits"):
        open_source(DataConfig(source="digits", include_labels=(3, 42)))
    with pytest.raises(UserError, match="leaves no training rows"):
        open_source(DataConfig(source="digits", exclude_labels=tuple(range(10))))
