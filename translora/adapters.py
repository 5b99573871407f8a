"""Existing peft adapters brought into translora: a customer's LoRA, DoRA or prompt-tuning adapter trained outside it.

`fetch` finds the adapter (a local folder, or a hub id at a revision); `check_against_base` says, before any work
starts, whether it fits the source base: a supported PEFT kind, the base it names, and every tensor's module and
shape on that base. Only safetensors weights are read: a pickled adapter_model.bin is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from translora.config import ImportSpec, ModelSpec
from translora.errors import AdapterMismatchError, ArtifactError, ModelNotFoundError

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
FILES = (CONFIG, WEIGHTS)  # what an imported adapter is made of (translora writes its own model card)
SUPPORTED = ("LORA", "PROMPT_TUNING")  # peft_type values; DoRA is LORA with use_dora
PEFT_PREFIX = "base_model.model."  # peft's prefix on LoRA tensor names, before the base model's module path
LORA_PARTS = (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector")


class AdapterFacts(BaseModel):
    """What an adapter folder says about itself."""

    kind: Literal["lora", "dora", "prompt_tuning"]
    base_model: str | None  # base_model_name_or_path in adapter_config.json
    r: int | None = None
    target_modules: list[str] | None = None
    num_virtual_tokens: int | None = None


def fetch(spec: ImportSpec) -> Path:
    """The adapter's local folder: the folder itself, or a hub repository's adapter files at `spec.revision`."""
    path = Path(spec.id).expanduser()
    if path.exists() or spec.id.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ArtifactError(
                f"adapter folder {spec.id} does not exist or is not a folder; give the folder that "
                "peft's save_pretrained wrote, or a hub id"
            )
        return path.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.id, revision=spec.revision, allow_patterns=list(FILES)))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repository, unknown revision: one message
        raise ModelNotFoundError(
            f"cannot get adapter {spec.id!r} from the hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}); give a local adapter folder, or a reachable "
            "hub id and revision"
        ) from None


def inspect(folder: Path) -> AdapterFacts:
    """The adapter's kind and settings from its adapter_config.json, and that its weights are safetensors."""
    if not (folder / CONFIG).is_file():
        raise ArtifactError(
            f"{folder} has no {CONFIG}, so it is not a peft adapter folder; give the folder that "
            "peft's save_pretrained wrote"
        )
    try:
        config = json.loads((folder / CONFIG).read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{folder / CONFIG} is not valid JSON ({exc}); give the file peft wrote") from None
    peft_type = str(config.get("peft_type"))
    if peft_type not in SUPPORTED:
        raise AdapterMismatchError(
            f"{folder} holds a {peft_type} adapter (peft_type in {CONFIG}); translora moves "
            "LoRA, DoRA and prompt-tuning adapters"
        )
    if not (folder / WEIGHTS).is_file():
        pickled = (
            " (it holds adapter_model.bin, a pickle translora never loads: save it again with peft's "
            "save_pretrained(..., safe_serialization=True))"
            if (folder / "adapter_model.bin").exists()
            else ""
        )
        raise ArtifactError(f"{folder} has no {WEIGHTS}{pickled}")
    if peft_type == "PROMPT_TUNING":
        return AdapterFacts(
            kind="prompt_tuning",
            base_model=config.get("base_model_name_or_path"),
            num_virtual_tokens=config.get("num_virtual_tokens"),
        )
    modules = config.get("target_modules")
    return AdapterFacts(
        kind="dora" if config.get("use_dora") else "lora",
        base_model=config.get("base_model_name_or_path"),
        r=config.get("r"),
        target_modules=sorted(modules) if isinstance(modules, list) else None,
    )


def check_against_base(folder: Path, base: ModelSpec, allow_other_base_name: bool = False) -> AdapterFacts:
    """The adapter fits `base`: the base it names is this one (unless the operator allows another name), and every
    tensor sits on a module the base has, with that module's shape."""
    facts = inspect(folder)
    if facts.base_model and not allow_other_base_name and not _same_base_name(facts.base_model, base):
        raise AdapterMismatchError(
            f"adapter {folder} was trained on {facts.base_model!r} ({CONFIG}), not on the source model "
            f"{base.id}; set source_model.id to its base, or trust.allow_base_mismatch=true if it is the same "
            "model under another name (module names and shapes are still checked)"
        )
    _check_tensors(folder, base)
    return facts


def content_sha256(folder: Path) -> str:
    """One sha256 over the adapter's files, as imported (recorded in the bundle and the model card)."""
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + hashlib.sha256((folder / name).read_bytes()).digest())
    return digest.hexdigest()


