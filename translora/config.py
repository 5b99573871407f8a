"""Pydantic configuration for every stage. YAML in, validation errors name the field.

A config is built from a profile (`cpu` or `paper`, shipped in translora/configs/), then an optional user YAML file
deep-merged over it, then `section.field=value` overrides from the command line.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from translora.errors import ConfigError

PROFILES = ("cpu", "gpu", "paper")  # the first is the default


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Dtype = Literal["float32", "bfloat16", "float16"]


class ModelSpec(Section):
    """A base model: `embedded:<name>` (shipped in a PyPI package), a local folder, or a hub id."""

    id: str = Field(
        description="embedded:<name> (smollm2-135m-instruct, gemma3-270m), a local transformers folder, or a hub id"
    )
    revision: str | None = Field(None, description="hub revision to load (a commit sha pins it); local folders: unused")
    trust_remote_code: bool = Field(
        False,
        description="let transformers run the model's own code; a bundle can "
        "never turn this on (see trust.remote_code_models)",
    )
    dtype: Dtype = Field("float32", description="precision the model is loaded in for training and evaluation")


class TaskSpec(Section):
    """The task and its split: train (stage 1 only) and a held-out test split (evaluation only)."""

    name: str = Field(
        "bbh:boolean_expressions",
        description=(
            "bbh:<task> (BIG-Bench Hard, vendored; boolean_expressions is generated), mmlu:<subject> or mmlu:all, "
            "gsm8k, "
            "humaneval, file:<task.yaml> (your task file: kind, metric, data in jsonl/csv/parquet/datasets folder) or "
            'jsonl:<path> (one {"input", "target"} object a line)'
        ),
    )
    n_train: int = Field(
        200,
        ge=10,
        description="train examples: the source adapter's data and the discriminator's "
        "real inputs; the first n_seeds go into the bundle",
    )
    n_test: int = Field(100, ge=1, description="held-out test examples for evaluation; never seen by stage 2")
    n_seeds: int = Field(5, ge=1, le=20, description="train inputs (inputs only) the bundle keeps as synthesis seeds")


class AdapterSpec(Section):
    """A PEFT adapter to train: LoRA, DoRA or prompt tuning."""

    kind: Literal["lora", "dora", "prompt_tuning"] = Field("lora", description="the PEFT method")
    r: int = Field(8, ge=1, description="LoRA / DoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA / DoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA / DoRA dropout")
    target_modules: list[str] = Field(["q_proj", "v_proj"], description="module names the LoRA / DoRA adapts")
    num_virtual_tokens: int = Field(20, ge=1, description="prompt tuning only: learnt tokens put in front")


class ImportSpec(Section):
    """An existing peft adapter for the source model (LoRA, DoRA or prompt tuning, trained outside translora):
    stage 1 imports it instead of training one, and trains only the discriminator."""

    id: str = Field(description="a local adapter folder (what peft's save_pretrained wrote) or a hub id")
    revision: str | None = Field(None, description="the hub revision (a commit sha pins it); local folders: unused")


class TrainSpec(Section):
    """AdamW with a linear schedule; loss on completion tokens only."""

    epochs: float = Field(1, gt=0, description="passes over the training data (max_steps overrides)")
    batch_size: int = Field(
        8,
        ge=1,
        description="examples per optimizer step (halved into micro-batches on out of memory, same effective batch)",
    )
    lr: float = Field(2e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with a linear learning-rate warm-up")
    max_length: int = Field(256, ge=16, description="tokens per example; the prompt is cut from the left")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; None: from epochs")
    seed: int = Field(0, description="adapter initialization and data order")
    checkpoint_every_s: float = Field(
        60,
        ge=0,
        description="seconds between training checkpoints (a kill costs at most this much training); 0: every step",
    )
    base_dtype: Dtype | None = Field(
        None,
        description=(
            "precision of the frozen base weights while training (the adapter's own weights stay float32, peft's "
            "default); None: the model's dtype"
        ),
    )

    def base(self, model: ModelSpec) -> ModelSpec:
        """`model` as training loads it (in base_dtype where set)."""
        return model.model_copy(update={"dtype": self.base_dtype}) if self.base_dtype else model

    aux_confidence: float = Field(
        0.0,
        ge=0,
        lt=1,
        description=(
            "weak-to-strong auxiliary confidence loss (Burns et al. 2023), soft targets only: the answer token's "
            "target "
            "becomes (1 - c) * the teacher's distribution + c * the student's own class-balanced answer; 0: off"
        ),
    )
    aux_warmup: float = Field(
        0.2, gt=0, le=1, description="share of steps over which aux_confidence rises to its value"
    )


class SynthesisSpec(Section):
    """Numbered-list prompting: the seeds as `1. …` … `5. …`, then `6.` left open."""

    max_new_tokens: int = Field(
        64, ge=4, description="cap on one synthetic input's tokens (an item also stops at 1.5x the longest seed)"
    )
    temperature: float = Field(1.0, ge=0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus sampling (1.0 skips the vocabulary sort)")
    batch_size: int = Field(16, ge=1, description="prompts per generation batch")
    without_replacement: bool = Field(
        False,
        description=(
            "hf backend: each item is drawn from its prompt's distribution without the items drawn from it before, "
            "over a fixed set of prompts (fewer draws for as many distinct items; on the demo it cost accuracy, "
            "bench/README.md); vLLM draws with replacement"
        ),
    )
    completions_per_prompt: int = Field(
        1,
        ge=1,
        description=(
            "completions sampled from each shuffled seed prompt; the hf backend reads a repeated prompt once per batch"
        ),
    )


class DiscriminatorSpec(Section):
    """The filter's judge: a LoRA on the discriminator base answering yes (real input) or no (synthetic)."""

    n_negatives: int = Field(100, ge=2, description="'no' examples it trains on")
    corrupted_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "share of the negatives made by corrupting real train inputs (truncated, shuffled, prose spliced in, "
            "chatter around them); the rest are the source model's own samples (the paper's negatives)"
        ),
    )
    min_real_accept: float = Field(
        0.9,
        ge=0,
        le=1,
        description=(
            "threshold calibration: the threshold on log p(yes) - log p(no) rejects the most held-out synthetic inputs "
            "while accepting at least this share of held-out real ones; 0: threshold 0, the paper's p(yes) > p(no)"
        ),
    )
    adapter: AdapterSpec = Field(AdapterSpec(), description="the discriminator's adapter")
    train: TrainSpec = Field(TrainSpec(), description="the discriminator's training")


