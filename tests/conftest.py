import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests import tiny  # noqa: E402
from tests.helpers import answers, finetune_stages, free_port, tiny_overrides  # noqa: E402
from translora.config import load_config  # noqa: E402

# The long files (real CLI runs killed and resumed, vLLM servers, the Prefect service): first, so that with two
# workers (scripts/test.sh) they run beside each other and the short tests fill in at the end, not after them.
LONG_FIRST = ("slow", "vllm", "service")


def pytest_collection_modifyitems(items):
    items.sort(
        key=lambda item: min(
            (LONG_FIRST.index(m.name) for m in item.iter_markers() if m.name in LONG_FIRST), default=len(LONG_FIRST)
        )
    )


@pytest.fixture(autouse=True)
def own_store(tmp_path_factory, monkeypatch):
    """Each test writes into a store of its own (never the user's), unless it sets one itself."""
    monkeypatch.setenv("TRANSLORA_STORE", str(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    models = {arch: tiny.build(root / arch, arch) for arch in ("llama", "gemma3")}
    models["llama-b"] = tiny.build(root / "llama-b", "llama", seed=1)  # a third base, for chained transfers
    return models


@pytest.fixture(scope="session")
def finetuned(tiny_models, tmp_path_factory):
    """Stage 1 on the tiny models, once per test run: (config, store, data folder, bundle folder). Tests that change
    what it made must work on copies."""
    from translora.store import Store

    cfg = load_config("cpu", overrides=tiny_overrides(tiny_models))
    store = Store(tmp_path_factory.mktemp("finetuned-store"))
    data, bundle = finetune_stages(cfg, store)
    return cfg, store, data, bundle


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """One Prefect server for the test run, for CLI runs in subprocesses that need not start their own temporary
    one (a temporary server costs each run 9-20 s). Tests of the temporary server itself leave PREFECT_API_URL
    unset."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = os.environ | {
        "PREFECT_HOME": str(root),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "0",
    }
    env.pop("PREFECT_API_URL", None)
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while not answers(f"{api}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
