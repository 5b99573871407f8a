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

PROFILES = ("cpu", "paper")  # the first is the default


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Dtype = Literal["float32", "bfloat16", "float16"]


class ModelSpec(Section):
    """A base model: `embedded:<name>` (shipped in a PyPI package), a local folder, or a hub id."""

    id: str
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: Dtype = "float32"


class TaskSpec(Section):
    """`bbh:<task>` (boolean_expressions is generated; the others are read from the BIG-bench sdist) or
    `jsonl:<path>` (one {"input", "target"} object a line)."""

    name: str = "bbh:boolean_expressions"
    n_train: int = Field(200, ge=10)
    n_test: int = Field(100, ge=1)
    n_seeds: int = Field(5, ge=1, le=20)


class AdapterSpec(Section):
    kind: Literal["lora", "dora", "prompt_tuning"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    num_virtual_tokens: int = Field(20, ge=1)  # prompt tuning only


class ImportSpec(Section):
    """An existing peft adapter for the source model (LoRA, DoRA or prompt tuning, trained outside translora):
    stage 1 imports it instead of training one, and trains only the discriminator."""

    id: str = Field(description="a local adapter folder (what peft's save_pretrained wrote) or a hub id")
    revision: str | None = Field(None, description="the hub revision (a commit sha pins it); local folders: unused")


class TrainSpec(Section):
    """AdamW with a linear schedule; loss on completion tokens only."""

    epochs: float = Field(1, gt=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    max_length: int = Field(256, ge=16)
    max_steps: int | None = Field(None, ge=1)
    seed: int = 0
    checkpoint_every_s: float = Field(60, ge=0)  # a kill costs at most this much training; 0: every step
    # Weak-to-strong auxiliary confidence loss (Burns et al. 2023), for soft targets over answer choices: the answer
    # token's target becomes (1 - c) * the teacher's distribution + c * the student's own hardened answer, c rising
    # linearly to this value over the first aux_warmup of the steps. 0: off (plain distillation).
    aux_confidence: float = Field(0.0, ge=0, lt=1)
    aux_warmup: float = Field(0.2, gt=0, le=1)


class SynthesisSpec(Section):
    """Numbered-list prompting: the seeds as `1. …` … `5. …`, then `6.` left open."""

    max_new_tokens: int = Field(64, ge=4)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    batch_size: int = Field(16, ge=1)
    # Completions sampled from each shuffled prompt. The hf backend reads a repeated prompt once per batch; on 2
    # cores reading the 12-seed prompt cost more than writing the item (bench/results/synthesis.md).
    completions_per_prompt: int = Field(1, ge=1)


class DiscriminatorSpec(Section):
    n_negatives: int = Field(100, ge=2)
    # Share of the negatives made by corrupting real train inputs (truncated, shuffled, prose spliced in, chatter
    # around them): what a weaker target writes, which the source model's own samples rarely show.
    corrupted_fraction: float = Field(0.5, ge=0, le=1)
    # The filter's threshold on log p(yes) - log p(no): the one that rejects the most held-out synthetic inputs
    # while accepting at least this share of held-out real ones. 0 disables calibration (threshold 0).
    min_real_accept: float = Field(0.9, ge=0, le=1)
    adapter: AdapterSpec = AdapterSpec()
    train: TrainSpec = TrainSpec()


class FilterSpec(Section):
    # discriminator: Trans-LoRA. The paper's ablations: none (every synthetic input), seeds_only (the bundle's
    # seed inputs alone), random_text (random word sequences instead of synthetic inputs).
    mode: Literal["discriminator", "none", "seeds_only", "random_text"] = "discriminator"
    n_keep: int = Field(64, ge=1)
    max_generated: int = Field(512, ge=1)  # generation budget: give up after this many candidates
    batch_size: int = Field(16, ge=1)


class LabelSpec(Section):
    # choices: on multiple-choice tasks the teacher scores each answer choice as lm-eval does and the best one is
    # the label (never a non-answer), with its probability kept; generate: greedy completion (free-form tasks
    # always use it).
    mode: Literal["choices", "generate"] = "choices"
    min_confidence: float = Field(0.0, ge=0, le=1)  # drop labels the teacher is less sure of
    balance: bool = False  # down-sample the majority answers to the rarest one's count
    # How the student learns a choice label: hard (the teacher's answer), weighted (the answer, its loss scaled by
    # the teacher's probability above chance) or soft (the teacher's distribution over the answers).
    targets: Literal["hard", "weighted", "soft"] = "hard"
    # Soft targets are the teacher's probabilities p^(1 / temperature), renormalized: below 1 sharpens them toward
    # its answer (0 would be hard labels), so the student copies less of the teacher's doubt.
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(16, ge=1)
    batch_size: int = Field(16, ge=1)


class EvalSpec(Section):
    batch_size: int = Field(16, ge=1)
    limit: int | None = Field(None, ge=1)
    # The oracle row: the target plus an adapter trained on filter.n_keep real train examples with the distillation
    # settings. It only measures what the target can reach; stage 2 never sees it.
    oracle: bool = True


MANAGED_SERVER_FLAGS = ("--host", "--port", "--api-key", "--uds")


class VLLMSpec(Section):
    """Where vLLM servers come from: running ones named per model (`servers`), else one started per stage."""

    # model id (as in source_model.id / target_model.id) -> base URL of a running vLLM server for that model.
    # Adapters are loaded into it at run time (the server needs --enable-lora and
    # VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and must see the adapter's path).
    servers: dict[str, str] = {}
    # None: `python -m vllm.entrypoints.openai.api_server` with $TRANSLORA_VLLM_PYTHON, else the repository's
    # .venv-vllm/bin/python (scripts/setup-vllm.sh makes it); translora appends --model, --port and the rest
    command: list[str] | None = None
    extra_args: list[str] = []
    startup_timeout: float = Field(300, gt=0)
    max_model_len: int = Field(2048, ge=64)
    cpu_kvcache_gib: int = Field(1, ge=1)  # VLLM_CPU_KVCACHE_SPACE; without it vLLM asks for 90% of RAM
    enforce_eager: bool = True  # CUDA-graph / compile warm-up costs ~40 s and gains nothing on CPU
    # Seconds a server may go without answering one request before the stage fails, naming what hung.
    request_timeout: float = Field(600, gt=0)

    @field_validator("command", "extra_args")
    @classmethod
    def _no_listen_or_key_flags(cls, args: list[str] | None) -> list[str] | None:
        # A managed server listens on loopback with a random key translora chooses; no setting may widen that.
        for arg in args or []:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_SERVER_FLAGS:
                raise ValueError(f"{flag} is set by translora for the servers it starts (loopback, a fresh random "
                                 f"API key); remove it, or run the server yourself and name it in "
                                 "generation.vllm.servers")
        return args


class GenerationSpec(Section):
    backend: Literal["hf", "vllm"] = "hf"
    vllm: VLLMSpec = VLLMSpec()
    # the precision generation loads a model in (training and evaluation keep the model's own); None: the model's
    dtype: Dtype | None = None

    def as_loaded(self, spec: ModelSpec) -> ModelSpec:
        """`spec` as generation loads it."""
        return spec.model_copy(update={"dtype": self.dtype}) if self.dtype else spec


KEY_KINDS = ("hmac:", "ed25519:", "ed25519-pub:")


class TrustSpec(Section):
    """What only the operator decides, never a bundle: remote code, bundle signatures, base-model checks."""

    # model ids whose own code may run (transformers trust_remote_code) when a bundle names them as teacher or
    # discriminator base; a bundle's own trust_remote_code flag is always ignored
    remote_code_models: list[str] = []
    # sign the bundles this platform writes: hmac:SECRET_FILE or ed25519:PRIVATE.pem
    signing_key: str | None = None
    # when any are given, a bundle must be signed by one of them: hmac:SECRET_FILE or ed25519-pub:PUBLIC.pem
    trusted_keys: list[str] = []
    # use a bundle even when its teacher or discriminator base here differs from the one it was made on
    allow_base_mismatch: bool = False

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

    profile: Literal[PROFILES] = PROFILES[0]  # type: ignore[valid-type]
    seed: int = 0
    source_model: ModelSpec = ModelSpec(id="embedded:smollm2-135m-instruct")
    target_model: ModelSpec = ModelSpec(id="embedded:gemma3-270m")
    discriminator_model: ModelSpec | None = None  # None: the source model
    task: TaskSpec = TaskSpec()
    import_adapter: ImportSpec | None = None  # set: stage 1 imports this adapter instead of training source_adapter
    source_adapter: AdapterSpec = AdapterSpec()
    source_train: TrainSpec = TrainSpec()
    synthesis: SynthesisSpec = SynthesisSpec()
    discriminator: DiscriminatorSpec = DiscriminatorSpec()
    filter: FilterSpec = FilterSpec()
    label: LabelSpec = LabelSpec()
    target_adapter: AdapterSpec = AdapterSpec()
    distill_train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    generation: GenerationSpec = GenerationSpec()
    trust: TrustSpec = TrustSpec()

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
            raise ConfigError(f"cannot set fields of {path}: it is {old!r}, a plain value, not a section; remove "
                              f"the setting that made {path} a plain value")
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> dict:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.field=value (e.g. filter.n_keep=32)")
    dotted, raw = text.split("=", 1)
    parts = [part.strip() for part in dotted.split(".")]
    if not all(parts):
        raise ConfigError(f"override {text!r} has an empty name before '='; write section.field=value "
                          "(e.g. filter.n_keep=32)")
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as exc:  # its own message spans several lines; one line names the problem
        problem = getattr(exc, "problem", None) or "cannot parse it"
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem}); give a number, true/false, "
                          "a list like [a, b], or a string in quotes") from None
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
            raise ConfigError(f"unknown config section {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; known sections: {', '.join(Config.model_fields)}")
    return validate_config(_deep_merge(profile_dict(chosen), user | {"profile": chosen}))


def _read_config_file(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; give an existing YAML file with --config")
    if path.is_dir():
        raise ConfigError(f"config path {path} is a directory; give the YAML file itself (--config FILE)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") \
            from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}); check its permissions") from None
    try:
        user = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # its own message spans several lines; one line names the problem
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: "
                          f"{getattr(exc, 'problem', None) or exc}; fix the file there") from None
    if user is None:  # an empty file changes nothing
        return {}
    if not isinstance(user, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (e.g. `filter: {{n_keep: 32}}`), "
                          f"not a {type(user).__name__}")
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
