"""The model a replica answers with, and how it follows a moving alias.

``models:/NAME@champion`` names whichever version holds the alias now. A replica loads that
version, then checks the alias every few seconds; when it has moved, the new version is loaded
beside the old one and swapped in with one assignment, so requests already scoring finish on
the version they started with and none is dropped. Every answer names its version.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.tracking.registry import load_vae, resolve
from pipeline.tracking.scorer import RowScorer


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


def current_version(uri: str) -> str | None:
    """The version ``uri`` names now: one registry lookup, no download."""
    return resolve(uri).version
