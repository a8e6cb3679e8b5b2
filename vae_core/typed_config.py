"""The one way every vaepipe config section is declared and checked.

A section is a frozen dataclass that subclasses ``TypedConfig``. Each field is one line — its
type annotation, its default (``setting(default, ge=..., ...)`` when it has a range) — followed
by its docstring::

    @dataclass(frozen=True)
    class TrainSettings(TypedConfig):
        key_prefix: ClassVar[str] = "train"

        epochs: int = setting(20, ge=1)
        \"\"\"Maximum number of passes over the training split.\"\"\"

Construction (``TrainSettings(...)``, ``from_dict``, ``dataclasses.replace``) checks every field
against its annotation, strictly: an ``int`` refuses ``2.5``, ``"3"`` and ``true``; a ``bool``
refuses ``"false"`` and ``1``; a ``float`` takes an int (stored as a float) but not NaN or Inf.
Understood types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
``tuple[T, ...]`` / ``tuple[T, T]`` / ``list[T]`` (YAML lists, stored as the annotated
container; prefer tuples, which keep a frozen config hashable) and a nested ``TypedConfig``
(given as a mapping). Ranges bound a number or each
number of a list; ``min_len`` bounds a list's length or a string's non-blank length.
Rules that tie two fields together go in ``check(self)`` and report with ``self.fail``.

Every error is a ``ConfigError`` of one line naming the full key, the value and what is
allowed (``train.epochs=2.5: must be an int >= 1 (got a float)``); an unknown key names the
closest known one. ``check_key(root, "train.epochs", value)`` applies the same rules to one
dotted key, for anything else that names config keys.

Why this and not pydantic: ``vae_core`` must stay PyTorch + stdlib, and its configs are sections
like the others, so one mechanism for all sections has to be stdlib; pydantic's strict mode on
stdlib dataclasses also refuses YAML lists for tuple fields and mappings for the dataclass
itself, needs range metadata from its own package, and its multi-line errors would have to be
rewritten into one line anyway. This module is short, checks on every construction (also a
config built in code or rebuilt on a Ray worker) and words its errors for people editing YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

C = TypeVar("C", bound="TypedConfig")

_RANGE_KEYS = ("ge", "gt", "le", "lt", "min_len")


class ConfigError(ValueError):
    """A config key or value that is not allowed; ``str()`` is one line naming the full key."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Ray ships errors between processes)
        return (ConfigError, (str(self), self.key))


class FieldError(ConfigError):
    """A bad value of one field, raised by its section (``owner``) under ``label``."""

    def __init__(self, owner: type, label: str, field: str, value: Any, why: str) -> None:
        self.owner, self.label, self.field, self.value, self.why = owner, label, field, value, why
        key = f"{label}.{field}" if label else field
        super().__init__(f"{key}={_show(value)}: {why}", key)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FieldError, (self.owner, self.label, self.field, self.value, self.why))

    def relabeled(self, label: str) -> FieldError:
        return FieldError(self.owner, label, self.field, self.value, self.why)


class _Invalid(Exception):
    """Internal: a value does not fit its field; ``wrong_type`` adds "(got a …)"."""

    def __init__(self, wrong_type: bool) -> None:
        self.wrong_type = wrong_type


def setting(default: Any, **bounds: Any) -> Any:
    """A field default with bounds: ``ge``, ``gt``, ``le``, ``lt`` (numbers), ``min_len``."""
    unknown = set(bounds) - set(_RANGE_KEYS)
    if unknown:
        raise TypeError(f"setting() got unknown bounds {sorted(unknown)}")
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=bounds)
    return dataclasses.field(default=default, metadata=bounds)


