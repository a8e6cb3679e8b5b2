"""train, encode, evaluate and sample share one set of data flags."""

from __future__ import annotations

import argparse
import importlib

import pytest

from jobs.data_flags import data_overrides

FLAGS = ["--data", "d", "--column", "px", "--image-size", "28", "28", "--binarize", "static"]
FLAGS += ["--no-standardize"]


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    importlib.import_module(f"jobs.{command}").add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "command, required",
    [
        ("train", []),
        ("encode", ["--model", "m", "--out", "o"]),
        ("evaluate", ["--model", "m"]),
        ("sample", ["--model", "m", "--out", "o.png", "--reconstruct"]),
    ],
)
def test_every_command_takes_the_same_data_flags(command, required):
    args = _parse(command, required + FLAGS)
    assert args.data == "d"
    assert data_overrides(args) == {
        "column": "px",
        "image_size": [28, 28],
        "binarize": "static",
        "standardize": False,
    }
    assert data_overrides(_parse(command, required + ["--data", "d"])) == {}


def test_train_turns_the_data_flags_into_config_keys():
    from jobs.train import overrides_from_args
    from pipeline.config.job import load_job_config

    data = load_job_config("digits", overrides_from_args(_parse("train", FLAGS))).data
    assert (data.source, data.column, data.image_size) == ("d", "px", (28, 28))
    assert data.binarize == "static" and data.standardize is False
