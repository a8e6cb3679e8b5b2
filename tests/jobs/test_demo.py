"""The demo end to end (one epoch): trained, registered, encoded, evaluated, images drawn."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.data.staged_output import MANIFEST


@pytest.mark.ray
def test_demo_produces_everything_it_reports(ray_local, tmp_path, monkeypatch):
    from pipeline.demo import run_demo

    monkeypatch.chdir(tmp_path)  # checkpoints go under ./ray_results
    lines: list[str] = []
    res = run_demo(tmp_path / "outputs", epochs=1, say=lines.append, iw_samples=5)
    assert [line[:5] for line in lines] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert res.model_uri.startswith("models:/vae-digits/") and "candidate" in res.aliases
    manifest = json.loads((tmp_path / "outputs" / "digits-latent" / MANIFEST).read_text())
    assert res.rows == manifest["rows"] == 1797
    assert all((tmp_path / "outputs" / p).exists() for p in ["digits-prior.png"])
    assert len(res.images) == 2 and math.isfinite(res.metrics["is_nll"])
