"""Adapters trained outside translora, with plain peft: what an imported adapter is, and which ones are refused
(another base, wrong shapes, no config, an unknown PEFT kind, pickled weights) before any work starts."""

import json
import shutil
from pathlib import Path

import pytest

from tests import tiny
from tests.helpers import plain_peft_adapter
from translora import adapters
from translora.config import ImportSpec, ModelSpec
from translora.errors import AdapterMismatchError, ArtifactError


@pytest.fixture(scope="module")
def made(tiny_models, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plain-peft")
    llama = tiny_models["llama"]
    return {kind: plain_peft_adapter(llama, root / kind, kind) for kind in ("lora", "dora", "prompt_tuning")}


@pytest.mark.parametrize("kind", ["lora", "dora", "prompt_tuning"])
def test_each_peft_kind_is_read_and_fits_its_own_base(kind, made, tiny_models):
    folder = adapters.fetch(ImportSpec(id=str(made[kind])))
    facts = adapters.check_against_base(folder, ModelSpec(id=str(tiny_models["llama"])))
    assert facts.kind == kind and facts.base_model == str(tiny_models["llama"])
    if kind != "prompt_tuning":
        assert facts.target_modules == ["k_proj", "q_proj"] and facts.r == 4  # its own settings, not translora's


def test_an_adapter_for_another_base_is_refused_by_name(made, tiny_models):
    with pytest.raises(AdapterMismatchError, match="was trained on .*llama.*not on the source model .*llama-b"):
        adapters.check_against_base(made["lora"], ModelSpec(id=str(tiny_models["llama-b"])))
    # the operator may vouch for the name; the shapes still decide (llama-b has llama's shapes)
    adapters.check_against_base(made["lora"], ModelSpec(id=str(tiny_models["llama-b"])), allow_other_base_name=True)


def test_an_adapter_whose_shapes_do_not_fit_is_refused(made, tmp_path):
    narrow = tiny.build(tmp_path / "narrow", "llama", hidden_size=32, head_dim=16, intermediate_size=64)
    with pytest.raises(
        AdapterMismatchError, match="k_proj.lora_A.weight has shape \\[4, 64\\], but that layer maps 32 to 16 features"
    ):
        adapters.check_against_base(made["lora"], ModelSpec(id=str(narrow)), allow_other_base_name=True)
    with pytest.raises(AdapterMismatchError, match="prompt embeddings are 64 wide, the model's hidden size is 32"):
        adapters.check_against_base(made["prompt_tuning"], ModelSpec(id=str(narrow)), allow_other_base_name=True)
    shallow = tiny.build(tmp_path / "shallow", "llama", num_hidden_layers=1)
    with pytest.raises(
        AdapterMismatchError, match="adapts module 'model.layers.1.self_attn.[qk]_proj', which the model does not have"
    ):
        adapters.check_against_base(made["dora"], ModelSpec(id=str(shallow)), allow_other_base_name=True)


def test_folders_that_are_not_supported_adapters_are_refused(made, tiny_models, tmp_path):
    base = ModelSpec(id=str(tiny_models["llama"]))
    bare = shutil.copytree(made["lora"], tmp_path / "bare")
    (bare / "adapter_config.json").unlink()
    with pytest.raises(ArtifactError, match="has no adapter_config.json, so it is not a peft adapter folder"):
        adapters.check_against_base(bare, base)
    ia3 = shutil.copytree(made["lora"], tmp_path / "ia3")
    config = json.loads((ia3 / "adapter_config.json").read_text())
    (ia3 / "adapter_config.json").write_text(json.dumps(config | {"peft_type": "IA3"}))
    with pytest.raises(AdapterMismatchError, match="holds a IA3 adapter .*translora moves LoRA, DoRA and prompt"):
        adapters.check_against_base(ia3, base)
    pickled = shutil.copytree(made["lora"], tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ArtifactError, match="adapter_model.bin, a pickle translora never loads"):
        adapters.check_against_base(pickled, base)
    with pytest.raises(ArtifactError, match="does not exist or is not a folder"):
        adapters.fetch(ImportSpec(id=str(tmp_path / "nowhere")))


def test_the_content_hash_covers_config_and_weights(made, tmp_path):
    copy = shutil.copytree(made["lora"], tmp_path / "copy")
    assert adapters.content_sha256(copy) == adapters.content_sha256(made["lora"])
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps(config | {"lora_alpha": 99}))
    assert adapters.content_sha256(copy) != adapters.content_sha256(made["lora"])
