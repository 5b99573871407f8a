#!/usr/bin/env bash
# Set everything up (the project's .venv and vLLM's own .venv-vllm), check formatting, lint and types, then run the
# whole test suite: tiny random models, the marked real-model tests, and the vLLM tests against a real server.
# Extra arguments go to pytest. "No tests ran" (pytest exit 5) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
# Debian packages some tests drive for real, installed once (quietly) when their command is missing.
need_debian() {  # need_debian PACKAGE FOUND_TEST WHAT_IS_SKIPPED_WITHOUT_IT
  eval "$2" && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[test] installing the $1 Debian package"
  { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"; } \
    >/dev/null || echo "[test] could not install $1; $3 will be skipped" >&2
}
# The registry tests start a throwaway PostgreSQL server: they need its binaries (initdb, pg_ctl), not a service.
need_debian postgresql 'command -v pg_ctl >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null' \
  "the PostgreSQL registry tests"
# The service test looks at the Prefect UI in headless Chromium.
need_debian chromium 'command -v chromium >/dev/null' "the Prefect UI test"
scripts/setup.sh || exit 1
scripts/setup-vllm.sh || exit 1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# House tools first (seconds): the formatter, the linter and the type checker, configured in pyproject.toml.
.venv/bin/ruff format --check . || { echo "error: ruff format would change files; run .venv/bin/ruff format ." >&2; exit 1; }
.venv/bin/ruff check . || exit 1
.venv/bin/mypy || exit 1
# Two workers, whole test files each (module fixtures are set up once), the long files first in the order
# tests/conftest.py gives them: much of the suite waits on servers and subprocesses, so a second worker fills that
# time (15-18 min against 23.5 in one process, measured). TRANSLORA_TEST_WORKERS=0 runs it in this process.
.venv/bin/python -m pytest -n "${TRANSLORA_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
