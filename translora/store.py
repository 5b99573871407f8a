"""The content-addressed artifact store, and run directories as indexes into it.

Every stage output lives at `<store>/<stage>/<key>`, where the key hashes everything the output depends on: the
content hashes of its input folders, the fingerprints of its base models, the config sections it reads, translora's
own code and the versions of the libraries that change results. So two configs never share a folder, and a cached
output is by construction the output of its inputs.

A run directory holds only `index.json` (slot -> stage, key) and one symbolic link per slot into the store, so it
can be copied or moved and still reuses everything. `gc` frees what no registered run references.

Concurrency: one writer per key (an flock on `<store>/locks/<key>`). A second process computing the same output
waits, then reuses the first one's result. A killed writer's lock dies with it; its temporary folder is swept by the
next writer of that key, and its `work/<key>` folder (checkpoints, partial results) is resumed from.

Damage: every entry's manifest records the hash of its files. A run folder's slots are links, so an edit through one
(or through a `cp -r` copy of it, which copies the links) changes the entry for every run that shares it. A damaged
entry is never served: `stage.execute` checks an entry before reusing it, and `verify` checks them all. Either moves
a damaged entry aside to `damaged/<stage>/<key>-<time>` (kept for inspection, never deleted by translora; remove it
by hand) so that the same key is computed again in its place.

The store is a URL: a local folder (this module) or `s3://bucket/prefix` (translora/objectstore.py, which keeps
the same interface and a local read cache, so that run folders, gc and every stage still see local paths).
`Store(url)` returns the class the URL names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel

from translora.artifacts import MANIFEST, hash_path, read_json, read_manifest, versions, write_json
from translora.errors import ArtifactError, ConfigError

INDEX = "index.json"
# Libraries whose version can change a stage's output (numerics, tokenization, training, scoring).
RESULT_LIBRARIES = ("torch", "transformers", "peft", "tokenizers", "accelerate", "datasets", "lm_eval")
# Top-level folders of the store that are not stages.
RESERVED = frozenset({"locks", "logs", "runs", "tmp", "work", "damaged"})


def default_root() -> Path | str:
    """$TRANSLORA_STORE (a folder or a URL such as s3://bucket/prefix), else $TRANSLORA_HOME/store."""
    from translora.models import translora_home

    configured = os.environ.get("TRANSLORA_STORE")
    if configured and "://" in configured:
        return configured  # Path() would fold the // of a URL
    return Path(configured or translora_home() / "store")


@lru_cache(maxsize=1)
def code_version(package: Path | None = None) -> str:
    """Hash of translora's own source (every .py and profile YAML): an edit anywhere in the library invalidates."""
    root = package or Path(__file__).parent
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    return versions(RESULT_LIBRARIES)


def stage_key(stage: str, config: dict[str, Any], inputs: dict[str, str], models: dict[str, str]) -> str:
    """The store key of one stage output. `inputs` and `models` map names to content hashes / fingerprints."""
    material = {
        "stage": stage,
        "config": config,
        "inputs": inputs,
        "models": models,
        "code": code_version(),
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Damage:
    """A store entry whose files no longer match its manifest."""

    stage: str
    key: str
    path: Path
    problem: str  # what differs, in words
    moved_to: Path | str | None = None  # where `verify(repair=True)` put it (an s3:// URL for an S3 store)


class Store:
    """A store in a local folder; `Store("s3://bucket/prefix")` is an objectstore.S3Store with the same interface."""

    def __new__(cls, root: Path | str | None = None, **settings: Any):
        # Every caller opens the store as `Store(url)` or `Store()` (tasks, flows, CLI): the URL picks the class.
        url = str(root or default_root())
        if cls is not Store or "://" not in url:
            return super().__new__(cls)
        if not url.startswith("s3://"):
            raise ConfigError(f"store {url}: give a local folder or s3://bucket/prefix")
        from translora.objectstore import S3Store

        return super().__new__(S3Store)

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root or default_root()).resolve()
        self.url = str(self.root)

    def path(self, stage: str, key: str) -> Path:
        """Where the output `stage/key` is (or will be) on this machine."""
        return self.root / stage / key

    def has(self, stage: str, key: str) -> bool:
        """Whether the output was published (complete; not necessarily intact: see `problem`)."""
        return (self.path(stage, key) / "manifest.json").exists()

    def exists(self, stage: str, key: str) -> bool:
        """Whether anything is there under the key, intact or damaged (a folder without a manifest is a damaged
        entry to set aside, not a missing one)."""
        return self.path(stage, key).exists()

    def ensure_local(self, path: Path | None) -> None:
        """Make an input folder readable here. A local store's outputs already are; an S3 store downloads one of
        its outputs into its read cache."""

    def work_dir(self, key: str) -> Path:
        """Survives a kill: checkpoints and partial results of an unfinished output live here until it is done."""
        return self.root / "work" / key

    def log_dir(self, key: str) -> Path:
        return self.root / "logs" / key

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """One writer per key (a second one waits here)."""
        with self._local_lock(key):
            yield

    @contextmanager
    def _local_lock(self, name: str) -> Iterator[None]:
        """An flock on `locks/<name>`: between the processes of this machine."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / name, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a temporary folder that becomes `path(stage, key)` in one rename when the block succeeds.
        Call under `lock(key)`. Stale temporary folders of this key (a killed writer's) are removed first."""
        tmp = self._temporary(key)
        try:
            yield tmp
            final = self.path(stage, key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(self.work_dir(key), ignore_errors=True)

    def _temporary(self, name: str) -> Path:
        """A new `tmp/<name>.<random>` folder; earlier ones of the same name (a killed process's) are removed."""
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        for stale in tmp_root.glob(f"{name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = tmp_root / f"{name}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        return tmp

    # -------------------------------------------------------------- damaged entries

    def entries(self) -> Iterator[tuple[str, str, Path]]:
        """(stage, key, path) of every output folder in the store."""
        if not self.root.is_dir():
            return
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in RESERVED):
            for entry in sorted(p for p in stage_dir.iterdir() if p.is_dir()):
                yield stage_dir.name, entry.name, entry

    def problem(self, stage: str, key: str) -> str | None:
        """What is wrong with the entry `stage/key` (its files against its manifest), or None when it is intact."""
        folder = self.path(stage, key)
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            return f"it has no {MANIFEST} (emptied or left half-written)"
        try:
            manifest = read_manifest(folder)
        except (OSError, ValueError, ArtifactError) as exc:  # not JSON, or not a manifest
            return f"its {MANIFEST} is unreadable ({str(exc).splitlines()[0]})"
        if manifest.stage != stage or (manifest.key and manifest.key != key):
            return f"its {MANIFEST} is that of {manifest.stage}/{manifest.key[:12]} (the folder was moved)"
        if not manifest.content_hash:
            return f"its {MANIFEST} records no content hash"
        try:
            actual = hash_path(folder)
        except (OSError, ArtifactError) as exc:
            return f"its files cannot be read ({exc})"
        if actual == manifest.content_hash:
            return None
        try:  # the files touched after the manifest was written: the edit, most likely
            written = manifest_file.stat().st_mtime_ns
            newer = sorted(
                str(p.relative_to(folder))
                for p in folder.rglob("*")
                if p.is_file() and p.name != MANIFEST and p.stat().st_mtime_ns > written
            )
        except OSError:
            newer = []
        hint = f"; changed since: {', '.join(newer[:5])}{' ...' if len(newer) > 5 else ''}" if newer else ""
        return f"its files hash to {actual[:12]}, its manifest records {manifest.content_hash[:12]}{hint}"

    def set_aside(self, stage: str, key: str) -> Path | str:
        """Move the entry to `damaged/<stage>/<key>-<time>`, where no run finds it; the key is then free to be
        computed again. Call under `lock(key)`."""
        aside = self.root / "damaged" / stage / f"{key}-{time.strftime('%Y%m%d-%H%M%S')}"
        while aside.exists():
            aside = aside.with_name(f"{key}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(stage, key), aside)
        return aside

    def verify(self, repair: bool = False) -> list[Damage]:
        """Check every entry's files against its manifest; returns the damaged ones. With `repair`, each is moved
        aside (`set_aside`), so the next run that needs it computes it again."""
        found = []
        for stage, key, path in self.entries():
            problem = self.problem(stage, key)
            if problem is None:
                continue
            if not repair:
                if path.exists():  # not removed (by gc, or set aside by a run) while it was read
                    found.append(Damage(stage, key, path, problem))
                continue
            with self.lock(key):  # a run may be repairing it now: look again once it is done
                problem = self.problem(stage, key) if path.exists() else None
                if problem is not None:
                    found.append(Damage(stage, key, path, problem, self.set_aside(stage, key)))
        return found

    # -------------------------------------------------------------- runs and garbage collection

    def register_run(self, run_dir: Path) -> None:
        run_dir = Path(run_dir).resolve()
        name = hashlib.sha256(str(run_dir).encode()).hexdigest()[:24]
        write_json(self.root / "runs" / f"{name}.json", {"run_dir": str(run_dir)})

    def runs(self, forget_missing: bool = False) -> list[Path]:
        """The run directories registered with this store that still exist (with `forget_missing`, the records of
        the others are dropped)."""
        found = []
        for ref in sorted((self.root / "runs").glob("*.json")):
            run_dir = Path(read_json(ref)["run_dir"])
            if (run_dir / INDEX).exists():
                found.append(run_dir)
            elif forget_missing:
                ref.unlink()
        return found

    def referenced_keys(self, extra_runs: Sequence[Path] = (), forget_missing: bool = True) -> set[str]:
        """Keys referenced by every registered run that still exists (and by `extra_runs`)."""
        keys: set[str] = set()
        runs = [Path(r) for r in extra_runs] + self.runs(forget_missing)
        for run_dir in runs:
            keys |= {entry.key for entry in RunIndex(run_dir).entries().values()}
        return keys

    def gc(self, extra_runs: Sequence[Path] = (), dry_run: bool = False) -> tuple[int, int]:
        """Remove every output no run references, and stale temporary folders; returns (folders, bytes) freed, or
        with `dry_run` what would be freed, removing nothing."""
        if not self.root.is_dir():
            return 0, 0
        keep = self.referenced_keys(extra_runs, forget_missing=not dry_run)
        removed, freed = 0, 0
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in RESERVED):
            for obj in sorted(stage_dir.iterdir()):
                if obj.name in keep:
                    continue
                with self._local_lock(obj.name):  # an S3 store's gc frees its local cache only
                    freed += folder_size(obj)
                    if not dry_run:
                        shutil.rmtree(obj)
                    removed += 1
        for leftover in ("tmp", "work", "logs"):  # only folders whose writer is gone: a live writer holds its lock
            for folder in sorted((self.root / leftover).glob("*")):
                key = folder.name.split(".")[0]
                if leftover == "logs" and key in keep:
                    continue
                if not _locked(self.root / "locks" / key):
                    freed += folder_size(folder)
                    if not dry_run:
                        shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
        return removed, freed


def _locked(lock_file: Path) -> bool:
    if not lock_file.exists():
        return False
    with open(lock_file, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


class IndexEntry(BaseModel):
    stage: str
    key: str
    path: str  # where the output lived in the store when it was recorded
    recorded_at: float


class RunIndex:
    """A run directory: `index.json` (slot -> stage output) and a symbolic link per slot into the store."""

    def __init__(self, run_dir: Path):
        self.root = Path(run_dir)

    def entries(self) -> dict[str, IndexEntry]:
        file = self.root / INDEX
        if not file.exists():
            return {}
        try:
            data = json.loads(file.read_text())
            return {slot: IndexEntry.model_validate(e) for slot, e in data["slots"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{file} is not a translora run index ({exc}); use another --run-dir") from None

    def record(self, slot: str, stage: str, key: str, path: Path) -> Path:
        """Point `slot` at a store output; returns the slot's path inside the run directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".index.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent tasks of one run record their slots one at a time
            link = self.root / slot
            if link.exists() and not link.is_symlink():  # refused before anything is written
                raise ArtifactError(f"{link} is a real folder, not a link into the store; move it away")
            # The link first, then the index: a kill in between leaves a link the next run replaces, never an
            # index entry without its link.
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.link")
            os.symlink(path, tmp)
            os.replace(tmp, link)
            entries = self.entries()
            entries[slot] = IndexEntry(stage=stage, key=key, path=str(path), recorded_at=time.time())
            write_json(self.root / INDEX, {"slots": {s: e.model_dump() for s, e in sorted(entries.items())}})
        return link

    def slot(self, slot: str) -> Path:
        entries = self.entries()
        if slot not in entries:
            raise ArtifactError(f"{self.root} has no {slot!r} yet; run the command that produces it first")
        return self.root / slot
