"""The transfer bundle: what a platform keeps of a customer's adapter, and all that stage 2 reads.

    source_adapter/   peft adapter on the source base (with its model card)
    discriminator/    peft adapter on the discriminator base
    seeds.jsonl       the seed inputs (inputs only: stage 2 never reads an answer)
    task_card.json    task name, description, answer choices, prompt template (no paths, nothing from the test split)
    bundle.json       the bases by name and content hash, the adapters' hashes, the provenance of every hop

A transfer emits a new bundle (`chain`): the transferred adapter becomes the source adapter on its new base, with the
same discriminator, seeds and card, and one more hop of provenance. So upgrades chain: A -> B -> C.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydantic import BaseModel

from translora.artifacts import folder_hash, read_json, read_jsonl, write_json, write_jsonl
from translora.config import ModelSpec
from translora.data import TaskCard
from translora.errors import ArtifactError

SOURCE_ADAPTER, DISCRIMINATOR = "source_adapter", "discriminator"


class Hop(BaseModel):
    """One step of an adapter's history: trained on `base` (stage 1) or transferred to it (stage 2)."""

    base_model: str
    base_model_hash: str
    adapter_hash: str
    how: str  # "finetuned on the task data" | "transferred from <previous base>"
    at: float


class BundleInfo(BaseModel):
    """bundle.json: what a transfer needs to know besides the adapters."""

    source_model: ModelSpec
    source_model_hash: str
    discriminator_model: ModelSpec
    discriminator_model_hash: str
    source_adapter_hash: str
    discriminator_adapter_hash: str
    n_seeds: int
    provenance: list[Hop] = []


class Seed(BaseModel):
    input: str


class Bundle:
    def __init__(self, folder: Path):
        folder = Path(folder)
        if not (folder / "bundle.json").is_file():
            raise ArtifactError(f"{folder} is not a transfer bundle (no bundle.json); run `translora finetune` first")
        self.folder = folder
        self.hash = folder_hash(folder)  # refuses a bundle changed after it was written
        try:
            self.info = BundleInfo.model_validate(read_json(folder / "bundle.json"))
            self.card = TaskCard.model_validate(read_json(folder / "task_card.json"))
            self.seeds = [Seed.model_validate(r).input for r in read_jsonl(folder / "seeds.jsonl")]
        except ValueError as exc:
            raise ArtifactError(f"{folder} holds a malformed bundle ({str(exc).splitlines()[0]}); "
                                "write it again with `translora finetune`") from None

    @property
    def source_adapter(self) -> Path:
        return self.folder / SOURCE_ADAPTER

    @property
    def discriminator(self) -> Path:
        return self.folder / DISCRIMINATOR

    def teacher_model(self) -> ModelSpec:
        # A bundle never decides to run remote code: that is the operator's call, made in the config.
        return self.info.source_model.model_copy(update={"trust_remote_code": False})

    def discriminator_model(self) -> ModelSpec:
        return self.info.discriminator_model.model_copy(update={"trust_remote_code": False})


def write(out: Path, info: BundleInfo, card: TaskCard, seeds: list[str], source_adapter: Path,
          discriminator: Path) -> None:
    shutil.copytree(source_adapter, out / SOURCE_ADAPTER, ignore=shutil.ignore_patterns("manifest.json"))
    shutil.copytree(discriminator, out / DISCRIMINATOR, ignore=shutil.ignore_patterns("manifest.json"))
    write_jsonl(out / "seeds.jsonl", [Seed(input=s) for s in seeds])
    write_json(out / "task_card.json", card.model_dump())
    write_json(out / "bundle.json", info.model_dump(mode="json"))


def chain(previous: Bundle, adapter: Path, target: ModelSpec, target_hash: str, out: Path) -> BundleInfo:
    """A bundle whose source is `adapter` on `target`, from the bundle it was transferred from."""
    adapter_hash = folder_hash(adapter)
    hop = Hop(base_model=target.id, base_model_hash=target_hash, adapter_hash=adapter_hash,
              how=f"transferred from {previous.info.source_model.id}", at=time.time())
    info = previous.info.model_copy(update={
        "source_model": target, "source_model_hash": target_hash, "source_adapter_hash": adapter_hash,
        "provenance": [*previous.info.provenance, hop],
    })
    write(out, info, previous.card, previous.seeds, adapter, previous.discriminator)
    return info
