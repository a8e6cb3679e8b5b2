"""Every shipped job config loads and validates; overrides and unknown keys behave; bad values
are one line naming the full key, also on the command line, before Ray starts."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config.job import (
    TrainJobConfig,
    check_job_key,
    load_job_config,
    shipped_configs,
)
from pipeline.errors import UserError
from vae_core.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["digits", "mnist", "mnist-best", "shapes"])
def test_required_configs_are_shipped(name):
    assert name in shipped_configs()


def test_mnist_best_trains_on_the_same_data_as_mnist():
    best, base = load_job_config("mnist-best", []), load_job_config("mnist", [])
    assert best.data == base.data  # same split and binarization: the two figures compare
    assert best.model.output_bias_init == "data_mean" and best.model.likelihood == "bernoulli"


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_config_loads_and_round_trips(name):
    cfg = load_job_config(name, [])
    assert cfg.train.epochs >= 1 and cfg.tracking.model_name
    assert TrainJobConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainJobConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=2.5", "train.epochs=2.5: must be an int >= 1 (got a float)"),
        ('train.epochs="3"', "train.epochs='3': must be an int >= 1 (got a string)"),
        (
            'scaling.use_gpu="false"',
            "scaling.use_gpu='false': must be true or false (got a string)",
        ),
        ("model.latent_dim=0", "model.latent_dim=0: must be an int >= 1"),
        ("optim.lr=-1", "optim.lr=-1: must be a number > 0"),
        ("data.val_fraction=1", "data.val_fraction=1: must be a number in [0, 1)"),
        ("data.shapes_resolution=4", "data.shapes_resolution=4: must be an int in [8, 1024]"),
        ("tracking.run_name=a/b", "tracking.run_name='a/b': must be a non-empty name without '/'"),
        ("train.epoch=3", "unknown key train.epoch (did you mean train.epochs?)"),
        ("trainer.epochs=3", "unknown key trainer (did you mean train?)"),
        ("data=digits", "data='digits': must be a mapping of DataConfig keys (got a string)"),
    ],
)
def test_bad_value_is_one_line_naming_full_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_job_config("digits", [override])
    assert str(err.value) == message


def test_cross_field_rules_name_the_full_key():
    with pytest.raises(ConfigError, match=r"^data\.standardize=true: cannot be combined with"):
        load_job_config("digits", ["data.standardize=true"])  # digits binarizes
    with pytest.raises(ConfigError, match=r"^model\.input_shape=\[784\]: conv networks need"):
        load_job_config("digits", ["model.encoder=conv", "model.input_shape=[784]"])


def test_check_job_key_uses_the_config_rules():
    assert check_job_key("model.hidden_sizes", [64, 32]) == (64, 32)
    assert check_job_key("optim.lr", 1) == 1.0
    with pytest.raises(ConfigError, match=r"^train\.epochs=2\.5: must be an int >= 1"):
        check_job_key("train.epochs", 2.5)
    with pytest.raises(ConfigError, match=r"did you mean optim\.lr\?"):
        check_job_key("optim.lrr", 0.1)


def test_every_field_of_every_section_has_a_docstring():
    job = TrainJobConfig()
    for cls in [TrainJobConfig, *(type(getattr(job, f.name)) for f in dataclasses.fields(job))]:
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            after = source.split(f"    {f.name}:", 1)[1].splitlines()[1].strip()
            assert after.startswith('"""'), f"{cls.__name__}.{f.name} has no docstring"


def test_config_errors_survive_pickling():  # Ray ships a worker's errors back to the driver
    import pickle

    with pytest.raises(ConfigError) as err:
        load_job_config("digits", ["train.epochs=2.5"])
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == str(err.value) and again.key == "train.epochs"


def test_print_config_round_trips_through_the_loader(tmp_path, capsys):
    import argparse

    from jobs import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    argv = ["--config", "shapes", "--epochs", "3", "--set", "model.hidden_sizes=[64]"]
    assert train.run(parser.parse_args([*argv, "--print-config"])) == 0
    printed = tmp_path / "resolved.yaml"
    printed.write_text(capsys.readouterr().out)
    expected = load_job_config("shapes", train.overrides_from_args(parser.parse_args(argv)))
    assert load_job_config(str(printed), []) == expected
    assert expected.train.epochs == 3 and expected.model.hidden_sizes == (64,)


def test_cli_refuses_a_bad_value_in_one_line_without_starting_ray():
    # jobs/__main__.py's main(), then one more stdout line telling whether Ray was even imported.
    script = (
        "import sys; from jobs.cli import main; rc = main(sys.argv[1:]); "
        "print('ray imported' if 'ray' in sys.modules else 'no ray'); sys.exit(rc)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv = ["train", "--config", "digits", "--set", "train.epochs=2.5"]
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        "vaepipe: error: train.epochs=2.5: must be an int >= 1 (got a float)"
    ]
    assert proc.stdout.splitlines() == ["no ray"]