class TypedConfig:
    """Base of every config section; subclasses are ``@dataclass(frozen=True)``."""

    key_prefix: ClassVar[str] = ""
    """How errors name this section's keys (``train`` → ``train.epochs``); "" uses the class
    name. ``from_dict(d, prefix)`` overrides it, so a nested section is named by its path."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            checked, why = _check_value(hints[f.name], f.metadata, getattr(self, f.name))
            if why is not None:
                self.fail(f.name, why)
            object.__setattr__(self, f.name, checked)
        self.check()

    def check(self) -> None:
        """Rules that tie fields together; override and call ``self.fail`` on a violation."""

    def fail(self, field: str, why: str) -> typing.NoReturn:
        label = type(self).key_prefix or type(self).__name__
        raise FieldError(type(self), label, field, getattr(self, field), why)

    @classmethod
    def from_dict(cls: type[C], d: Any, prefix: str | None = None) -> C:
        """Build from a YAML mapping: unknown keys refused, nested sections built from mappings."""
        label = cls.key_prefix if prefix is None else prefix
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"{label or cls.__name__}={_show(d)}: must be a mapping of keys", label
            )
        hints = _hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        kwargs = {}
        for key, value in d.items():
            if key not in fields:
                raise _unknown_key(label, str(key), fields)
            section = _section_type(hints[key])
            if section is not None and (value is None or isinstance(value, Mapping)):
                value = section.from_dict(value or {}, _join(label, key))
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except FieldError as err:
            if err.owner is cls and err.label != label:
                raise err.relabeled(label) from None
            raise

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, mappings) ready for YAML, JSON or MLflow params."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def check_key(root: type[TypedConfig], key: str, value: Any) -> Any:
    """Check one dotted key (``train.epochs``) and its value against ``root``'s schema.

    Returns the value as the config would store it (a list as a tuple, an int as a float for a
    float field); raises ``ConfigError`` exactly as loading a config with that value would, except
    for the ``check`` rules that tie several fields together.
    """
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{key!r} is not a dotted config key such as train.epochs", key)
    *path, leaf = parts
    section = root
    for depth, part in enumerate(path):
        nested = _section_type(_field_of(section, ".".join(path[:depth]), part)[0])
        if nested is None:
            raise ConfigError(f"{'.'.join(path[: depth + 1])} is a key, not a section", key)
        section = nested
    label = ".".join(path)
    hint, meta = _field_of(section, label, leaf)
    nested = _section_type(hint)
    if nested is not None and isinstance(value, Mapping):
        return nested.from_dict(value, key)
    checked, why = _check_value(hint, meta, value)
    if why is not None:
        raise FieldError(section, label, leaf, value, why)
    return checked


def _field_of(section: type[TypedConfig], label: str, name: str) -> tuple[Any, Mapping[str, Any]]:
    """(type, bounds) of one field of ``section``; an unknown name suggests the closest one."""
    fields = {f.name: f for f in dataclasses.fields(section)}  # type: ignore[arg-type]
    if name not in fields:
        raise _unknown_key(label, name, list(fields))
    return _hints(section)[name], fields[name].metadata


# --- checking one value against a type ---------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section_type(hint: Any) -> type[TypedConfig] | None:
    if isinstance(hint, type) and issubclass(hint, TypedConfig):
        return hint
    return None


def _optional_inner(hint: Any) -> Any | None:
    """``X`` for ``X | None``, else None."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"config fields support only X | None unions, not {hint}")
        return args[0]
    return None


def _check_value(hint: Any, meta: Mapping[str, Any], value: Any) -> tuple[Any, str | None]:
    """(the value as stored, None), or (None, why it is refused)."""
    try:
        return _coerce(hint, meta, value), None
    except _Invalid as bad:
        return None, _why(hint, meta, value, bad.wrong_type)


def _coerce(hint: Any, meta: Mapping[str, Any], v: Any) -> Any:
    inner = _optional_inner(hint)
    if inner is not None:
        return None if v is None else _coerce(inner, meta, v)
    origin = get_origin(hint)
    if origin in (tuple, list):
        return _coerce_sequence(hint, meta, v)
    if origin is Literal:
        if not any(type(v) is type(c) and v == c for c in get_args(hint)):
            raise _Invalid(wrong_type=False)
        return v
    if hint is bool:
        _require(isinstance(v, bool), wrong_type=True)
        return v
    if hint is int:  # numpy ints too (Integral), never a bool, a float or a string
        _require(isinstance(v, numbers.Integral) and not isinstance(v, bool), wrong_type=True)
        _require(_in_range(v, meta), wrong_type=False)
        return int(v)
    if hint is float:
        _require(isinstance(v, numbers.Real) and not isinstance(v, bool), wrong_type=True)
        _require(math.isfinite(v) and _in_range(v, meta), wrong_type=False)
        return float(v)
    if hint is str:
        _require(isinstance(v, str), wrong_type=True)
        _require(len(v.strip()) >= meta.get("min_len", 0), wrong_type=False)
        return v
    section = _section_type(hint)
    if section is not None:
        _require(isinstance(v, section), wrong_type=True)
        return v
    raise TypeError(f"config fields do not support the type {hint}")


