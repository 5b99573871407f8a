"""On a CUDA GPU (skipped without one): a bfloat16 training step there matches the float32 CPU step, and the gpu and
paper profiles run every stage of both stages on the tiny models. scripts/gpu-device-check.sh runs these with the
CPU-only suite's tiny-model files on a GPU machine with no network."""

import pytest
import torch

from tests.helpers import finetune_stages, tiny_overrides, transfer_stages
from translora import models, training
from translora.artifacts import read_manifest
from translora.config import AdapterSpec, ModelSpec, TrainSpec, load_config
from translora.store import Store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PAIRS = [("Q: True and False\nA:", " False"), ("Q: not False\nA:", " True")] * 4


def one_step(model_dir, dtype: str, where: str) -> tuple[float, list[torch.Tensor]]:
    """The loss of one training step on `where` and the adapter weights after it (on the CPU, float32)."""
    model, tok = models.load_model(ModelSpec(id=str(model_dir), dtype=dtype))
    model.to(where)
    peft_model = training.new_adapter(model, AdapterSpec(target_modules=["q_proj", "v_proj"]))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert all(p.device.type == where and p.dtype == torch.float32 for p in trainable)
    result = training.train(peft_model, tok, PAIRS, TrainSpec(max_steps=1, batch_size=8, lr=1e-2))
    return result.first_loss, [p.detach().float().cpu() for p in trainable]


def test_a_bfloat16_step_on_cuda_matches_the_float32_step_on_the_cpu(tiny_models):
    cpu_loss, cpu_weights = one_step(tiny_models["llama"], "float32", "cpu")
    gpu_loss, gpu_weights = one_step(tiny_models["llama"], "bfloat16", "cuda")
    assert abs(gpu_loss - cpu_loss) < 0.05 * abs(cpu_loss)  # bfloat16's rounding of the frozen base, no more
    moved = [(g - c).abs().max().item() for g, c in zip(gpu_weights, cpu_weights)]
    assert max(moved) < 0.05  # the same update: one Adam step of lr 1e-2 moves each weight by about 1e-2


@pytest.mark.parametrize("profile", ["gpu", "paper"])
def test_each_gpu_profile_runs_both_stages_on_cuda(tiny_models, tmp_path, profile):
    """The profile's own settings at the tiny models' sizes and a few steps; generation on transformers, since
    vLLM's GPU build is an environment of its own (scripts/gpu-check.sh)."""
    cfg = load_config(profile, overrides=[*tiny_overrides(tiny_models), "generation.backend=hf"])
    assert cfg.profile == profile and cfg.generation.dtype == "bfloat16"
    torch.cuda.reset_peak_memory_stats()
    store = Store(tmp_path / "store")
    _, bundle = finetune_stages(cfg, store)
    filtered, adapter, _ = transfer_stages(cfg, store, bundle)
    assert torch.cuda.max_memory_allocated() > 0
    assert read_manifest(filtered).metrics["kept"] == cfg.filter.n_keep
    distilled = read_manifest(adapter).metrics
    assert distilled["student"] == "trained" and distilled["steps"] == cfg.distill_train.max_steps
    assert all(0 < loss < float("inf") for loss in distilled["loss_curve"])
    reloaded = training.attach_adapter(models.load_model(cfg.target_model)[0], adapter)
    assert next(reloaded.parameters()).device.type == "cuda"
