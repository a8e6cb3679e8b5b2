"""The search space of a sweep: dotted config keys, each with one distribution, from YAML.

A space file maps config keys to one distribution each::

    optim.lr: {loguniform: [1.0e-4, 3.0e-3]}
    objective.kl_warmup_steps: {choice: [0, 2000, 10000]}
    model.latent_dim: {int: [8, 64]}          # inclusive bounds
    model.hidden_sizes: {grid: [[256, 128], [512, 256]]}

``choice`` samples one value, ``grid`` tries every value (grids multiply), ``uniform`` and
``loguniform`` sample floats in ``[low, high]``, ``int`` samples integers in ``[low, high]``.
Every value a distribution can produce (each listed value; both bounds of a range) is checked
with the config's own rules (``check_job_key``, then the whole config as with ``--set``), so an
unknown key or a value the config rejects fails before any trial starts, as one line naming it.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.job import check_job_key, load_job_config, resolve_shipped
from pipeline.errors import UserError

SPACES_DIR = Path(__file__).resolve().parents[2] / "jobs" / "configs" / "spaces"
LIST_KINDS = ("choice", "grid")
RANGE_KINDS = ("uniform", "loguniform", "int")
# The sweep owns these sections: it sizes workers from the cluster and names runs itself.
FIXED_SECTIONS = ("scaling", "tracking")
# A shuffled grid's points travel to Tune under this one key (no dot: no config key clashes).
GRID_POINT = "grid_point"


@dataclass(frozen=True)
class Dimension:
    key: str
    """Dotted config key, e.g. ``optim.lr``."""
    kind: str
    """One of choice, grid, uniform, loguniform, int."""
    values: tuple[Any, ...]
    """The listed values (choice, grid) or ``(low, high)`` (ranges)."""

    def to_tune(self):
        """The Ray Tune domain of this dimension (upper bounds as the space file gives them)."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        low, high = self.values
        if self.kind == "uniform":
            return tune.uniform(low, high)
        if self.kind == "loguniform":
            return tune.loguniform(low, high)
        return tune.randint(low, high + 1)  # randint's upper bound is exclusive

    def is_log(self) -> bool:
        return self.kind == "loguniform"


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]
    source: str
    """The space file's text, logged with the sweep."""

    def param_space(self, shuffle_seed: int | None = None) -> dict[str, Any]:
        """Tune's ``param_space``. Tune walks a grid in nested-loop order (the first grid
        key's first value first); with ``shuffle_seed`` the grid's points (every combination,
        as before) come in a random order fixed by the seed instead, as one grid over the
        points under ``GRID_POINT`` (``trial_params`` unpacks a trial's config)."""
        if shuffle_seed is None or not self.has_grid():
            return {d.key: d.to_tune() for d in self.dimensions}
        from ray import tune

        grid = [d for d in self.dimensions if d.kind == "grid"]
        combos = itertools.product(*(d.values for d in grid))
        points = [dict(zip((d.key for d in grid), combo, strict=True)) for combo in combos]
        random.Random(shuffle_seed).shuffle(points)
        rest = {d.key: d.to_tune() for d in self.dimensions if d.kind != "grid"}
        return {GRID_POINT: tune.grid_search(points), **rest}

    def grid_size(self) -> int:
        """Configurations one pass over the grid dimensions makes (1 without a grid)."""
        return math.prod(len(d.values) for d in self.dimensions if d.kind == "grid")

    def has_grid(self) -> bool:
        return any(d.kind == "grid" for d in self.dimensions)

    def to_dict(self) -> dict[str, Any]:
        return {d.key: {d.kind: list(d.values)} for d in self.dimensions}


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as Tune hands it → dotted config keys and values (a grid point of a
    shuffled grid unpacked)."""
    params = {k: v for k, v in config.items() if k != GRID_POINT}
    return {**config.get(GRID_POINT, {}), **params}


def resolve_space_path(path_or_name: str) -> Path:
    """A file, or the name of a shipped space (``mnist`` → jobs/configs/spaces/mnist.yaml)."""
    return resolve_shipped(path_or_name, SPACES_DIR, "space")


def load_space(path_or_name: str, config: str | None, overrides: list[str]) -> SearchSpace:
    """Read and validate a space file against the job config ``config`` + ``overrides``."""
    path = resolve_space_path(path_or_name)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"space {path}: not valid YAML ({_first_line(exc)})") from None
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"space {path}: must be a non-empty mapping of config keys")
    dims = tuple(parse_dimension(str(key), spec) for key, spec in raw.items())
    for dim in dims:
        check_against_config(dim, config, overrides)
    return SearchSpace(dims, text)


def parse_dimension(key: str, spec: Any) -> Dimension:
    """One ``key: {kind: values}`` entry; a malformed one raises ``UserError`` naming ``key``."""
    section = key.split(".", 1)[0]
    if "." not in key:
        raise UserError(f"space key {key}: must be a dotted config key such as optim.lr")
    if section in FIXED_SECTIONS:
        raise UserError(f"space key {key}: {section}.* is set by the sweep, not tunable")
    if not isinstance(spec, dict) or len(spec) != 1:
        kinds = ", ".join(LIST_KINDS + RANGE_KINDS)
        raise UserError(f"space key {key}: needs exactly one distribution ({kinds})")
    kind, values = next(iter(spec.items()))
    if kind in LIST_KINDS:
        return Dimension(key, kind, _list_values(key, kind, values))
    if kind in RANGE_KINDS:
        return Dimension(key, kind, _range_values(key, kind, values))
    kinds = ", ".join(LIST_KINDS + RANGE_KINDS)
    raise UserError(f"space key {key}: unknown distribution {kind!r} (known: {kinds})")


def _list_values(key: str, kind: str, values: Any) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise UserError(f"space key {key}: {kind} needs a non-empty list of values")
    return tuple(values)


def _range_values(key: str, kind: str, values: Any) -> tuple[Any, Any]:
    if not isinstance(values, list) or len(values) != 2:
        raise UserError(f"space key {key}: {kind} needs [low, high]")
    low, high = values
    numeric = int if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, numeric) for v in (low, high)):
        what = "integers" if kind == "int" else "numbers"
        raise UserError(f"space key {key}: {kind} bounds must be {what}, got {values}")
    if kind == "int" and low > high:
        raise UserError(f"space key {key}: empty int range [{low}, {high}]")
    if kind != "int" and not low < high:
        raise UserError(f"space key {key}: empty {kind} range [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"space key {key}: loguniform needs 0 < low, got {low}")
    return low, high


def check_against_config(dim: Dimension, config: str | None, overrides: list[str]) -> None:
    """Every value ``dim`` can take must be valid for its key (``check_job_key``) and make a
    valid job config with the rest (the ``--set`` rules, cross-field checks included)."""
    for value in dim.values:  # a range's values are its bounds: ranges are convex
        try:
            check_job_key(dim.key, value)
            load_job_config(config, [*overrides, f"{dim.key}={json.dumps(value)}"])
        except ValueError as exc:
            message = _first_line(exc)
            if dim.key not in message:
                message = f"{dim.key}={value!r}: {message}"
            raise UserError(f"space: {message}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