def _same_base_name(named: str, base: ModelSpec) -> bool:
    """Whether the adapter's base_model_name_or_path names `base`: its id, its folder, or its hub name, compared
    by full text or by the last path component (a folder copied elsewhere keeps its name)."""
    from translora.model_card import base_name
    from translora.models import resolve

    known = {base.id, str(resolve(base)), base_name(base)}
    if base.id.startswith("embedded:"):
        known.add(base.id.split(":", 1)[1])
    last = lambda text: text.rstrip("/").rsplit("/", 1)[-1].lower()  # noqa: E731
    return named in known or last(named) in {last(k) for k in known}


def _check_tensors(folder: Path, base: ModelSpec) -> None:
    from safetensors import safe_open

    shapes = _module_shapes(base)
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as weights:
            tensors = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        raise ArtifactError(
            f"{folder / WEIGHTS} is not a readable safetensors file ({str(exc)[:200]}); copy the adapter again"
        ) from None
    for key, shape in tensors.items():
        problem = _tensor_problem(key, shape, shapes)
        if problem:
            raise AdapterMismatchError(
                f"adapter {folder} does not fit the source model {base.id}: {problem}; use "
                "the base model the adapter was trained on"
            )


def _tensor_problem(key: str, shape: tuple[int, ...], shapes: dict[str, tuple[int, int] | None]) -> str | None:
    """Why tensor `key` cannot sit on the base (None: it fits). `shapes` maps module paths to (in, out) features of
    linear layers (None for other modules), with "<hidden>" holding the embedding width."""
    if key == "prompt_embeddings":
        hidden = shapes["<hidden>"]
        return (
            None
            if hidden and shape[-1] == hidden[1]
            else f"its prompt embeddings are {shape[-1]} wide, the model's hidden size is {hidden and hidden[1]}"
        )
    part = next((p for p in LORA_PARTS if key.endswith(p)), None)
    if part is None or not key.startswith(PEFT_PREFIX):
        return f"it holds tensor {key!r}, which is not a LoRA, DoRA or prompt-tuning weight translora can move"
    module = key[len(PEFT_PREFIX) : -len(part)]
    if module not in shapes:
        return f"it adapts module {module!r}, which the model does not have"
    features = shapes[module]
    if features is None:
        return None  # not a linear layer: peft's own loading checks it
    n_in, n_out = features
    expected = {".lora_A.weight": (None, n_in), ".lora_B.weight": (n_out, None), ".lora_magnitude_vector": (n_out,)}
    want = expected[part]
    if len(shape) != len(want) or any(w is not None and w != s for w, s in zip(want, shape)):
        return f"{module}{part} has shape {list(shape)}, but that layer maps {n_in} to {n_out} features"
    return None


def _module_shapes(base: ModelSpec) -> dict[str, tuple[int, int] | None]:
    """The base's module paths with their linear layers' (in, out) features, from its config alone: the model is
    built on the meta device, so no weights are read."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from translora.models import resolve

    config = AutoConfig.from_pretrained(resolve(base), revision=base.revision, trust_remote_code=base.trust_remote_code)
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=base.trust_remote_code)
    shapes: dict[str, tuple[int, int] | None] = {
        name: (m.in_features, m.out_features) if isinstance(m, torch.nn.Linear) else None
        for name, m in model.named_modules()
    }
    embeddings = model.get_input_embeddings()
    shapes["<hidden>"] = (0, embeddings.embedding_dim) if embeddings is not None else None
    return shapes
