"""Before `mlflow server --app-name basic-auth`: write the auth config and create its database.

The admin's name and password come from the environment (a Secret or compose's .env):
MLFLOW_AUTH_ADMIN_USERNAME and MLFLOW_AUTH_ADMIN_PASSWORD, read by MLflow itself; there is no
default password and the server refuses to start without one. Users other than the admin get
READ (they can look, not register models or move aliases) until the admin grants more.
The user store lives in its own PostgreSQL database (MLFLOW_AUTH_DATABASE), created here.
"""

import os
from pathlib import Path

import psycopg2

for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "POSTGRES_PASSWORD"):
    if not os.environ.get(name):
        raise SystemExit(f"auth_config: {name} is not set (take it from the Secret / .env)")
host = os.environ.get("POSTGRES_HOST", "postgres")
database = os.environ.get("MLFLOW_AUTH_DATABASE", "mlflow_auth")
conn = psycopg2.connect(
    host=host, user="mlflow", password=os.environ["POSTGRES_PASSWORD"], dbname="mlflow"
)
conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
with conn.cursor() as cur:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    if cur.fetchone() is None:
        cur.execute(f'CREATE DATABASE "{database}"')
conn.close()
# The URI carries no password: libpq reads PGPASSWORD, set from POSTGRES_PASSWORD below.
config = Path(os.environ.get("MLFLOW_AUTH_CONFIG_PATH", "/tmp/mlflow-auth.ini"))
config.write_text(
    "[mlflow]\n"
    "default_permission = READ\n"
    f"database_uri = postgresql+psycopg2://mlflow@{host}:5432/{database}\n"
    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
)
config.chmod(0o600)