class FilterSpec(Section):
    """Stage 2's synthesize-and-filter loop on the target model."""

    mode: Literal["discriminator", "none", "seeds_only", "random_text"] = Field(
        "discriminator",
        description=(
            "discriminator: Trans-LoRA; the paper's ablations: none (every synthetic input), seeds_only (the bundle's "
            "seed inputs alone), random_text (random word sequences)"
        ),
    )
    n_keep: int = Field(64, ge=1, description="synthetic inputs to keep (the distillation data)")
    max_generated: int = Field(512, ge=1, description="generation budget: give up after this many candidates")
    batch_size: int = Field(16, ge=1, description="candidates generated and judged per batch")


class LabelSpec(Section):
    """How the teacher (source model + source adapter) labels the kept inputs, and how the student learns them."""

    mode: Literal["choices", "generate"] = Field(
        "choices",
        description=(
            "choices: on multiple-choice tasks the teacher scores each answer choice as lm-eval does and the best one "
            "is "
            "the label, with its probability kept; generate: greedy completion (free-form tasks always use it)"
        ),
    )
    min_confidence: float = Field(0.0, ge=0, le=1, description="drop labels the teacher is less sure of")
    balance: bool = Field(False, description="down-sample the majority answers to the rarest one's count")
    targets: Literal["hard", "weighted", "soft"] = Field(
        "hard",
        description=(
            "how the student learns a choice label: hard (the teacher's answer), weighted (the answer, its loss scaled "
            "by the teacher's probability above chance) or soft (the teacher's distribution over the answers)"
        ),
    )
    temperature: float = Field(
        1.0,
        gt=0,
        description=(
            "soft targets are the teacher's p^(1/temperature), renormalized: below 1 sharpens them toward its answer"
        ),
    )
    trust: Literal["teacher", "lift"] = Field(
        "lift",
        description=(
            "whose answers the student learns on a multiple-choice task: teacher (always the teacher's), or lift "
            "(the target base also answers the kept inputs, and the teacher is trusted only where its lift is above "
            "the target's, the whole 95% interval: how far each input moves a model toward its answer beyond its "
            "average leaning to that answer, so a model sure of one answer whatever the input counts for nothing; "
            "otherwise the student learns the target's answers or keeps its base, so a weak teacher never drags "
            "a stronger target down; data-free, no real label is read)"
        ),
    )

    @field_validator("trust", mode="before")
    @classmethod
    def _renamed_trust(cls, value: object) -> object:
        if value == "confidence":
            raise ValueError(
                "label.trust=confidence (mean confidence) was replaced by label.trust=lift, which picked the more "
                "accurate labeller where mean confidence did not (bench/results/trust.md): set label.trust: lift"
            )
        return value

    when_target_trusted: Literal["keep_base", "learn_its_answers"] = Field(
        "keep_base",
        description=(
            "what the student does when label.trust picks the target: keep_base (a LoRA or DoRA adapter with a zero "
            "update, so the transfer is the target base exactly: the student trained on a stronger base's own "
            "answers scored below it) or learn_its_answers (distil the target's own answers; prompt tuning, which "
            "has no zero update, always does this)"
        ),
    )
    max_new_tokens: int = Field(16, ge=1, description="cap on a generated label's tokens (free-form tasks)")
    batch_size: int = Field(16, ge=1, description="inputs the teacher labels per batch")


