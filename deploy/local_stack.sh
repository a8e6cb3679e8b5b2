#!/usr/bin/env bash
# A real Ray head (token auth) and MLflow server (SQLite) on 127.0.0.1, for development and e2e.
#   deploy/local_stack.sh start [--num-cpus N]   # prints `export ...` lines: eval "$(...)"
#   deploy/local_stack.sh add-node [--num-cpus N]  # a second Ray node on loopback
#   deploy/local_stack.sh env | status | stop
# State, logs, the token and the databases live in .vaepipe/stack (override with --dir DIR).
# `stop` ends exactly the processes this stack started; it never runs `ray stop`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${VAEPIPE_PYTHON:-$repo/.venv/bin/python}"
cd "$repo"
exec "$python" -m pipeline.cluster.local_stack "$@"
