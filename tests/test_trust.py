"""Trust comes from the operator's config only: signed bundles verify, remote code runs only for listed models,
a base mismatch passes only with the explicit override, and the bundle's card carries no path or test count."""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_adapter, make_bundle, relist
from translora import bundle as bundles
from translora.config import ModelSpec, TrustSpec
from translora.errors import AdapterMismatchError
from translora.models import fingerprint
from translora.signing import generate_ed25519_keypair, generate_hmac_key


@pytest.fixture(scope="module")
def adapter(tiny_models, tmp_path_factory):
    return make_adapter(tiny_models["llama"], tmp_path_factory.mktemp("adapter") / "a")


def test_signed_bundles_verify_with_the_trusted_key(tiny_models, adapter, tmp_path):
    hmac = generate_hmac_key(tmp_path / "k")
    ed = generate_ed25519_keypair(tmp_path / "ed.pem", tmp_path / "ed.pub")
    by_hmac = make_bundle(tmp_path / "b1", adapter, tiny_models["llama"], signing_key=f"hmac:{tmp_path / 'k'}")
    by_ed = make_bundle(tmp_path / "b2", adapter, tiny_models["llama"], signing_key=f"ed25519:{tmp_path / 'ed.pem'}")
    trust = TrustSpec(trusted_keys=[f"hmac:{tmp_path / 'k'}", f"ed25519-pub:{tmp_path / 'ed.pub'}"])
    assert bundles.verify_signature(bundles.open_trusted(by_hmac, trust).folder, trust.trusted_keys) == hmac.key_id
    assert bundles.verify_signature(by_ed, trust.trusted_keys) == ed.key_id
    assert bundles.verify_signature(by_ed, []) is None  # no keys required: signatures are not checked


def test_a_chained_bundle_is_signed_too(tiny_models, adapter, tmp_path):
    generate_hmac_key(tmp_path / "k")
    key = f"hmac:{tmp_path / 'k'}"
    first = bundles.Bundle(make_bundle(tmp_path / "b1", adapter, tiny_models["llama"], signing_key=key))
    target = ModelSpec(id=str(tiny_models["llama-b"]))
    bundles.chain(first, adapter, target, fingerprint(target), tmp_path / "b2", signing_key=key)
    assert bundles.verify_signature(tmp_path / "b2", [key])
    assert bundles.Bundle(tmp_path / "b2").info.source_model == target


def test_only_the_operator_turns_on_remote_code(tiny_models, adapter, tmp_path):
    folder = make_bundle(tmp_path / "b", adapter, tiny_models["llama"])
    info = json.loads((folder / "bundle.json").read_text())
    info["source_model"]["trust_remote_code"] = info["discriminator_model"]["trust_remote_code"] = True
    (folder / "bundle.json").write_text(json.dumps(info))
    relist(folder)  # as the bundle's maker would have written it
    bundle = bundles.Bundle(folder)
    assert not bundle.teacher_model().trust_remote_code and not bundle.discriminator_model().trust_remote_code
    listed = [str(tiny_models["llama"])]
    assert bundle.teacher_model(listed).trust_remote_code and bundle.discriminator_model(listed).trust_remote_code


def test_a_base_mismatch_passes_only_with_the_override(tiny_models, adapter, tmp_path):
    folder = make_bundle(tmp_path / "b", adapter, tiny_models["llama"], made_on=tiny_models["llama-b"])
    with pytest.raises(AdapterMismatchError, match="trust.allow_base_mismatch=true"):
        bundles.open_trusted(folder, TrustSpec())
    assert bundles.open_trusted(folder, TrustSpec(allow_base_mismatch=True)).folder == folder


def test_the_bundle_card_has_no_path_and_no_test_count(tiny_models, adapter, tmp_path):
    card = json.loads((make_bundle(tmp_path / "b", adapter, tiny_models["llama"]) / "task_card.json").read_text())
    assert card["source"] == "local jsonl file" and "n_test" not in card


def test_the_bundle_stages_sign_with_the_operators_key(tiny_models, adapter, tmp_path):
    from tests.helpers import tiny_overrides
    from translora import stages
    from translora.config import load_config
    from translora.stage import execute
    from translora.store import Store

    generate_hmac_key(tmp_path / "k")
    key = f"hmac:{tmp_path / 'k'}"
    cfg = load_config("cpu", overrides=tiny_overrides(tiny_models) + [f"trust.signing_key={key}"])
    target = ModelSpec(id=str(tiny_models["gemma3"]))
    unsigned = make_bundle(tmp_path / "b", adapter, tiny_models["llama"])
    out = execute(
        stages.EMIT_BUNDLE, cfg, {"bundle": unsigned, "adapter": adapter}, {"target": target}, Store(tmp_path / "store")
    )
    assert bundles.verify_signature(out.path, [key])


def test_keygen_makes_keys_the_config_names_and_never_overwrites_one(tmp_path, capsys):
    from flows import cli

    assert cli.main(["keygen", "--ed25519", str(tmp_path / "sign.pem"), str(tmp_path / "verify.pem")]) == 0
    assert "verify with ed25519-pub:" in capsys.readouterr().out
    assert (tmp_path / "sign.pem").stat().st_mode & 0o077 == 0  # the private key is its owner's only
    TrustSpec(signing_key=f"ed25519:{tmp_path / 'sign.pem'}", trusted_keys=[f"ed25519-pub:{tmp_path / 'verify.pem'}"])
    assert cli.main(["keygen", "--hmac", str(tmp_path / "sign.pem")]) == 2
    assert "already exists; not overwriting a key" in capsys.readouterr().err