class EvalSpec(Section):
    """Evaluation on the held-out test split with lm-eval."""

    batch_size: int = Field(16, ge=1, description="lm-eval batch size")
    dtype: Dtype | None = Field(
        None,
        description=(
            "the precision lm-eval loads every evaluated model in (the output layer scores in float32 whatever it "
            "is); None: each model's own"
        ),
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N test examples (None: all)")
    oracle: bool = Field(
        True,
        description=(
            "also train and score the oracle: the target plus an adapter trained on filter.n_keep real train examples "
            "with the distillation settings; it only measures what the target can reach, stage 2 never sees it"
        ),
    )


MANAGED_SERVER_FLAGS = ("--host", "--port", "--api-key", "--uds")


class VLLMSpec(Section):
    """Where vLLM servers come from: running ones named per model (`servers`), else one started per stage."""

    servers: dict[str, str] = Field(
        {},
        description=(
            "model id (as in source_model.id / target_model.id) -> base URL of a running vLLM server for that model; "
            "adapters are loaded into it at run time (it needs --enable-lora and "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
            "and must see the adapter's path)"
        ),
    )
    command: list[str] | None = Field(
        None,
        description=(
            "how to start a managed server; None: python -m vllm.entrypoints.openai.api_server with "
            "$TRANSLORA_VLLM_PYTHON, else .venv-vllm/bin/python (scripts/setup-vllm.sh); translora appends --model, "
            "--port and the rest"
        ),
    )
    extra_args: list[str] = Field([], description="more arguments for a managed server")
    startup_timeout: float = Field(300, gt=0, description="seconds a managed server may take to answer")
    max_model_len: int = Field(2048, ge=64, description="vLLM --max-model-len")
    cpu_kvcache_gib: int = Field(
        1,
        ge=1,
        description="VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build (without it it "
        "asks for 90% of RAM); the GPU build ignores it",
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "vLLM --gpu-memory-utilization: the share of GPU memory a server may take (weights + KV cache); None: "
            "vLLM's default (0.9). Lower it when training shares the GPU with a server"
        ),
    )
    enforce_eager: bool = Field(
        False,
        description="vLLM --enforce-eager: CUDA graphs and compilation off (the cpu "
        "profile sets it: on CPU the warm-up costs ~40 s and gains nothing)",
    )
    request_timeout: float = Field(
        600,
        gt=0,
        description=("seconds a server may go without answering one request before the stage fails, naming what hung"),
    )

    @field_validator("command", "extra_args")
    @classmethod
    def _no_listen_or_key_flags(cls, args: list[str] | None) -> list[str] | None:
        # A managed server listens on loopback with a random key translora chooses; no setting may widen that.
        for arg in args or []:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_SERVER_FLAGS:
                raise ValueError(
                    f"{flag} is set by translora for the servers it starts (loopback, a fresh random "
                    f"API key); remove it, or run the server yourself and name it in "
                    "generation.vllm.servers"
                )
        return args


class GenerationSpec(Section):
    """The generation backend for synthesis and free-form labels."""

    backend: Literal["hf", "vllm"] = Field(
        "hf", description="hf: transformers in this process; vllm: vLLM's OpenAI-compatible server"
    )
    vllm: VLLMSpec = Field(VLLMSpec(), description="vLLM servers")
    dtype: Dtype | None = Field(
        None,
        description=(
            "the precision generation loads a model in (training and evaluation keep the model's own); None: the "
            "model's"
        ),
    )

    def as_loaded(self, spec: ModelSpec) -> ModelSpec:
        """`spec` as generation loads it."""
        return spec.model_copy(update={"dtype": self.dtype}) if self.dtype else spec


