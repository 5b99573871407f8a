"""A transfer in a fleet upgrade is keyed as the same transfer run alone: the URLs of the shared vLLM servers
(generation.vllm.servers) never reach a store key, the rest of the generation section does."""

from translora import stages
from translora.config import GenerationSpec, VLLMSpec, load_config


def _on(vllm: VLLMSpec):
    config = load_config("cpu")
    return config.model_copy(update={"generation": GenerationSpec(backend="vllm", vllm=vllm)})


def test_server_urls_do_not_change_what_a_generating_stage_keys_on():
    alone = _on(VLLMSpec())
    shared = _on(VLLMSpec(servers={"embedded:gemma3-270m": "http://127.0.0.1:41234"}))
    other_port = _on(VLLMSpec(servers={"embedded:gemma3-270m": "http://127.0.0.1:52345"}))
    for stage in (stages.FILTER, stages.LABEL):
        assert shared.section(*stage.sections) == alone.section(*stage.sections) == other_port.section(*stage.sections)
    assert _on(VLLMSpec(max_model_len=512)).section("generation") != alone.section("generation")
    assert shared.generation.vllm.servers  # the config itself keeps them: stages still use them
