"""Every shipped job config loads and validates; overrides and unknown keys behave."""

from __future__ import annotations

import pytest

from pipeline.config.job import TrainJobConfig, load_job_config, shipped_configs
from pipeline.errors import UserError


@pytest.mark.parametrize("name", ["digits", "mnist", "shapes"])
def test_required_configs_are_shipped(name):
    assert name in shipped_configs()


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_loads_and_round_trips(name):
    cfg = load_job_config(name, [])
    assert cfg.train.epochs >= 1 and cfg.tracking.model_name
    assert TrainJobConfig.from_dict(cfg.to_dict()) == cfg


def test_defaults_without_a_file():
    cfg = load_job_config(None, ["data.source=digits"])
    assert cfg.data.source == "digits" and cfg.scaling.workers == 1


def test_overrides_are_yaml_values():
    cfg = load_job_config(
        "digits", ["train.epochs=3", "model.hidden_sizes=[32, 16]", "scaling.use_gpu=true"]
    )
    assert cfg.train.epochs == 3
    assert cfg.model.hidden_sizes == (32, 16)
    assert cfg.scaling.use_gpu is True


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.epochz=3", "epochz"),
        ("model.latent=3", "latent"),
        ("data.sourc=x", "sourc"),
        ("trainer.epochs=3", "trainer"),
        ("scaling.precision=fp8", "precision"),
        ("train.epochs=0", "epochs"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, named):
    with pytest.raises(ValueError, match=named):
        load_job_config("digits", [override])


def test_malformed_override():
    with pytest.raises(ValueError, match="section.key=value"):
        load_job_config("digits", ["epochs"])


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("data:\n  source: digits\ntrain:\n  epoch: 3\n")
    with pytest.raises(ValueError, match="train.epoch"):
        load_job_config(str(path), [])


def test_missing_config_is_a_user_error():
    with pytest.raises(UserError, match="nope"):
        load_job_config("nope", [])


def test_cli_shortcuts_become_overrides():
    import argparse

    from jobs import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(
        [
            "--data",
            "digits",
            "--epochs",
            "2",
            "--use-gpu",
            "--latent-dim",
            "3",
            "--set",
            "train.epochs=5",
        ]
    )
    cfg = load_job_config("digits", train.overrides_from_args(args))
    assert cfg.train.epochs == 5  # explicit --set wins over the shortcut
    assert cfg.scaling.use_gpu and cfg.model.latent_dim == 3 and cfg.data.source == "digits"
