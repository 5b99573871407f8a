#!/bin/sh
# Start vLLM on all interfaces only with an API key: without one, anyone who reaches the port could generate with
# the model and load adapters from the server's disk (runtime LoRA loading is on).
set -eu
if [ -z "${VLLM_API_KEY:-}" ]; then
  echo "error: set VLLM_API_KEY (docker run -e VLLM_API_KEY=...); this server listens on all interfaces and" \
       "refuses to start without a key. Give the workers the same VLLM_API_KEY." >&2
  exit 64
fi
exec vllm serve --host 0.0.0.0 --port 8000 "$@"
