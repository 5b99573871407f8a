"""Content hashes, atomic writes and stage manifests.

Every stage writes into a temporary sibling folder and renames it into place, so a half-written adapter never
exists; each output folder carries `manifest.json` (inputs' hashes, config, versions, timings, metrics).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, Field

from translora.errors import ArtifactError

MANIFEST = "manifest.json"
_VERSIONED = ("translora", "torch", "transformers", "peft", "lm_eval", "prefect", "datasets")


class Manifest(BaseModel):
    stage: str
    key: str = ""  # the store key this output lives under
    created_at: float = Field(default_factory=time.time)
    inputs: dict[str, str | None] = {}  # name -> content hash
    models: dict[str, Any] = {}  # name -> {"spec": ModelSpec, "fingerprint": content hash}
    config: dict[str, Any] = {}
    code: str = ""  # translora's code version
    versions: dict[str, str] = {}
    seconds: float = 0.0
    metrics: dict[str, Any] = {}
    content_hash: str = ""  # hash of the folder's files, manifest excluded


def safe_name(text: str) -> str:
    keep = [c if c.isalnum() or c in "-_." else "_" for c in text]
    return "".join(keep).strip("_") or "unnamed"


def versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_path(path: Path) -> str:
    """Content hash of a file or a folder (relative names and bytes; the manifest is left out)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; re-run the stage that produces it.")
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST)
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def hash_json(obj: Any) -> str:
    return hash_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} is missing; re-run the stage that produces it.") from exc


def write_jsonl(path: Path, records: Sequence[BaseModel] | Sequence[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as fh:
        for rec in records:
            fh.write((rec.model_dump_json() if isinstance(rec, BaseModel) else json.dumps(rec)) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} is missing; re-run the stage that produces it.")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `final` in one rename, on failure it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    manifest.versions = manifest.versions or versions()
    manifest.content_hash = hash_path(folder)
    write_json(Path(folder) / MANIFEST, manifest.model_dump())
    return manifest


def read_manifest(folder: Path) -> Manifest:
    return Manifest.model_validate(read_json(Path(folder) / MANIFEST))


def folder_hash(folder: Path, verify: bool = True) -> str:
    """The content hash a stage recorded for its output, checked against the files (so edits are noticed).

    verify=False trusts the manifest (used for the large converted-model caches translora writes itself).
    """
    folder = Path(folder)
    manifest_file = folder / MANIFEST
    if folder.is_dir() and manifest_file.exists():
        recorded = read_manifest(folder).content_hash
        if recorded and not verify:
            return recorded
        actual = hash_path(folder)
        if recorded and recorded != actual:
            manifest, real = read_manifest(folder), folder.resolve()
            where = f"{folder} (a link to {real})" if real != folder.absolute() else str(folder)
            if manifest.key and (real.parent.name, real.name) == (manifest.stage, manifest.key):  # a store entry
                advice = (
                    f"every run that links to it sees the edit, and deleting a run folder's link leaves it in "
                    f"the store: run `translora store verify --repair --store {real.parent.parent}` to move "
                    "it aside, then re-run the command that made it"
                )
            else:
                advice = "delete the folder and re-run its stage"
            raise ArtifactError(
                f"{where} was changed after it was written (hash {actual[:12]} != manifest {recorded[:12]}); {advice}."
            )
        return actual
    return hash_path(folder)
