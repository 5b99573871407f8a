import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests import tiny  # noqa: E402
from tests.helpers import finetune_stages, tiny_overrides  # noqa: E402
from translora.config import load_config  # noqa: E402


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
