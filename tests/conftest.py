import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from tests import tiny  # noqa: E402
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


def tiny_overrides(models: dict[str, Path]) -> list[str]:
    """A config that runs every stage in seconds on the tiny models."""
    return [
        f"source_model.id={models['llama']}",
        f"target_model.id={models['gemma3']}",
        "task.n_train=24", "task.n_test=12",
        "source_train.max_steps=3", "source_train.batch_size=4",
        "discriminator.n_negatives=8", "discriminator.corrupted_fraction=0.5", "discriminator.train.batch_size=4",
        "discriminator.train.lr=0.03", "discriminator.train.max_steps=40",
        "discriminator.adapter.target_modules=[q_proj,v_proj,o_proj,up_proj,down_proj]",
        # Pinned here, not taken from the profile: the tiny discriminator keeps a few percent, so the budget is
        # generous and the sampling settings fixed.
        "synthesis.max_new_tokens=12", "synthesis.batch_size=8", "synthesis.temperature=1.0", "synthesis.top_p=0.95",
        "filter.n_keep=3", "filter.max_generated=256", "filter.batch_size=8",
        "label.max_new_tokens=3", "label.min_confidence=0",  # a random tiny teacher is never sure
        "distill_train.max_steps=2", "distill_train.batch_size=4",
        "eval.batch_size=8",
    ]


@pytest.fixture()
def tiny_config(tiny_models):
    return load_config("cpu", overrides=tiny_overrides(tiny_models))
