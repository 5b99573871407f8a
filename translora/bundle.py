"""The transfer bundle: what a platform keeps of a customer's adapter, and all that stage 2 reads.

    source_adapter/   peft adapter on the source base (with its model card)
    discriminator/    peft adapter on the discriminator base
    seeds.jsonl       the seed inputs (inputs only: stage 2 never reads an answer)
    task_card.json    task name, description, answer choices, prompt template (no paths, nothing from the test split)
    bundle.json       the bases by name and content hash, the adapters' hashes, the provenance of every hop
    files.json        every file above with its sha256: stage 2 refuses a bundle with a file missing, changed or added
    files.json.sig    when the operator configures trust.signing_key: a signature over files.json, so a platform
                      that sets trust.trusted_keys refuses bundles it did not make (translora/signing.py)

Trust comes from the operator's config only (`trust`): a bundle never turns on remote code, and before stage 2 uses
one, `open_trusted` checks its signature and that the teacher and discriminator bases here are the ones it was made
on. (The store's manifest.json beside these files is the store's record of the stage that wrote them.)

A transfer emits a new bundle (`chain`): the transferred adapter becomes the source adapter on its new base, with the
same discriminator, seeds and card, and one more hop of provenance. So upgrades chain: A -> B -> C.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from translora.artifacts import MANIFEST, folder_hash, read_json, read_jsonl, write_json, write_jsonl
from translora.config import ModelSpec, TrustSpec
from translora.data import TaskCard
from translora.errors import AdapterMismatchError, ArtifactError

SOURCE_ADAPTER, DISCRIMINATOR = "source_adapter", "discriminator"
FILES = "files.json"
# Not in the file list: the list itself, its signature, and the store's manifest (written after the list).
UNLISTED = (FILES, FILES + ".sig", MANIFEST)


class Hop(BaseModel):
    """One step of an adapter's history: trained on `base` (stage 1) or transferred to it (stage 2)."""

    base_model: str
    base_model_hash: str
    adapter_hash: str
    how: str  # "finetuned on the task data" | "imported from <where>" | "transferred from <previous base>"
    # No time here: a bundle is a content-addressed output, so the same inputs must give the same bytes. When a hop
    # was made is in the store's manifest.json beside the bundle (created_at). Older bundles' `at` is ignored.


class Imported(BaseModel):
    """A source adapter trained outside translora: where it was imported from, and the sha256 of its files then."""

    where: str  # a local folder or hub id[@revision]
    sha256: str


class BundleInfo(BaseModel):
    """bundle.json: what a transfer needs to know besides the adapters."""

    source_model: ModelSpec
    source_model_hash: str
    discriminator_model: ModelSpec
    discriminator_model_hash: str
    source_adapter_hash: str
    discriminator_adapter_hash: str
    n_seeds: int
    imported: Imported | None = None  # the first hop's adapter was imported, not trained by translora
    provenance: list[Hop] = []


class Seed(BaseModel):
    input: str


class Bundle:
    def __init__(self, folder: Path):
        folder = Path(folder)
        if not folder.is_dir():
            raise ArtifactError(
                f"bundle {folder} does not exist or is not a folder; give the bundle folder that "
                "`translora finetune` printed"
            )
        if not (folder / "bundle.json").is_file():
            raise ArtifactError(f"{folder} is not a transfer bundle (no bundle.json); run `translora finetune` first")
        self.folder = folder
        check_files(folder)  # nothing missing, changed or added since it was written
        self.hash = folder_hash(folder)
        try:
            self.info = BundleInfo.model_validate(read_json(folder / "bundle.json"))
            self.card = TaskCard.model_validate(read_json(folder / "task_card.json"))
            self.seeds = [Seed.model_validate(r).input for r in read_jsonl(folder / "seeds.jsonl")]
        except (ValueError, ArtifactError) as exc:
            raise ArtifactError(
                f"{folder} holds a malformed bundle ({str(exc).splitlines()[0]}); "
                "write it again with `translora finetune`"
            ) from None
        if not self.seeds:
            raise ArtifactError(f"{folder} holds no seed inputs; write it again with `translora finetune`")
        for adapter in (self.source_adapter, self.discriminator):
            _check_adapter(adapter)

    @property
    def source_adapter(self) -> Path:
        return self.folder / SOURCE_ADAPTER

    @property
    def discriminator(self) -> Path:
        return self.folder / DISCRIMINATOR

    def teacher_model(self, remote_code_models: Sequence[str] = ()) -> ModelSpec:
        return _operator_trust(self.info.source_model, remote_code_models)

    def discriminator_model(self, remote_code_models: Sequence[str] = ()) -> ModelSpec:
        return _operator_trust(self.info.discriminator_model, remote_code_models)


