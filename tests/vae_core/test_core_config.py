"""vae_core's configs: validation names the field and the value; from_dict rejects unknown keys."""

from __future__ import annotations

import dataclasses

import pytest

from vae_core import VAE, ModelConfig, ObjectiveConfig, OptimConfig

BAD_VALUES = [
    (ModelConfig, "latent_dim", 0),
    (ModelConfig, "latent_dim", True),
    (ModelConfig, "encoder", "transformer"),
    (ModelConfig, "decoder", "rnn"),
    (ModelConfig, "hidden_sizes", (512, -1)),
    (ModelConfig, "conv_channels", ()),
    (ModelConfig, "activation", "sigmoidish"),
    (ModelConfig, "likelihood", "poisson"),
    (ModelConfig, "gaussian_std", 0.0),
    (ModelConfig, "input_shape", (1, 0, 28)),
    (ObjectiveConfig, "beta", -1.0),
    (ObjectiveConfig, "kl_warmup_steps", -5),
    (ObjectiveConfig, "free_bits", -0.5),
    (ObjectiveConfig, "iw_samples", 0),
    (OptimConfig, "lr", 0.0),
    (OptimConfig, "weight_decay", -1e-4),
    (OptimConfig, "scheduler", "step"),
    (OptimConfig, "warmup_steps", 1.5),
    (OptimConfig, "grad_clip_norm", 0.0),
]


@pytest.mark.parametrize(("cls", "field", "value"), BAD_VALUES)
def test_bad_value_names_field_and_value(cls, field, value):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    # Shown as YAML writes it: true, [512, -1].
    shown = "true" if value is True else repr(list(value) if isinstance(value, tuple) else value)
    assert f"{cls.__name__}.{field}={shown}: must be " in str(err.value)


def test_conv_shape_constraints_name_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        ModelConfig(input_shape=(784,), encoder="conv")
    with pytest.raises(ValueError, match="divisible by 8"):
        ModelConfig(input_shape=(1, 28, 28), decoder="conv", conv_channels=(8, 16, 32))
    ModelConfig(input_shape=(1, 28, 28), encoder="conv", decoder="conv")  # 28 / 4 = 7: fine


def test_learn_std_requires_gaussian():
    with pytest.raises(ValueError, match="learn_std"):
        ModelConfig(likelihood="bernoulli", learn_std=True)


@pytest.mark.parametrize("cls", [ModelConfig, ObjectiveConfig, OptimConfig])
def test_unknown_key_is_named(cls):
    with pytest.raises(ValueError, match="latnet_dim"):
        cls.from_dict({"latnet_dim": 3})


def test_from_dict_turns_lists_into_tuples_and_round_trips():
    cfg = ModelConfig.from_dict(
        {"input_shape": [1, 28, 28], "hidden_sizes": [256, 128], "conv_channels": [16, 32]}
    )
    assert cfg.input_shape == (1, 28, 28) and cfg.hidden_sizes == (256, 128)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    for cls in (ObjectiveConfig, OptimConfig):
        assert cls.from_dict(cls().to_dict()) == cls()


def test_configs_are_frozen_and_yaml_ints_are_accepted():
    cfg = OptimConfig.from_dict({"lr": 1, "grad_clip_norm": 5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.1  # type: ignore[misc]


def test_empty_input_shape_is_filled_later_but_vae_rejects_it():
    cfg = ModelConfig()
    assert cfg.input_shape == ()
    with pytest.raises(ValueError, match="input_shape"):
        VAE(cfg)
    VAE(dataclasses.replace(cfg, input_shape=(64,)))


def test_every_field_has_a_docstring():
    import inspect

    for cls in (ModelConfig, ObjectiveConfig, OptimConfig):
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            after = source.split(f"    {f.name}:", 1)[1].splitlines()[1].strip()
            assert after.startswith('"""'), f"{cls.__name__}.{f.name} has no docstring"
