"""The flows end to end through Prefect on tiny random models, against the content-addressed store."""

import json
import shutil
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

from flows.end_to_end import trans_lora
from flows.finetune import finetune
from flows.transfer import transfer
from tasks.stage import retry_transient
from tests.helpers import tiny_overrides
from translora.artifacts import read_manifest
from translora.bundle import Bundle
from translora.config import load_config
from translora.data.sources import checker_for
from translora.errors import DataError, GenerationBackendError
from translora.store import RunIndex


def _task_runs(parent_id) -> dict[str, str]:
    """Task run name -> state name, over the subflows of one flow run."""
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[c.id for c in children])))
    return {tr.name: tr.state.name for tr in runs}


def _adapter_slot(run_dir) -> str:
    return next(s for s in RunIndex(run_dir).entries() if s.startswith("transfer/") and s.endswith("/adapter"))


def test_cache_returns_each_configs_own_result_and_a_moved_run_reuses_everything(tiny_models, tmp_path):
    def config(steps: int):
        return load_config("cpu", overrides=tiny_overrides(tiny_models) + [f"distill_train.max_steps={steps}"])

    run_dir = tmp_path / "run"
    first = trans_lora(config(2), str(run_dir), return_state=True)
    results = first.result()
    assert set(results["accuracy"]) == {"source_adapter", "target_base", "transferred", "oracle"}
    adapter_one = (run_dir / _adapter_slot(run_dir)).resolve()
    # the diagnostics count what the task's checker says of the run's own candidates and labels
    scope = (run_dir / _adapter_slot(run_dir)).parent  # the run folder's scope, not the store entry
    check = checker_for("bbh:boolean_expressions")
    candidates = [json.loads(r)["input"] for r in (scope / "filtered" / "candidates.jsonl").read_text().splitlines()]
    labelled = [json.loads(r)["input"] for r in (scope / "labelled" / "labelled.jsonl").read_text().splitlines()]
    assert results["filter"]["n_valid"] == sum(map(check.is_valid, candidates))
    assert results["labels"]["n_checked"] == sum(map(check.is_valid, labelled))
    assert read_manifest(adapter_one).config["distill_train"]["max_steps"] == 2

    second = trans_lora(config(3), str(run_dir), return_state=True).result()
    adapter_two = (run_dir / _adapter_slot(run_dir)).resolve()
    assert adapter_two != adapter_one and read_manifest(adapter_two).config["distill_train"]["max_steps"] == 3
    assert second["accuracy"]["source_adapter"] == results["accuracy"]["source_adapter"]

    # Back to the first config: every stage is reused, and it is the first config's adapter and result.
    third = trans_lora(config(2), str(run_dir), return_state=True)
    assert third.result() == results
    assert (run_dir / _adapter_slot(run_dir)).resolve() == adapter_one
    states = _task_runs(third.state_details.flow_run_id)
    assert len(states) == 14 and set(states.values()) == {"Cached"}, states  # 5 + 4 + oracle + 4 evaluations

    # A run directory moved elsewhere is only an index: everything is reused from the store.
    moved = tmp_path / "moved"
    shutil.move(run_dir, moved)
    fourth = trans_lora(config(2), str(moved), return_state=True)
    assert fourth.result() == results
    assert set(_task_runs(fourth.state_details.flow_run_id).values()) == {"Cached"}
    on_disk = json.loads((moved / _adapter_slot(moved)).parent.joinpath("results.json").read_text())
    assert on_disk["accuracy"] == results["accuracy"]


def test_two_bundles_to_one_target_keep_both_adapters(tiny_models, tmp_path):
    base = tiny_overrides(tiny_models)
    bundles = [
        finetune(load_config("cpu", overrides=base + [f"source_train.seed={s}"]), str(tmp_path / f"c{s}"))
        for s in (1, 2)
    ]
    target_run = tmp_path / "target"
    cfg = load_config("cpu", overrides=base)
    outs = [transfer(b, cfg, str(target_run)) for b in bundles]
    adapters = [target_run / s for s in RunIndex(target_run).entries() if s.endswith("/adapter")]
    assert len(adapters) == 2 and {a.resolve() for a in adapters} == {Path(o["adapter"]).resolve() for o in outs}
    assert len({a.resolve() for a in adapters}) == 2  # two store outputs, neither overwrote the other
    for adapter, bundle in zip(sorted(adapters), sorted(bundles, key=lambda b: Bundle(Path(b)).hash)):
        assert (adapter / "adapter_model.safetensors").exists()
        assert read_manifest(adapter).inputs["bundle"] == Bundle(Path(bundle)).hash


def test_two_bases_of_one_shape_get_the_copied_adapter_baseline(tiny_models, tmp_path):
    """llama -> llama-b (same layer shapes, other weights): the source adapter also runs on the target as is."""
    cfg = load_config(
        "cpu",
        overrides=tiny_overrides(tiny_models) + [f"target_model.id={tiny_models['llama-b']}", "eval.oracle=false"],
    )
    results = trans_lora(cfg, str(tmp_path / "run"))
    assert set(results["accuracy"]) == {"source_adapter", "target_base", "transferred", "copied_adapter"}
    samples = next((tmp_path / "run").glob("transfer/*/*/eval/copied_adapter/samples.jsonl")).read_text().splitlines()
    scores = [json.loads(s)["acc"] for s in samples]  # the source adapter, unchanged, scored on the target
    assert len(scores) == cfg.task.n_test and results["accuracy"]["copied_adapter"] == pytest.approx(
        sum(scores) / len(scores)
    )


def test_transient_errors_are_retried_and_user_errors_are_not():
    attempts = {"transient": 0, "user": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
    def flaky(kind: str) -> str:
        attempts[kind] += 1
        if kind == "transient" and attempts[kind] < 2:
            raise GenerationBackendError("server died")
        if kind == "user":
            raise DataError("bad data")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("transient") == "ok" and attempts["transient"] == 2
    with pytest.raises(DataError):
        run("user")
    assert attempts["user"] == 1
