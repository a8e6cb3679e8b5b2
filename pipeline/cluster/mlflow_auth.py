"""Authentication for the local stack's MLflow server: MLflow's ``basic-auth`` app.

The admin password comes from ``MLFLOW_AUTH_ADMIN_PASSWORD`` when the caller sets it, otherwise
it is generated; either way it is kept in a 0600 file in the stack dir, never a default. Other
users get ``READ`` on everything (``default_permission``): they can look, but not register
models or move aliases, until the admin grants more. The server accepts only its own loopback
``Host`` (``--allowed-hosts``), and MLflow's security middleware refuses state-changing
cross-origin requests. Clients (and the stack's Ray nodes, so jobs can log without the
submitter forwarding secrets) authenticate with ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.cluster import secrets_files

DEFAULT_ADMIN = "admin"
PASSWORD_FILE = "mlflow-admin-password"
CONFIG_FILE = "mlflow-auth.ini"
DEFAULT_PERMISSION = "READ"


@dataclass(frozen=True)
class MlflowAuth:
    username: str
    password_file: str
    config_file: str

    def password(self) -> str:
        return Path(self.password_file).read_text().strip()

    def client_env(self) -> dict[str, str]:
        """What a client (or a Ray node running jobs) needs to log to the server."""
        return {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password(),
        }

    def server_env(self) -> dict[str, str]:
        return {
            "MLFLOW_AUTH_CONFIG_PATH": self.config_file,
            "MLFLOW_AUTH_ADMIN_USERNAME": self.username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.password(),
            # Signs the UI's session and CSRF tokens; a new one per start is fine for a dev stack.
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
        }


def prepare(root: Path) -> MlflowAuth:
    """Write the admin password file and the auth config under ``root``."""
    username = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or DEFAULT_ADMIN
    password_file = root / PASSWORD_FILE
    # A restarted stack keeps its password: MLflow only reads it to create the admin user.
    if not password_file.exists():
        password = os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") or secrets.token_urlsafe(24)
        secrets_files.write_private(password_file, password)
    config = (
        "[mlflow]\n"
        f"default_permission = {DEFAULT_PERMISSION}\n"
        f"database_uri = sqlite:///{root / 'mlflow-auth.db'}\n"
        f"admin_username = {username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    (root / CONFIG_FILE).unlink(missing_ok=True)
    config_file = secrets_files.write_private(root / CONFIG_FILE, config)
    return MlflowAuth(username, str(password_file), str(config_file))


def server_args(port: int) -> list[str]:
    """``mlflow server`` flags: the basic-auth app, and only this loopback address as Host."""
    return ["--app-name", "basic-auth", "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}"]
