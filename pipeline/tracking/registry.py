"""The model registry: log a trained VAE so anyone can load it, and load it back safely.

What one logged model holds (an MLflow pyfunc logged as "models from code", so no pickle):

    pyfunc_model.py        the model's code (``pipeline/tracking/pyfunc_model.py``): raw rows
                           as stored (B, numel) -> DataFrame of mu, logvar, score (negative
                           ELBO, nats), is_anomaly; loads with
                           ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``; ``mlflow models serve``
    artifacts/vae/config.json, weights.pt, extra.json
                           the vae_core save dir: the full VAE rebuilt with
                           ``torch.load(weights_only=True)``; extra.json holds the preprocessor
                           dict, the data source and the anomaly threshold
    MLmodel model_config   {"threshold": T}: the ``threshold_quantile`` of the validation scores
                           (None when no validation rows were given); a request's
                           ``params={"threshold": t}`` overrides it

Registration: every call makes a new version of ``registered_name`` with alias ``candidate``;
alias ``champion`` points at the READY version with the lowest validation loss (the version tag
``val_loss``; ties go to the older version; NaN never wins). MLflow has no compare-and-set for
aliases, so two registrations finishing together could each read the old champion and the worse
one write last. Instead every registration *settles* the alias: read all versions, point
``champion`` at the best, and re-read until what it reads agrees. Whoever writes last re-reads
after writing and corrects a stale write, so when every registration has returned, ``champion``
is the best version, whatever the finishing order.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import UserError
from pipeline.tracking.scorer import DEFAULT_QUANTILE, RowScorer, score_in_chunks, threshold_from
from vae_core.model import VAE
from vae_core.serialization import UnsafePickleError, load_model, save_model

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
CHAMPION = "champion"
VAL_LOSS_TAG = "val_loss"
DATA_SOURCE_TAG = "data_source"
ARTIFACT_NAME = "model"  # the logged model's name inside its run
VAE_DIR = "artifacts/vae"  # where MLflow copies the pyfunc artifact "vae" inside the model dir
OLD_VAE_DIR = "extra_files"  # the same files in models logged before the raw-row contract
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
THRESHOLD_TAG = "anomaly_threshold"
SAVE_FILES = ("config.json", "weights.pt", "extra.json")


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version, as ``log_vae`` made it."""

    name: str
    version: str
    run_id: str
    uri: str  # models:/NAME/VERSION
    aliases: tuple[str, ...]
    model_id: str | None = None


@dataclass
class LoadedModel:
    """A VAE loaded from the registry, with what encoding needs to know about it."""

    vae: VAE
    preprocessor: dict[str, Any]
    name: str | None
    version: str | None
    run_id: str | None
    data_source: str | None
    uri: str
    model_id: str | None = None
    data_config: dict[str, Any] | None = None  # the training DataConfig, when stored
    data_digest: str | None = None  # the training data's digest, when stored
    threshold: float | None = None  # anomaly threshold chosen at registration, when stored

    def describe(self) -> dict[str, Any]:
        """Plain-JSON identity of the model (Parquet metadata, manifests, MLflow tags)."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_id": self.model_id,
            "uri": self.uri,
        }


def vaepipe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vaepipe")
    except PackageNotFoundError:
        return "0+unknown"


# ----------------------------------------------------------------------------- logging


def log_vae(
    vae: VAE,
    preprocessor: dict[str, Any],
    registered_name: str,
    val_loss: float,
    data_source: str,
    data_config: dict[str, Any] | None = None,
    data_digest: str | None = None,
    val_rows: np.ndarray | None = None,
    threshold_quantile: float = DEFAULT_QUANTILE,
) -> RegisteredVersion:
    """Log ``vae`` to the active MLflow run, register a new version and move the aliases.

    ``data_config`` (optional, ``DataConfig.to_dict()``) lets ``vaepipe evaluate`` rebuild the
    exact validation/test split the model was trained with; ``data_digest`` names the data
    (``pipeline.data.lineage``), so encode outputs can say what the model learned from.
    ``val_rows`` (raw validation samples as stored, (N, *shape)) set the anomaly threshold:
    their ``threshold_quantile`` score.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_vae must be called inside an active MLflow run")
    vae = vae.to("cpu").eval()
    threshold = _threshold(vae, preprocessor, val_rows, threshold_quantile)
    with tempfile.TemporaryDirectory(prefix="vaepipe_model_") as tmp:
        save_dir = Path(tmp) / "vae"
        extra = {
            "preprocessor": preprocessor,
            "data_source": data_source,
            "data_config": data_config,
            "data_digest": data_digest,
            "threshold": threshold,
            "threshold_quantile": threshold_quantile if threshold is not None else None,
        }
        save_model(vae, save_dir, extra=extra)
        info = _log_pyfunc(vae, preprocessor, save_dir, registered_name, val_loss, extra)
    version = str(info.registered_model_version)
    aliases = _set_aliases(registered_name, version, val_loss, data_source, threshold)
    log.info("registered %s version %s (aliases: %s)", registered_name, version, aliases)
    return RegisteredVersion(
        name=registered_name,
        version=version,
        run_id=run.info.run_id,
        uri=f"models:/{registered_name}/{version}",
        aliases=tuple(aliases),
        model_id=info.model_id,
    )