KEY_KINDS = ("hmac:", "ed25519:", "ed25519-pub:")


class TrustSpec(Section):
    """What only the operator decides, never a bundle: remote code, bundle signatures, base-model checks."""

    remote_code_models: list[str] = Field(
        [],
        description=(
            "model ids whose own code may run (transformers trust_remote_code) when a bundle names them as teacher or "
            "discriminator base; a bundle's own trust_remote_code flag is always ignored"
        ),
    )
    signing_key: str | None = Field(
        None, description="sign the bundles this platform writes: hmac:SECRET_FILE or ed25519:PRIVATE.pem"
    )
    trusted_keys: list[str] = Field(
        [],
        description=(
            "when any are given, a bundle must be signed by one of them: hmac:SECRET_FILE or ed25519-pub:PUBLIC.pem"
        ),
    )
    allow_base_mismatch: bool = Field(
        False,
        description=(
            "use a bundle whose teacher or discriminator base here differs from the one it was made on, or import an "
            "adapter that names another base (its module names and shapes are still checked)"
        ),
    )

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, key: str | None) -> str | None:
        if key is not None and not key.startswith(("hmac:", "ed25519:")):
            raise ValueError(f"{key!r} is not hmac:SECRET_FILE or ed25519:PRIVATE.pem")
        return key

    @field_validator("trusted_keys")
    @classmethod
    def _trusted_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if not key.startswith(KEY_KINDS):
                raise ValueError(f"{key!r} is not hmac:SECRET_FILE or ed25519-pub:PUBLIC.pem")
        return keys


