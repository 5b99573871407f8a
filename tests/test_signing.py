import base64
import json
import stat

import pytest

from translora import signing
from translora.errors import SignatureError


@pytest.fixture(params=["hmac", "ed25519"])
def keys(request, tmp_path):
    """(signing key, the key a verifier holds, another key of the same scheme)."""
    if request.param == "hmac":
        signing.generate_hmac_key(tmp_path / "k")
        signing.generate_hmac_key(tmp_path / "other")
        return (
            signing.load_key(f"hmac:{tmp_path / 'k'}"),
            signing.load_key(f"hmac:{tmp_path / 'k'}"),
            signing.load_key(f"hmac:{tmp_path / 'other'}"),
        )
    signing.generate_ed25519_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    other = signing.generate_ed25519_keypair(tmp_path / "o.pem", tmp_path / "o.pub.pem")
    return (
        signing.load_key(f"ed25519:{tmp_path / 'k.pem'}"),
        signing.load_key(f"ed25519-pub:{tmp_path / 'k.pub.pem'}"),
        other,
    )


@pytest.fixture()
def manifest(tmp_path):
    path = tmp_path / "bundle" / "manifest.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"files": {"adapter/adapter_model.safetensors": "sha256:ab12"}}))
    return path


def test_roundtrip(keys, manifest):
    signer, verifier, other = keys
    sig = signing.sign_file(manifest, signer)
    assert sig.name == "manifest.json.sig"
    record = json.loads(sig.read_text())
    assert record["scheme"] == signer.scheme and record["key_id"] == signer.key_id == verifier.key_id
    assert signing.verify_file(manifest, [other, verifier]) == signer.key_id
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["manifest.json", "manifest.json.sig"]  # no temp left


def test_tampered_content_or_signature_is_refused(keys, manifest):
    signer, verifier, _ = keys
    signing.sign_file(manifest, signer)
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b"ab12", b"ab13"))
    with pytest.raises(SignatureError, match="changed after signing"):
        signing.verify_file(manifest, [verifier])
    manifest.write_bytes(original)
    sig = signing.signature_path(manifest)
    record = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(record["signature"]))
    raw[0] ^= 1
    sig.write_text(json.dumps(record | {"signature": base64.b64encode(bytes(raw)).decode()}))
    with pytest.raises(SignatureError, match="changed after signing"):
        signing.verify_file(manifest, [verifier])


def test_unknown_signer_is_refused_even_when_it_claims_a_trusted_id(keys, manifest):
    signer, verifier, other = keys
    signing.sign_file(manifest, other)
    with pytest.raises(SignatureError, match=f"signed by key {other.key_id}.*not a trusted key"):
        signing.verify_file(manifest, [verifier])
    with pytest.raises(SignatureError, match="trusted: none given"):
        signing.verify_file(manifest, [])
    sig = signing.signature_path(manifest)
    sig.write_text(json.dumps(json.loads(sig.read_text()) | {"key_id": verifier.key_id}))
    with pytest.raises(SignatureError, match="changed after signing"):
        signing.verify_file(manifest, [verifier])


def test_missing_signature(keys, manifest):
    with pytest.raises(SignatureError, match="is not signed .*ask their maker to sign"):
        signing.verify_file(manifest, [keys[1]])
    with pytest.raises(SignatureError, match="does not exist"):
        signing.verify_file(manifest.with_name("nothing.json"), [keys[1]])


@pytest.mark.parametrize(
    "content, why",
    [
        (b"\xff\xfe not text", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"scheme": "ed25519", "key_id": "x"}', "string fields"),
        (b'{"scheme": "ed25519", "key_id": "x", "signature": 5}', "string fields"),
        (b'{"scheme": "ed25519", "key_id": "x", "signature": "***"}', "not base64"),
    ],
)
def test_malformed_signature_file(manifest, tmp_path, content, why):
    key = signing.generate_ed25519_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    signing.signature_path(manifest).write_bytes(content)
    with pytest.raises(SignatureError, match=f"malformed \\(.*{why}.*signed again"):
        signing.verify_file(manifest, [key])


def test_key_files_and_their_errors(tmp_path):
    key = signing.generate_ed25519_keypair(tmp_path / "k.pem", tmp_path / "k.pub.pem")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    with pytest.raises(SignatureError, match="already exists; not overwriting"):
        signing.generate_ed25519_keypair(tmp_path / "k.pem", tmp_path / "k2.pub.pem")
    public = signing.load_key(f"ed25519-pub:{tmp_path / 'k.pub.pem'}")
    assert public.key_id == key.key_id
    with pytest.raises(SignatureError, match="public key and can only verify"):
        signing.sign_file(tmp_path / "k.pub.pem", public)
    with pytest.raises(SignatureError, match="not an unencrypted PEM Ed25519 private key"):
        signing.load_key(f"ed25519:{tmp_path / 'k.pub.pem'}")  # the wrong half
    with pytest.raises(SignatureError, match="not of the form hmac:PATH"):
        signing.load_key(f"rsa:{tmp_path / 'k.pem'}")
    with pytest.raises(SignatureError, match="does not exist"):
        signing.load_key(f"hmac:{tmp_path / 'none'}")
    (tmp_path / "short").write_text("secret\n")
    with pytest.raises(SignatureError, match="too short"):
        signing.load_key(f"hmac:{tmp_path / 'short'}")
    hkey = signing.generate_hmac_key(tmp_path / "h")
    assert "secret" not in repr(hkey) and hkey.key_id in repr(hkey)
    # an editor's trailing newline does not change the key
    (tmp_path / "h2").write_bytes((tmp_path / "h").read_bytes().strip() + b"\n\n")
    assert signing.load_key(f"hmac:{tmp_path / 'h2'}").key_id == hkey.key_id
