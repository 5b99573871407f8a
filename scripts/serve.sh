#!/usr/bin/env bash
# Run translora as a service on this machine: a Prefect server, the translora-local process pool, the
# translora-gpu global concurrency limit (one slot per GPU: that many transfers at once), the `upgrade`
# deployment of deployments/prefect.yaml (run by a translora.base-model.released event) and a process worker.
# Runs in the foreground; Ctrl-C (or SIGTERM) stops the worker, then the server.
#
#   TRANSLORA_SERVE_HOST   listen address (default 127.0.0.1: loopback only)
#   TRANSLORA_SERVE_PORT   port of the API and UI (default 4200)
#   TRANSLORA_GPU_SLOTS    slots of the translora-gpu limit (default 1)
#   TRANSLORA_UPGRADE_PARAMS  JSON merged over the deployment's parameters, e.g. '{"run_dir": "/data/upgrades"}'
#   PREFECT_HOME           the server's database and logs (default: .prefect-service/ in the repository)
#   TRANSLORA_REGISTRY_URL, TRANSLORA_STORE, TRANSLORA_HOME   read by the flows the worker runs
set -euo pipefail
cd "$(dirname "$0")/.."
PREFECT=${PREFECT:-.venv/bin/prefect}
HOST=${TRANSLORA_SERVE_HOST:-127.0.0.1}
PORT=${TRANSLORA_SERVE_PORT:-4200}
SLOTS=${TRANSLORA_GPU_SLOTS:-1}
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect-service}
# The UI calls the API at the address it is given; without PREFECT_UI_API_URL it would call port 4200.
export PREFECT_API_URL="http://$HOST:$PORT/api" PREFECT_UI_API_URL="http://$HOST:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false TRANSLORA_REPO=$PWD  # prefect.yaml's pull step goes to TRANSLORA_REPO
export TOKENIZERS_PARALLELISM=false
mkdir -p "$PREFECT_HOME"

"$PREFECT" server start --host "$HOST" --port "$PORT" >"$PREFECT_HOME/server.log" 2>&1 &
server=$!
worker=""
stop() {
  # The worker is asked with SIGINT (it turns SIGTERM into SIGINT to itself); prefect 3.9.1's process worker may
  # not exit on it, and turns a second SIGINT into SIGKILL. Then the server, on SIGTERM.
  if [ -n "$worker" ]; then
    kill -INT "$worker" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$worker" 2>/dev/null || break; sleep 0.5; done
    kill -INT "$worker" 2>/dev/null || true
    wait "$worker" 2>/dev/null || true
  fi
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "[serve] starting the Prefect server on $PREFECT_API_URL (log: $PREFECT_HOME/server.log)"
for _ in $(seq 240); do
  .venv/bin/python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "$PREFECT_API_URL/health" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "[serve] the server exited; see $PREFECT_HOME/server.log" >&2; exit 1; }
  sleep 0.5
done
"$PREFECT" work-pool inspect translora-local >/dev/null 2>&1 \
  || "$PREFECT" work-pool create translora-local --type process >/dev/null
if "$PREFECT" gcl inspect translora-gpu >/dev/null 2>&1; then
  "$PREFECT" gcl update translora-gpu --limit "$SLOTS" >/dev/null
else
  "$PREFECT" gcl create translora-gpu --limit "$SLOTS" >/dev/null
fi
params=()
if [ -n "${TRANSLORA_UPGRADE_PARAMS:-}" ]; then params=(--params "$TRANSLORA_UPGRADE_PARAMS"); fi
"$PREFECT" --no-prompt deploy --prefect-file deployments/prefect.yaml --name upgrade "${params[@]}" >/dev/null
# The upgrade fans out to this one: a flow run per bundle, on the work pool's `transfers` queue.
"$PREFECT" --no-prompt deploy --prefect-file deployments/prefect.yaml --name upgrade-bundle >/dev/null
echo "[serve] deployed translora-upgrade/upgrade and translora-upgrade-bundle/upgrade-bundle; translora-gpu has" \
  "$SLOTS slot(s); UI: http://$HOST:$PORT"
# A background job of a script ignores SIGINT, the one signal that stops a process worker: undo that first.
( trap - INT; exec "$PREFECT" worker start --pool translora-local --type process ) &
worker=$!
echo "[serve] ready"
wait "$worker"