def _threshold(
    vae: VAE, preprocessor: dict[str, Any], val_rows: np.ndarray | None, quantile: float
) -> float | None:
    if val_rows is None or len(val_rows) == 0:
        return None
    scorer = RowScorer(vae, preprocessor)
    rows = np.asarray(val_rows).reshape(len(val_rows), *scorer.pre.layout.shape)
    return threshold_from(score_in_chunks(scorer, rows), quantile)


def _log_pyfunc(
    vae: VAE,
    preprocessor: dict[str, Any],
    save_dir: Path,
    name: str,
    val_loss: float,
    extra: dict[str, Any],
):
    """mlflow.pyfunc.log_model from code, with the raw-row signature and an input example."""
    import mlflow

    layout = preprocessor["layout"]
    numel = int(np.prod(layout["shape"]))
    latent = int(vae.cfg.latent_dim)
    signature = _signature(layout["dtype"], numel, extra["threshold"])
    example = np.zeros((2, numel), dtype=layout["dtype"])  # two raw rows, as stored
    metadata = {
        "vaepipe": {
            "version": vaepipe_version(),
            "input": f"raw rows (B, {numel}) {layout['dtype']}, layout shape {layout['shape']}",
            "input_shape": list(vae.cfg.input_shape),
            "latent_dim": latent,
            "data_source": extra["data_source"],
            "val_loss": float(val_loss),
            "threshold": extra["threshold"],
            "threshold_quantile": extra["threshold_quantile"],
            "output": "mu, logvar, score (negative ELBO, nats), is_anomaly",
        }
    }
    return mlflow.pyfunc.log_model(
        name=ARTIFACT_NAME,
        python_model=str(MODEL_CODE),
        artifacts={"vae": str(save_dir)},
        model_config={"threshold": extra["threshold"]},
        input_example=example,
        signature=signature,
        registered_model_name=name,
        # Explicit requirements: inferring them would load the model again in a subprocess.
        pip_requirements=_pip_requirements(),
        metadata=metadata,
    )


def _signature(dtype: str, numel: int, threshold: float | None):
    from mlflow.models import ModelSignature
    from mlflow.types import DataType, Schema, TensorSpec
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(dtype), (-1, numel))]),
        outputs=Schema(
            [
                ColSpec(Array(DataType.float), "mu"),
                ColSpec(Array(DataType.float), "logvar"),
                ColSpec(DataType.float, "score"),
                ColSpec(DataType.boolean, "is_anomaly"),
            ]
        ),
        params=ParamSchema([ParamSpec("threshold", DataType.double, threshold)]),
    )


def _pip_requirements() -> list[str]:
    import mlflow

    torch_version = torch.__version__.split("+")[0]
    # The model's code imports vaepipe (vae_core, pipeline): serve it where vaepipe is installed.
    return [f"torch=={torch_version}", f"mlflow=={mlflow.__version__}", "numpy", "pandas"]


def _set_aliases(
    name: str, version: str, val_loss: float, data_source: str, threshold: float | None
) -> list[str]:
    """Tag the version, point ``candidate`` at it, and settle ``champion`` (module docstring)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    # The tag first: a version is a champion contender only once its val_loss is readable.
    client.set_model_version_tag(name, version, VAL_LOSS_TAG, repr(float(val_loss)))
    client.set_model_version_tag(name, version, DATA_SOURCE_TAG, data_source)
    if threshold is not None:
        client.set_model_version_tag(name, version, THRESHOLD_TAG, repr(threshold))
    client.set_registered_model_alias(name, CANDIDATE, version)
    aliases = [CANDIDATE]
    if settle_champion(client, name) == version:
        aliases.append(CHAMPION)
    return aliases


SETTLE_ROUNDS = 50  # each round sees at least one more version; registrations are finite


def settle_champion(client, name: str) -> str | None:
    """Point ``champion`` at the best version until a fresh read agrees; returns it."""
    for _ in range(SETTLE_ROUNDS):
        best = best_version(client, name)
        if best is None or _champion_version(client, name) == best:
            return best
        client.set_registered_model_alias(name, CHAMPION, best)
    log.warning("champion of %s still moving after %d rounds", name, SETTLE_ROUNDS)
    return _champion_version(client, name)


def best_version(client, name: str) -> str | None:
    """The READY version with the lowest finite ``val_loss`` tag (older wins a tie)."""
    scored = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        loss = _val_loss(mv)
        if str(mv.status).endswith("READY") and loss is not None:
            scored.append((loss, int(mv.version)))
    return str(min(scored)[1]) if scored else None


def _val_loss(mv) -> float | None:
    try:
        loss = float(mv.tags[VAL_LOSS_TAG])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(loss) else loss


def _champion_version(client, name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Resolved:
    download_uri: str
    name: str | None
    version: str | None
    run_id: str | None
    model_id: str | None


def load_vae(uri: str) -> LoadedModel:
    """Load the full VAE behind ``uri`` without unpickling code.

    ``uri``: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME/latest``,
    a model id (``models:/m-...`` or bare ``m-...``), or ``runs:/RUN_ID/model``.
    Unknown model, alias or version → ``UserError`` with one line.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    resolved = resolve(uri)
    with tempfile.TemporaryDirectory(prefix="vaepipe_load_") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=resolved.download_uri, dst_path=tmp
            )
        except MlflowException as exc:
            raise UserError(f"cannot download model {uri}: {_first_line(exc)}") from None
        save_dirs = [Path(local) / d for d in (VAE_DIR, OLD_VAE_DIR)]
        save_dir = next((d for d in save_dirs if (d / "config.json").exists()), None)
        if save_dir is None:
            raise UserError(f"{uri} is not a vaepipe model (no {VAE_DIR}/config.json)")
        try:
            vae, extra = load_model(save_dir)
        except UnsafePickleError as exc:  # a tampered artifact: refuse, one line
            raise UserError(f"model {uri}: {exc}") from None
    extra = extra or {}
    return LoadedModel(
        vae=vae.eval(),
        preprocessor=extra.get("preprocessor") or {},
        name=resolved.name,
        version=resolved.version,
        run_id=resolved.run_id,
        data_source=extra.get("data_source"),
        uri=uri,
        model_id=resolved.model_id,
        data_config=extra.get("data_config"),
        data_digest=extra.get("data_digest"),
        threshold=extra.get("threshold"),
    )


