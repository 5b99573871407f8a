"""Both flows end to end through Prefect on tiny random models; the second run recomputes nothing."""

import json

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.end_to_end import trans_lora
from tasks.common import retry_transient
from tests.conftest import tiny_overrides
from translora.artifacts import RunLayout
from translora.config import load_config
from translora.errors import DataError, GenerationBackendError


def _task_runs_of(flow_run_ids) -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))
    return runs


def _subflow_ids(parent_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )
    return [c.id for c in children]


def test_end_to_end_twice_second_run_all_cached(tiny_models, tmp_path):
    config = load_config("cpu", overrides=tiny_overrides(tiny_models)).model_dump(mode="json")
    run_dir = str(tmp_path / "run")
    first = trans_lora(config, run_dir, return_state=True)
    assert first.is_completed()
    results = first.result()
    assert set(results["accuracy"]) == {"source_adapter", "target_base", "transferred"}
    layout = RunLayout(tmp_path / "run")
    on_disk = json.loads((layout.evaluation(config["target_model"]["id"]) / "results.json").read_text())
    assert on_disk["accuracy"] == results["accuracy"] and 0 < on_disk["acceptance_rate"] <= 1

    second = trans_lora(config, run_dir, return_state=True)
    assert second.result() == results
    task_runs = _task_runs_of(_subflow_ids(second.state_details.flow_run_id))
    assert len(task_runs) == 11  # 5 finetune + 3 transfer + 3 evaluate
    assert {tr.state.name for tr in task_runs} == {"Cached"}

    # A deleted output is recomputed, not returned as a path to nothing.
    import shutil

    shutil.rmtree(layout.transfer(config["target_model"]["id"]) / "adapter")
    third = trans_lora(config, run_dir, return_state=True)
    assert third.is_completed()
    names = {tr.name.rsplit("-", 1)[0]: tr.state.name for tr in
             _task_runs_of(_subflow_ids(third.state_details.flow_run_id))}
    assert names["distill"] == "Completed" and names["train-source-adapter"] == "Cached"


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
