"""The registered model's code: MLflow "models from code", so loading it unpickles nothing.

``registry.log_vae`` logs this file as the pyfunc's ``python_model``; MLflow runs it on load
(``mlflow.pyfunc.load_model``, ``mlflow models serve``), which needs vaepipe importable there.

    input   (B, numel) raw rows exactly as stored: uint8 pixels 0..255 or float features
    params  threshold (float, optional): overrides the one stored at registration
    output  DataFrame, one row per sample: mu (L floats), logvar (L floats), score (nats),
            is_anomaly (score > threshold)
"""

from __future__ import annotations

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from pipeline.errors import UserError
from pipeline.tracking.scorer import RowScorer, check_rows
from vae_core.serialization import load_model

ARTIFACT_KEY = "vae"  # the vae_core save dir among the pyfunc's artifacts
THRESHOLD_KEY = "threshold"  # in model_config (stored) and in params (per request)


class VaeScoringModel(PythonModel):
    def load_context(self, context) -> None:
        vae, extra = load_model(context.artifacts[ARTIFACT_KEY])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.scorer = RowScorer(vae, (extra or {})["preprocessor"], device=device)
        self.threshold = (context.model_config or {}).get(THRESHOLD_KEY)

    def predict(self, context, model_input, params=None):  # no hints: MLflow would read them
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy()
        try:
            x = check_rows(model_input, self.scorer.pre)
        except UserError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        threshold = (params or {}).get(THRESHOLD_KEY)
        threshold = self.threshold if threshold is None else float(threshold)
        scores = self.scorer(x)
        return pd.DataFrame(
            {
                "mu": list(scores.mu),
                "logvar": list(scores.logvar),
                "score": scores.score,
                "is_anomaly": scores.is_anomaly(threshold),
            }
        )


mlflow.models.set_model(VaeScoringModel())