def resolve(uri: str) -> _Resolved:
    """Turn any accepted model URI into a download URI plus its registry identity."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    uri = uri.strip()
    if uri.startswith("m-"):
        uri = f"models:/{uri}"
    try:
        if uri.startswith("models:/"):
            return _resolve_models_uri(client, uri)
        if uri.startswith("runs:/"):
            return _resolve_runs_uri(client, uri)
    except MlflowException as exc:
        raise UserError(f"model {uri} not found: {_first_line(exc)}") from None
    raise UserError(
        f"model URI {uri!r} not understood: use models:/NAME@ALIAS, models:/NAME/VERSION, "
        "a model id (models:/m-...) or runs:/RUN_ID/model"
    )


def _resolve_models_uri(client, uri: str) -> _Resolved:
    path = uri[len("models:/") :].strip("/")
    parts = path.split("/")
    if len(parts) == 1 and "@" in parts[0]:
        name, alias = parts[0].rsplit("@", 1)
        _require_registered(client, name)
        mv = client.get_model_version_by_alias(name, alias)
        return _from_version(mv)
    if len(parts) == 2 and parts[1].isdigit():
        _require_registered(client, parts[0])
        return _from_version(client.get_model_version(parts[0], parts[1]))
    if len(parts) == 2 and parts[1].lower() == "latest":
        _require_registered(client, parts[0])
        versions = client.search_model_versions(f"name = '{parts[0]}'")
        if not versions:
            raise UserError(f"registered model {parts[0]!r} has no versions")
        return _from_version(max(versions, key=lambda mv: int(mv.version)))
    if len(parts) == 1 and parts[0]:
        logged = client.get_logged_model(parts[0])
        name, version = _registered_identity(client, logged.source_run_id, logged.model_id)
        return _Resolved(uri, name, version, logged.source_run_id, logged.model_id)
    raise UserError(f"model URI {uri!r} not understood (expected models:/NAME@ALIAS or /VERSION)")


def _resolve_runs_uri(client, uri: str) -> _Resolved:
    run_id = uri[len("runs:/") :].split("/", 1)[0]
    client.get_run(run_id)  # raises for an unknown run
    if uri.rstrip("/") == f"runs:/{run_id}":
        uri = f"runs:/{run_id}/{ARTIFACT_NAME}"
    name, version = _registered_identity(client, run_id, None)
    return _Resolved(uri, name, version, run_id, None)


def _require_registered(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model named {name!r}") from None


def _from_version(mv) -> _Resolved:
    uri = f"models:/{mv.name}/{mv.version}"
    return _Resolved(uri, mv.name, str(mv.version), mv.run_id, _version_model_id(mv))


def _version_model_id(mv) -> str | None:
    # The SQL store leaves ModelVersion.model_id empty; its source is "models:/<model id>".
    if mv.model_id:
        return mv.model_id
    source = mv.source or ""
    return source[len("models:/") :] if source.startswith("models:/m-") else None


def _registered_identity(
    client, run_id: str, model_id: str | None
) -> tuple[str | None, str | None]:
    """(name, version) of the registered version made from this run (and model), if any."""
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    if model_id is not None:
        versions = [mv for mv in versions if _version_model_id(mv) == model_id]
    if not versions:
        return None, None
    mv = max(versions, key=lambda v: int(v.version))
    return mv.name, str(mv.version)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
