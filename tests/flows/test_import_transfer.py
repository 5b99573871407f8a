"""A customer's adapter, trained with plain peft outside translora, imported and transferred end to end through the
CLI: the bundle and the model card say where it came from and its hash, only the discriminator is trained, and the
transferred adapter loads in plain peft."""

import json
from pathlib import Path

from flows.cli import main
from tests.helpers import plain_peft_adapter, tiny_overrides
from translora import adapters
from translora.bundle import Bundle
from translora.store import RunIndex


def test_a_plain_peft_adapter_is_imported_and_transferred(tiny_models, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    customer = plain_peft_adapter(tiny_models["llama"], tmp_path / "customer-adapter", "dora")
    weights = (customer / "adapter_model.safetensors").read_bytes()
    run_dir = tmp_path / "run"
    args = [a for o in tiny_overrides(tiny_models) for a in ("--set", o)]
    assert main(["run", "--json", "--source-adapter", str(customer), "--run-dir", str(run_dir), *args]) == 0, (
        capsys.readouterr().err
    )
    printed = json.loads(capsys.readouterr().out)  # --json: stdout holds the result only

    slots = RunIndex(run_dir).entries()
    assert slots["finetune/source_adapter"].stage == "import-source-adapter"  # imported, not trained
    assert "train-source-adapter" not in {e.stage for e in slots.values()}
    bundle = Bundle(run_dir / "bundle")
    sha = adapters.content_sha256(customer)
    assert bundle.info.imported is not None
    assert (bundle.info.imported.where, bundle.info.imported.sha256) == (str(customer), sha)
    assert bundle.info.provenance[0].how == f"imported from {customer}"
    assert (bundle.source_adapter / "adapter_model.safetensors").read_bytes() == weights  # the customer's own
    card = (bundle.source_adapter / "README.md").read_text()
    assert f"imported from {customer}" in card and sha in card and "dora" in card

    scope = next(s for s in slots if s.startswith("transfer/") and s.endswith("/adapter")).rsplit("/", 1)[0]
    results = json.loads((run_dir / scope / "results.json").read_text())
    assert printed["results_path"] == str(run_dir.resolve() / scope / "results.json")
    assert printed["results"]["accuracy"] == results["accuracy"]
    assert set(results["accuracy"]) >= {"source_adapter", "target_base", "transferred"}
    transferred = run_dir / scope / "adapter"
    target = AutoModelForCausalLM.from_pretrained(tiny_models["gemma3"])
    before = target(torch.tensor([[1, 5, 9]])).logits
    loaded = PeftModel.from_pretrained(target, str(transferred))  # plain peft, nothing of translora
    assert not torch.equal(loaded(torch.tensor([[1, 5, 9]])).logits, before)
    assert Path(str(transferred)).resolve().is_dir()
