"""The one config mechanism: strict types, ranges, unknown-key suggestions, one-line errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from vae_core.typed_config import ConfigError, TypedConfig, check_key, describe, setting


@dataclass(frozen=True)
class Inner(TypedConfig):
    key_prefix: ClassVar[str] = "inner"

    epochs: int = setting(20, ge=1)
    """An int with a lower bound."""
    use_gpu: bool = False
    """A bool."""
    fraction: float = setting(0.1, ge=0, lt=1)
    """A half-open float range."""
    mode: Literal["none", "cosine"] = "none"
    """A choice."""
    sizes: tuple[int, ...] = setting((8,), ge=1, min_len=1)
    """A non-empty list of positive ints, stored as a tuple."""
    size: tuple[int, int] | None = setting(None, ge=1)
    """Exactly two positive ints, or null."""
    name: str | None = setting(None, min_len=1)
    """A non-blank string, or null."""
    columns: list[str] = setting([])
    """A list of strings, stored as a list."""

    def check(self) -> None:
        if self.use_gpu and self.mode == "cosine":
            self.fail("use_gpu", "cannot be combined with inner.mode='cosine'")


@dataclass(frozen=True)
class Root(TypedConfig):
    inner: Inner = dataclasses.field(default_factory=Inner)
    """A nested section."""
    seed: int = 0
    """A plain int without bounds."""


def error_of(d: dict) -> str:
    with pytest.raises(ConfigError) as err:
        Root.from_dict(d)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2.5, "inner.epochs=2.5: must be an int >= 1 (got a float)"),
        ("3", "inner.epochs='3': must be an int >= 1 (got a string)"),
        (True, "inner.epochs=true: must be an int >= 1 (got a bool)"),
        (None, "inner.epochs=null: must be an int >= 1 (got null)"),
        (0, "inner.epochs=0: must be an int >= 1"),
    ],
)
def test_an_int_field_refuses_floats_strings_bools_and_out_of_range(value, message):
    assert error_of({"inner": {"epochs": value}}) == message


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_a_bool_field_refuses_everything_but_true_and_false(value):
    assert error_of({"inner": {"use_gpu": value}}).startswith("inner.use_gpu=")
    assert "must be true or false (got " in error_of({"inner": {"use_gpu": value}})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("fraction", 1.0, "must be a number in [0, 1)"),
        ("fraction", -0.1, "must be a number in [0, 1)"),
        ("fraction", float("nan"), "must be a number in [0, 1)"),
        ("mode", "step", "must be one of 'none', 'cosine'"),
        ("sizes", [], "must be a non-empty list of ints >= 1"),
        ("sizes", [4, 0], "must be a non-empty list of ints >= 1"),
        ("sizes", "4", "must be a non-empty list of ints >= 1 (got a string)"),
        ("size", [4], "must be a list of 2 ints >= 1 or null"),
        ("name", "  ", "must be a non-empty string or null"),
        ("columns", ["x", 3], "must be a list of strings"),
    ],
)
def test_range_and_shape_errors_name_key_value_and_what_is_allowed(key, value, allowed):
    assert error_of({"inner": {key: value}}) == f"inner.{key}={value!r}: {allowed}"


def test_values_are_stored_as_annotated():
    cfg = Root.from_dict({"inner": {"fraction": 0, "sizes": [4, 2], "size": [3, 5]}})
    assert cfg.inner.fraction == 0.0 and isinstance(cfg.inner.fraction, float)
    assert cfg.inner.sizes == (4, 2) and cfg.inner.size == (3, 5)
    assert Inner(columns=("a",)).columns == ["a"]
    assert Root.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["inner"]["sizes"] == [4, 2]


def test_unknown_key_suggests_the_closest_known_one():
    assert (
        error_of({"inner": {"epoch": 3}}) == "unknown key inner.epoch (did you mean inner.epochs?)"
    )
    assert error_of({"iner": {}}) == "unknown key iner (did you mean inner?)"
    assert error_of({"inner": {"zzz": 1}}).startswith("unknown key inner.zzz (known: epochs, ")


def test_a_section_must_be_a_mapping():
    assert error_of({"inner": 5}) == "inner=5: must be a mapping of Inner keys (got an int)"
    assert Root.from_dict({"inner": None}) == Root()


def test_cross_field_rule_names_the_key_in_its_section():
    message = error_of({"inner": {"use_gpu": True, "mode": "cosine"}})
    assert message == "inner.use_gpu=true: cannot be combined with inner.mode='cosine'"


def test_direct_construction_and_replace_check_the_same_way():
    with pytest.raises(ConfigError, match=r"^inner\.epochs=2\.5: must be an int >= 1"):
        Inner(epochs=2.5)
    with pytest.raises(ConfigError, match=r"^inner\.fraction=2: must be a number in \[0, 1\)"):
        dataclasses.replace(Inner(), fraction=2)


def test_from_dict_names_a_section_by_the_path_it_was_loaded_at():
    with pytest.raises(ConfigError, match=r"^jobs\.first\.epochs=0: "):
        Inner.from_dict({"epochs": 0}, "jobs.first")


def test_check_key_applies_the_same_rules_to_one_dotted_key():
    assert check_key(Root, "inner.sizes", [3, 4]) == (3, 4)
    assert check_key(Root, "inner.fraction", 0) == 0.0
    assert check_key(Root, "inner", {"epochs": 3}) == Inner(epochs=3)
    with pytest.raises(ConfigError, match=r"^inner\.epochs=2\.5: must be an int >= 1"):
        check_key(Root, "inner.epochs", 2.5)
    with pytest.raises(ConfigError, match=r"did you mean inner\.epochs\?"):
        check_key(Root, "inner.epoch", 3)
    with pytest.raises(ConfigError, match="seed is a key, not a section"):
        check_key(Root, "seed.x", 3)


def test_describe_words():
    assert describe(int, {"ge": 8, "le": 1024}) == "an int in [8, 1024]"
    assert describe(float, {"gt": 0}) == "a number > 0"
    assert describe(float | None, {"gt": 0}) == "a number > 0 or null"
