"""Sign and verify a folder's manifest file, so a platform can refuse bundles it did not make.

A manifest lists its folder's files with their hashes, so a valid signature on it vouches for the whole folder.
Two schemes:
- `hmac-sha256`: one shared secret key file both signs and verifies (one organisation, one trust domain);
- `ed25519`: the maker signs with its private key, and anyone holding the public key verifies.
The signature lies next to the file as `<file>.sig`, a small JSON object {scheme, key_id, signature}. What is signed
is the file's bytes behind a fixed context prefix, so such a signature cannot be passed off for any other message.
Keys are named as `hmac:PATH`, `ed25519:PRIVATE.pem` (signing) or `ed25519-pub:PUBLIC.pem` (verifying only).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from translora.errors import SignatureError

_CONTEXT = b"translora manifest signature v1\n"
_MIN_HMAC_BYTES = 32  # a short shared secret can be brute-forced from one signature


class SigningKey(ABC):
    scheme: ClassVar[str]

    def __init__(self, key_id: str):
        self.key_id = key_id  # names the key in signature files and errors; never reveals the secret

    @abstractmethod
    def sign(self, message: bytes) -> bytes: ...

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key_id={self.key_id!r})"


class HmacKey(SigningKey):
    scheme = "hmac-sha256"

    def __init__(self, secret: bytes):
        if len(secret) < _MIN_HMAC_BYTES:
            raise SignatureError(
                f"HMAC key of {len(secret)} bytes is too short (at least {_MIN_HMAC_BYTES}); make "
                "one with translora.signing.generate_hmac_key"
            )
        # The id is a hash of the secret under its own prefix: it tells keys apart without revealing them.
        super().__init__("hmac-" + hashlib.sha256(b"translora key id\n" + secret).hexdigest()[:16])
        self._secret = secret

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)  # constant time: no timing oracle


class Ed25519Key(SigningKey):
    scheme = "ed25519"

    def __init__(self, public: Ed25519PublicKey, private: Ed25519PrivateKey | None = None):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        super().__init__("ed25519-" + hashlib.sha256(raw).hexdigest()[:16])
        self.public, self._private = public, private

    def sign(self, message: bytes) -> bytes:
        if self._private is None:
            raise SignatureError(
                f"key {self.key_id} is a public key and can only verify; sign with its private "
                "key (ed25519:PRIVATE.pem)"
            )
        return self._private.sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def load_key(spec: str) -> SigningKey:
    """A key from `hmac:PATH`, `ed25519:PRIVATE.pem` or `ed25519-pub:PUBLIC.pem`."""
    kind, _, name = spec.partition(":")
    if kind not in ("hmac", "ed25519", "ed25519-pub") or not name:
        raise SignatureError(
            f"key {spec!r} is not of the form hmac:PATH, ed25519:PRIVATE.pem or ed25519-pub:PUBLIC.pem"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise SignatureError(f"key file {path} does not exist (or is not a file)")
    data = path.read_bytes()
    if kind == "hmac":
        return HmacKey(data.strip())  # an editor's trailing newline must not change the key
    try:
        if kind == "ed25519":
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return Ed25519Key(private.public_key(), private)
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return Ed25519Key(public)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # not PEM, encrypted, or the other half
        raise SignatureError(
            f"key file {path} is not an unencrypted PEM Ed25519 "
            f"{'private' if kind == 'ed25519' else 'public'} key ({exc}); make a pair with "
            "translora.signing.generate_ed25519_keypair"
        ) from None
    raise SignatureError(f"key file {path} holds a key of another algorithm; {kind}: needs an Ed25519 key")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode`; an existing key is never overwritten (its signatures would stop verifying)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SignatureError(f"{path} already exists; not overwriting a key (remove it first if you mean it)") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate_hmac_key(path: Path) -> HmacKey:
    """A new random shared secret (hex text), readable by its owner only."""
    secret = secrets.token_hex(32).encode()
    _write_new(Path(path), secret + b"\n", 0o600)
    return HmacKey(secret)


def generate_ed25519_keypair(private_path: Path, public_path: Path) -> Ed25519Key:
    """A new key pair as PEM files: the private key readable by its owner only, the public key to hand out."""
    private = Ed25519PrivateKey.generate()
    _write_new(
        Path(private_path),
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_new(
        Path(public_path),
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )
    return Ed25519Key(private.public_key(), private)


def signature_path(path: Path) -> Path:
    return Path(str(path) + ".sig")


def sign_file(path: Path, key: SigningKey) -> Path:
    """Write `<path>.sig` (atomically) for the current content of `path`; return its path."""
    path = Path(path)
    record = {
        "scheme": key.scheme,
        "key_id": key.key_id,
        "signature": base64.b64encode(key.sign(_CONTEXT + path.read_bytes())).decode(),
    }
    out = signature_path(path)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    return out


def _read_signature(sig: Path, path: Path) -> tuple[str, str, bytes]:
    def malformed(why: str) -> SignatureError:
        return SignatureError(f"signature file {sig} is malformed ({why}); have {path} signed again by its maker")

    try:
        record = json.loads(sig.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise malformed(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise malformed("not a JSON object")
    scheme, key_id, text = (record.get(name) for name in ("scheme", "key_id", "signature"))
    if not (isinstance(scheme, str) and isinstance(key_id, str) and isinstance(text, str)):
        raise malformed("it needs string fields scheme, key_id and signature")
    try:
        signature = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise malformed("the signature is not base64") from None
    return scheme, key_id, signature


def verify_file(path: Path, trusted: Sequence[SigningKey]) -> str:
    """The id of the trusted key whose valid signature `<path>.sig` holds for `path`; else a SignatureError that
    says whether the file is unsigned, signed by an unknown key, or changed since it was signed."""
    path, sig = Path(path), signature_path(path)
    if not path.is_file():
        raise SignatureError(f"{path} does not exist; nothing to verify")
    if not sig.is_file():
        raise SignatureError(
            f"{path} is not signed (no {sig.name}); accept only bundles signed by a key you trust: "
            "ask their maker to sign them"
        )
    scheme, key_id, signature = _read_signature(sig, path)
    keys = [k for k in trusted if k.scheme == scheme and k.key_id == key_id]
    if not keys:
        known = ", ".join(k.key_id for k in trusted) or "none given"
        raise SignatureError(
            f"{path} is signed by key {key_id} ({scheme}), which is not a trusted key (trusted: "
            f"{known}); add that key to the trusted keys only if you trust its maker"
        )
    if not keys[0].verify(_CONTEXT + path.read_bytes(), signature):
        raise SignatureError(
            f"{path} does not match its signature by key {key_id}: it (or the signature) was "
            "changed after signing; do not use it, get an intact copy from its maker"
        )
    return key_id
