"""Prefect flows: finetune (stage 1), transfer (stage 2), evaluate, and the end-to-end run."""

import os

# Read by Prefect when its settings load, so set before the first prefect import: the temporary local server
# needs longer than its 20 s default on a loaded 2-core machine, and telemetry lookups fail offline.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