def _operator_trust(spec: ModelSpec, remote_code_models: Sequence[str]) -> ModelSpec:
    # A bundle never decides to run remote code: only the operator's trust.remote_code_models can.
    return spec.model_copy(update={"trust_remote_code": spec.id in remote_code_models})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    """Every file of the bundle (relative path -> sha256), the unlisted top-level files aside."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():  # a link could point anywhere on the machine that reads the bundle
            raise ArtifactError(
                f"bundle {folder} holds a link ({rel}); a bundle holds plain files only: get an "
                "intact copy from its maker"
            )
        if path.is_file() and rel not in UNLISTED:
            out[rel] = _sha256(path)
    return out


def check_files(folder: Path) -> None:
    """The bundle's files are exactly those files.json lists, with the listed hashes."""
    folder = Path(folder)
    try:
        listed = json.loads((folder / FILES).read_text())["files"]
        if not isinstance(listed, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        raise ArtifactError(
            f"bundle {folder} has no {FILES} (the list of its files and their hashes): it was "
            "written by an older translora or stripped; write it again with `translora finetune`"
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"bundle {folder}: {FILES} is malformed ({type(exc).__name__}: {exc}); get an intact "
            "copy of the bundle from its maker"
        ) from None
    actual = _listing(folder)
    for rel, digest in sorted(listed.items()):
        if rel not in actual:
            raise ArtifactError(f"bundle {folder} is incomplete: {rel} is missing; get an intact copy from its maker")
        if actual[rel] != digest:
            raise ArtifactError(
                f"bundle {folder}: {rel} was changed after it was written (its sha256 "
                f"differs from {FILES}); do not use it, get an intact copy from its maker"
            )
    extra = sorted(set(actual) - set(listed))
    if extra:
        raise ArtifactError(
            f"bundle {folder} holds {extra[0]}, which {FILES} does not list (added after it was "
            "written); remove it, or get an intact copy from its maker"
        )


def _check_adapter(folder: Path) -> None:
    """A peft adapter folder: its config (a JSON object naming the peft type) and its safetensors weights."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        if not isinstance(config, dict) or "peft_type" not in config:
            raise ValueError("no peft_type")
    except (OSError, ValueError) as exc:
        raise ArtifactError(
            f"bundle adapter {folder} has no valid adapter_config.json ({exc}); write the bundle "
            "again with `translora finetune`"
        ) from None
    if not (folder / "adapter_model.safetensors").is_file():
        raise ArtifactError(
            f"bundle adapter {folder} has no adapter_model.safetensors; write the bundle again "
            "with `translora finetune`"
        )


def verify_signature(folder: Path, trusted_keys: Sequence[str]) -> str | None:
    """The id of the trusted key that signed the bundle's file list; None when the operator trusts no key in
    particular (trust.trusted_keys empty). A bundle unsigned, signed by another key, or changed is refused."""
    from translora.signing import load_key, verify_file

    if not trusted_keys:
        return None
    return verify_file(Path(folder) / FILES, [load_key(k) for k in trusted_keys])


def check_bases(bundle: Bundle, trust: TrustSpec) -> None:
    """The teacher and discriminator bases here are the models the bundle's adapters were trained on."""
    from translora.models import fingerprint

    pairs = (
        ("source (teacher)", bundle.teacher_model(trust.remote_code_models), bundle.info.source_model_hash),
        ("discriminator", bundle.discriminator_model(trust.remote_code_models), bundle.info.discriminator_model_hash),
    )
    for role, spec, made_on in pairs:
        here = fingerprint(spec)
        if here != made_on and not trust.allow_base_mismatch:
            raise AdapterMismatchError(
                f"bundle {bundle.folder} was made on {role} base {spec.id} with content hash {made_on[:12]}, but "
                f"{spec.id} here has hash {here[:12]}, so its adapter would run on another model; put the original "
                "model there, or set trust.allow_base_mismatch=true to use it anyway"
            )


def open_trusted(folder: Path, trust: TrustSpec) -> Bundle:
    """A bundle stage 2 may use: intact, signed by a trusted key when the operator requires one, and made on the
    bases found here."""
    bundle = Bundle(folder)
    verify_signature(bundle.folder, trust.trusted_keys)
    check_bases(bundle, trust)
    return bundle


def write(
    out: Path,
    info: BundleInfo,
    card: TaskCard,
    seeds: list[str],
    source_adapter: Path,
    discriminator: Path,
    signing_key: str | None = None,
) -> None:
    """Write a bundle into `out`; `signing_key` (trust.signing_key) signs its file list."""
    shutil.copytree(source_adapter, out / SOURCE_ADAPTER, ignore=shutil.ignore_patterns(MANIFEST))
    shutil.copytree(discriminator, out / DISCRIMINATOR, ignore=shutil.ignore_patterns(MANIFEST))
    write_jsonl(out / "seeds.jsonl", [Seed(input=s) for s in seeds])
    write_json(out / "task_card.json", card.for_bundle())
    write_json(out / "bundle.json", info.model_dump(mode="json"))
    write_json(out / FILES, {"files": _listing(out)})
    if signing_key:
        from translora.signing import load_key, sign_file

        sign_file(out / FILES, load_key(signing_key))


def chain(
    previous: Bundle, adapter: Path, target: ModelSpec, target_hash: str, out: Path, signing_key: str | None = None
) -> BundleInfo:
    """A bundle whose source is `adapter` on `target`, from the bundle it was transferred from."""
    adapter_hash = folder_hash(adapter)
    hop = Hop(
        base_model=target.id,
        base_model_hash=target_hash,
        adapter_hash=adapter_hash,
        how=f"transferred from {previous.info.source_model.id}",
    )
    info = previous.info.model_copy(
        update={
            "source_model": target,
            "source_model_hash": target_hash,
            "source_adapter_hash": adapter_hash,
            "provenance": [*previous.info.provenance, hop],
        }
    )
    write(out, info, previous.card, previous.seeds, adapter, previous.discriminator, signing_key)
    return info