class Config(Section):
    """The whole config. Built from a dict, it starts from its profile (`cpu` unless `profile` says otherwise) and
    the dict overrides it section by section, so a partial dict (Prefect deployment parameters, a form in the
    Prefect UI) is a full config, validated once."""

    profile: Literal[PROFILES] = Field(  # type: ignore[valid-type]  # a Literal of the declared profile names
        PROFILES[0],
        description=(
            "base settings every other field overrides: cpu (sized for 2 cores), gpu (one CUDA GPU, vLLM) or paper "
            "(the "
            "paper's settings and filter rules, GPUs)"
        ),
    )
    seed: int = Field(0, description="the task split, synthesis sampling, negatives and label selection")
    source_model: ModelSpec = Field(
        ModelSpec(id="embedded:smollm2-135m-instruct"),
        description="the base the source adapter is for (the teacher's base)",
    )
    target_model: ModelSpec = Field(ModelSpec(id="embedded:gemma3-270m"), description="the new base to transfer to")
    discriminator_model: ModelSpec | None = Field(None, description="the discriminator's base; None: the source model")
    task: TaskSpec = Field(TaskSpec(), description="the task and its split")
    import_adapter: ImportSpec | None = Field(
        None,
        description=(
            "an existing peft adapter to import instead of training source_adapter (translora finetune "
            "--source-adapter)"
        ),
    )
    source_adapter: AdapterSpec = Field(AdapterSpec(), description="the source adapter stage 1 trains")
    source_train: TrainSpec = Field(TrainSpec(), description="the source adapter's training")
    synthesis: SynthesisSpec = Field(SynthesisSpec(), description="synthetic inputs from the seeds")
    discriminator: DiscriminatorSpec = Field(DiscriminatorSpec(), description="the filter's discriminator")
    filter: FilterSpec = Field(FilterSpec(), description="stage 2's synthesize-and-filter loop")
    label: LabelSpec = Field(LabelSpec(), description="the teacher's labels and how the student learns them")
    target_adapter: AdapterSpec = Field(AdapterSpec(), description="the adapter stage 2 trains on the target")
    distill_train: TrainSpec = Field(TrainSpec(), description="the distillation (and the oracle's) training")
    eval: EvalSpec = Field(EvalSpec(), description="evaluation on the held-out test split")
    generation: GenerationSpec = Field(GenerationSpec(), description="the generation backend")
    trust: TrustSpec = Field(TrustSpec(), description="what only the operator decides: remote code, signatures")

    @model_validator(mode="before")
    @classmethod
    def _over_profile(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return _deep_merge(profile_dict(data.get("profile", PROFILES[0])), data)
        return data

    @model_validator(mode="after")
    def _check(self) -> "Config":
        if self.filter.max_generated < self.filter.n_keep:
            raise ValueError("filter.max_generated must be at least filter.n_keep")
        return self

    def with_target(self, model_id: str) -> "Config":
        """This config moved to another target model: the id only, so the target's dtype, revision and trust
        settings stay as configured (the CLI's --target and the upgrade trigger's payload name just a model)."""
        return self.model_copy(update={"target_model": self.target_model.model_copy(update={"id": model_id})})

    @property
    def discriminator_base(self) -> ModelSpec:
        return self.discriminator_model or self.source_model

    def section(self, *names: str) -> dict[str, Any]:
        """The parts of the config one stage reads (its store key uses exactly these): whole sections, or single
        fields as `section.field` where a stage reads one field only. Which running vLLM server serves a model
        (generation.vllm.servers, checked to serve that very model) is where, not what: a shared server's port
        must not change the key."""
        dumped = self.model_dump(mode="json", exclude={"generation": {"vllm": {"servers"}}})
        out = {}
        for name in names:
            value = dumped
            for part in name.split("."):
                value = value[part]
            out[name] = value
        return out


def _deep_merge(base: dict, extra: dict, where: str = "") -> dict:
    """`extra` over `base`, section by section. Fields set under what is a plain value in `base` (`filter=3`, then
    `filter.n_keep=2`) are an error, not a silent restart of the section from its defaults."""
    out = dict(base)
    for key, value in extra.items():
        path, old = f"{where}{key}", out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _deep_merge(old, value, f"{path}.")
        elif isinstance(value, dict) and old is not None:
            raise ConfigError(
                f"cannot set fields of {path}: it is {old!r}, a plain value, not a section; remove "
                f"the setting that made {path} a plain value"
            )
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> dict:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.field=value (e.g. filter.n_keep=32)")
    dotted, raw = text.split("=", 1)
    parts = [part.strip() for part in dotted.split(".")]
    if not all(parts):
        raise ConfigError(
            f"override {text!r} has an empty name before '='; write section.field=value (e.g. filter.n_keep=32)"
        )
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:  # its own message spans several lines; one line names the problem
        problem = getattr(exc, "problem", None) or "cannot parse it"
        raise ConfigError(
            f"override {text!r}: the value is not valid YAML ({problem}); give a number, true/false, "
            "a list like [a, b], or a string in quotes"
        ) from None
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def profile_dict(name: str) -> dict:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    text = resources.files("translora").joinpath("configs", f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def load_config(
    profile: str | None = None, path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """profile <- the YAML file at `path` <- `section.field=value` overrides. The profile is decided first (the
    file's or an override's `profile`, else `profile`, else cpu) and merged once, so `profile: paper` in a file
    gets the paper profile's values, not the cpu profile's under the paper label."""
    user: dict = _read_config_file(Path(path)) if path is not None else {}
    for item in overrides:
        user = _deep_merge(user, _parse_override(item))
    chosen = user.get("profile", profile) or PROFILES[0]
    if profile is not None and chosen != profile:
        raise ConfigError(f"--profile {profile} conflicts with profile: {chosen} in the config; give one of them")
    # pydantic would say only "Extra inputs are not permitted"; a misspelt section deserves a suggestion
    import difflib

    for key in user:
        if key not in Config.model_fields:
            close = difflib.get_close_matches(key, Config.model_fields, n=1)
            raise ConfigError(
                f"unknown config section {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; known sections: {', '.join(Config.model_fields)}"
            )
    return validate_config(_deep_merge(profile_dict(chosen), user | {"profile": chosen}))


def _read_config_file(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; give an existing YAML file with --config")
    if path.is_dir():
        raise ConfigError(f"config path {path} is a directory; give the YAML file itself (--config FILE)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}); check its permissions") from None
    try:
        user = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # its own message spans several lines; one line names the problem
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}; fix the file there"
        ) from None
    if user is None:  # an empty file changes nothing
        return {}
    if not isinstance(user, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (e.g. `filter: {{n_keep: 32}}`), "
            f"not a {type(user).__name__}"
        )
    return user


def validate_config(data: dict) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config: {problems}") from None


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def explain_config(config: Config) -> str:
    """Every setting with its value and what it does (`translora config --explain`), from the fields' descriptions,
    which the Prefect UI's run form shows too."""
    lines: list[str] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value, path = getattr(model, name), f"{prefix}{name}"
            if isinstance(value, BaseModel):
                lines.append(f"{path}: {field.description or ''}")
                walk(value, path + ".")
            else:
                shown = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
                lines.append(f"{path} = {shown}  # {field.description or ''}")

    walk(config, "")
    return "\n".join(lines) + "\n"