def _coerce_sequence(hint: Any, meta: Mapping[str, Any], v: Any) -> Any:
    _require(isinstance(v, (list, tuple)), wrong_type=True)
    args = get_args(hint)
    if get_origin(hint) is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        _require(len(v) == len(args), wrong_type=False)
        item_types = list(args)
    else:
        _require(len(v) >= meta.get("min_len", 0), wrong_type=False)
        item_types = [args[0]] * len(v)
    item_meta = {k: b for k, b in meta.items() if k != "min_len"}
    try:
        items = [_coerce(t, item_meta, item) for t, item in zip(item_types, v, strict=True)]
    except _Invalid:
        raise _Invalid(wrong_type=False) from None  # a list it is: "(got a list)" would mislead
    return tuple(items) if get_origin(hint) is tuple else items


def _require(ok: bool, wrong_type: bool) -> None:
    if not ok:
        raise _Invalid(wrong_type)


def _in_range(v: float, meta: Mapping[str, Any]) -> bool:
    checks = {
        "ge": lambda b: v >= b,
        "gt": lambda b: v > b,
        "le": lambda b: v <= b,
        "lt": lambda b: v < b,
    }
    return all(check(meta[k]) for k, check in checks.items() if k in meta)


# --- words for errors --------------------------------------------------------------------------


def _why(hint: Any, meta: Mapping[str, Any], value: Any, wrong_type: bool) -> str:
    why = f"must be {describe(hint, meta)}"
    if not wrong_type:
        return why
    if (_optional_inner(hint) or hint) is str and isinstance(value, (int, float)):
        return f"{why} (got {_kind(value)}: quote it to pass it as a string)"
    return f"{why} (got {_kind(value)})"


def describe(hint: Any, meta: Mapping[str, Any] | None = None) -> str:
    """What a field allows, in words: ``an int >= 1``, ``one of 'none', 'cosine'``, ..."""
    meta = meta or {}
    inner = _optional_inner(hint)
    if inner is not None:
        return f"{describe(inner, meta)} or null"
    origin = get_origin(hint)
    if origin in (tuple, list):
        args = get_args(hint)
        item_meta = {k: b for k, b in meta.items() if k != "min_len"}
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)} {_plural(args[0], item_meta)}"
        lead = "a non-empty list" if meta.get("min_len", 0) >= 1 else "a list"
        return f"{lead} of {_plural(args[0], item_meta)}"
    if origin is Literal:
        return "one of " + ", ".join(repr(c) for c in get_args(hint))
    if hint is bool:
        return "true or false"
    if hint in (int, float):
        return ("an int" if hint is int else "a number") + _range_words(meta)
    if hint is str:
        return "a non-empty string" if meta.get("min_len", 0) >= 1 else "a string"
    section = _section_type(hint)
    return f"a mapping of {section.__name__} keys" if section else str(hint)


def _plural(hint: Any, meta: Mapping[str, Any]) -> str:
    if hint in (int, float):
        return ("ints" if hint is int else "numbers") + _range_words(meta)
    if hint is str:
        return "strings"
    return describe(hint, meta)


def _range_words(meta: Mapping[str, Any]) -> str:
    low = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    high = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if low and high:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f" {'<=' if high[0] == ']' else '<'} {high[1]}"
    return ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a bool", int: "an int", float: "a float", str: "a string"}
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return names.get(type(value), f"a {type(value).__name__}")


def _show(value: Any, limit: int = 80) -> str:
    """The value as a YAML user wrote it (null, true, [1, 2]), strings quoted; one short line."""
    text = _yamlish(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _yamlish(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yamlish(v) for v in value) + "]"
    return repr(value)


def _join(label: str, key: str) -> str:
    return f"{label}.{key}" if label else key


def _unknown_key(label: str, key: str, known: list[str]) -> ConfigError:
    full = _join(label, key)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {_join(label, close[0])}?" if close else "known: " + ", ".join(known)
    return ConfigError(f"unknown key {full} ({hint})", full)


def _plain(value: Any) -> Any:
    if isinstance(value, TypedConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
