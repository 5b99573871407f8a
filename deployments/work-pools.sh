#!/usr/bin/env bash
# Create the work pools the deployments in prefect.yaml use (idempotent).
#   translora-local: a process pool; its worker runs flows in the project's .venv on the same machine.
#   translora-gpu:   a docker pool; its worker starts docker/worker.Dockerfile containers on a GPU host.
set -euo pipefail
PREFECT=${PREFECT:-.venv/bin/prefect}
"$PREFECT" work-pool inspect translora-local >/dev/null 2>&1 || "$PREFECT" work-pool create translora-local --type process
"$PREFECT" work-pool inspect translora-gpu >/dev/null 2>&1 || "$PREFECT" work-pool create translora-gpu --type docker
