import pytest

from translora.config import load_config
from translora.errors import ConfigError


def test_profiles_load_and_differ():
    cpu, paper = load_config("cpu"), load_config("paper")
    assert cpu.source_model.id == "embedded:smollm2-135m-instruct"
    assert cpu.target_model.id == "embedded:gemma3-270m"
    assert paper.filter.n_keep == 250 and paper.source_train.epochs == 20 and paper.source_train.batch_size == 8
    assert paper.source_adapter.target_modules == ["q_proj", "v_proj"]
    assert cpu.filter.n_keep < paper.filter.n_keep


def test_yaml_file_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("filter:\n  n_keep: 7\ntask:\n  name: bbh:navigate\n")
    cfg = load_config("cpu", path, ["filter.max_generated=70", "source_adapter.kind=dora"])
    assert cfg.filter.n_keep == 7 and cfg.filter.max_generated == 70
    assert cfg.filter.batch_size == load_config("cpu").filter.batch_size  # deep merge keeps siblings
    assert cfg.task.name == "bbh:navigate" and cfg.source_adapter.kind == "dora"


@pytest.mark.parametrize(
    "override, field",
    [
        ("filter.n_keep=abc", "filter.n_keep"),
        ("source_adapter.kind=qlora", "source_adapter.kind"),
        ("filter.n_kep=3", "filter.n_kep"),
        ("filter.max_generated=2", "max_generated"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("cpu", overrides=[override])


def test_bad_inputs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config("tpu")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("cpu", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("filter: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("cpu", bad)
    with pytest.raises(ConfigError, match="section.field=value"):
        load_config("cpu", overrides=["filter"])


def test_section_is_the_cache_relevant_part():
    a = load_config("cpu")
    b = load_config("cpu", overrides=["eval.batch_size=4"])
    assert a.section("filter", "synthesis") == b.section("filter", "synthesis")
    assert a.section("eval") != b.section("eval")


def test_a_partial_config_is_its_profile_with_the_changes():
    from translora.config import Config

    cfg = Config.model_validate({"profile": "paper", "filter": {"n_keep": 5}})
    assert cfg.filter.n_keep == 5 and cfg.filter.max_generated == load_config("paper").filter.max_generated
    full = load_config("cpu").model_dump(mode="json")
    assert Config.model_validate(full) == load_config("cpu")


def test_flows_take_typed_parameters_validated_before_the_run():
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema

    from flows.transfer import transfer

    schema = parameter_schema(transfer).model_dump()
    assert schema["properties"]["config"]["$ref"].endswith("/Config")  # the UI renders a form from this
    assert "filter" in schema["definitions"]["Config"]["properties"]
    good = transfer.validate_parameters({"bundle": "b", "config": {"filter": {"n_keep": 5}}, "run_dir": "r"})
    assert good["config"].filter.n_keep == 5 and good["config"].synthesis == load_config("cpu").synthesis
    with pytest.raises(ParameterTypeError):
        transfer.validate_parameters({"bundle": "b", "config": {"filter": {"n_keep": "many"}}, "run_dir": "r"})


def test_profile_named_in_a_file_or_override_gets_that_profiles_values(tmp_path):
    paper = load_config("paper")
    path = tmp_path / "c.yaml"
    path.write_text("profile: paper\nfilter: {n_keep: 7}\n")
    from_file = load_config(path=path)
    assert from_file.profile == "paper" and from_file.filter.n_keep == 7
    assert from_file.source_train == paper.source_train and from_file.synthesis == paper.synthesis
    from_override = load_config(overrides=["profile=paper"])
    assert from_override == paper
    assert load_config("paper", path) == from_file  # naming the same profile twice is fine


def test_a_profile_flag_that_conflicts_with_the_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("profile: paper\n")
    with pytest.raises(ConfigError, match="--profile cpu conflicts with profile: paper"):
        load_config("cpu", path)


def test_a_new_target_id_keeps_the_targets_other_settings():
    cfg = load_config(overrides=["target_model={id: old, dtype: bfloat16, revision: abc123}"])
    moved = cfg.with_target("org/new")
    assert moved.target_model.id == "org/new"
    assert (moved.target_model.dtype, moved.target_model.revision) == ("bfloat16", "abc123")


def test_the_upgrade_trigger_passes_the_target_id_only():
    """The event's payload names a model; the deployment's config keeps the target's dtype, revision and trust."""
    from pathlib import Path

    import yaml

    from flows.upgrade import upgrade

    spec = yaml.safe_load((Path(__file__).parents[1] / "deployments" / "prefect.yaml").read_text())
    triggers = [t for d in spec["deployments"] for t in d.get("triggers", [])]
    assert triggers and all(t["parameters"]["target"] == "{{ event.payload.target }}" for t in triggers)
    checked = upgrade.validate_parameters(
        {"target": "org/new", "config": {"target_model": {"id": "x", "dtype": "bfloat16"}}, "run_dir": "r"}
    )
    assert checked["target"] == "org/new"


def _fields_without_description(model: type, prefix: str = "") -> list[str]:
    import typing

    from pydantic import BaseModel

    missing = []
    for name, field in model.model_fields.items():
        if not field.description:
            missing.append(prefix + name)
        for kind in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                missing += _fields_without_description(kind, f"{prefix}{name}.")
    return missing


def test_every_setting_says_what_it_does(capsys):
    """The Prefect UI's run form and `translora config --explain` show these descriptions."""
    from flows.cli import main
    from translora.config import Config

    assert _fields_without_description(Config) == []
    assert main(["config", "--explain", "--set", "filter.n_keep=7"]) == 0
    out = capsys.readouterr().out
    assert "filter.n_keep = 7  # synthetic inputs to keep (the distillation data)" in out.splitlines()


def test_the_gpu_profiles_use_cuda_graphs_and_the_paper_keeps_its_filter_rules(tmp_path):
    from translora.config import VLLMSpec
    from translora.generation.vllm import VLLMServer

    cpu, gpu, paper = load_config("cpu"), load_config("gpu"), load_config("paper")
    assert cpu.generation.vllm.enforce_eager and not gpu.generation.vllm.enforce_eager
    assert paper.discriminator.corrupted_fraction == 0 and paper.discriminator.min_real_accept == 0  # the paper's
    for cfg in (gpu, paper):
        assert cfg.generation.backend == "vllm" and cfg.target_model.dtype == "bfloat16"
        spec: VLLMSpec = cfg.generation.vllm
        command = VLLMServer(spec, "/models/m", None, tmp_path / "log", dtype="bfloat16").command()
        assert "--enforce-eager" not in command
        assert command[command.index("--gpu-memory-utilization") + 1] == str(spec.gpu_memory_utilization)
        assert command[command.index("--dtype") + 1] == "bfloat16"
    assert "--enforce-eager" in VLLMServer(cpu.generation.vllm, "/models/m", None, tmp_path / "log").command()


def test_a_pinned_revision_reaches_lm_eval_and_vllm(tmp_path, monkeypatch):
    """A hub model trained at a revision is evaluated and generated at that revision, not at main."""
    from translora import evaluation
    from translora.config import VLLMSpec
    from translora.generation.vllm import VLLMServer

    command = VLLMServer(VLLMSpec(), "org/model", None, tmp_path / "log", revision="abc123").command()
    assert command[command.index("--revision") + 1] == "abc123"
    assert command[command.index("--tokenizer-revision") + 1] == "abc123"
    assert "--revision" not in VLLMServer(VLLMSpec(), "org/model", None, tmp_path / "log").command()

    seen = {}

    def capture(model_args, extra):
        seen.update(model_args)
        raise RuntimeError("captured")

    from translora import lm_eval_model

    monkeypatch.setattr(lm_eval_model.PromptAlignedHFLM, "create_from_arg_obj", staticmethod(capture))
    with pytest.raises(RuntimeError, match="captured"):
        evaluation.evaluate("org/model", tmp_path, "t", revision="abc123")
    assert seen["revision"] == "abc123" and seen["pretrained"] == "org/model"
