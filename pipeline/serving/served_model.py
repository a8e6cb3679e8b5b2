"""The model a replica answers with, and how it follows a moving alias.

``models:/NAME@champion`` names whichever version holds the alias now. A replica loads that
version, then checks the alias every few seconds; when it has moved, the new version is loaded
beside the old one and swapped in with one assignment, so requests already scoring finish on
the version they started with and none is dropped. Every answer names its version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.tracking.registry import load_vae, resolve
from pipeline.tracking.scorer import RowScorer, Scores


@dataclass(frozen=True)
class ServedModel:
    scorer: RowScorer
    name: str | None
    version: str | None
    threshold: float | None  # stored at registration; a request may override it

    def identity(self) -> dict[str, str | None]:
        return {"model": self.name, "model_version": self.version}


def load_served(uri: str, device: str = "cpu") -> ServedModel:
    """Load the version ``uri`` names now (``UserError`` when there is none)."""
    loaded = load_vae(uri)
    scorer = RowScorer(loaded.vae, loaded.preprocessor, device=device)
    return ServedModel(scorer, loaded.name, loaded.version, loaded.threshold)


def score_parts(model: ServedModel, parts: list[np.ndarray]) -> list[tuple[ServedModel, Scores]]:
    """Several requests' rows (each (b_i, *shape)) in one forward pass: per request, the model
    that answered and its rows' scores."""
    rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
    scores = model.scorer(rows).split([len(p) for p in parts])
    return [(model, part) for part in scores]


def current_version(uri: str) -> str | None:
    """The version ``uri`` names now: one registry lookup, no download."""
    return resolve(uri).version
