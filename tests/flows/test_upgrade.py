"""The fleet upgrade flow on tiny models: fan-out, failure isolation, summary, registration, retry, chaining."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import get_current_settings

from flows.finetune import finetune
from flows.upgrade import SUMMARY_KEY, _register, upgrade
from tests.helpers import tiny_overrides
from translora.artifacts import read_jsonl, write_jsonl
from translora.config import ModelSpec, load_config
from translora.fleet import child_id
from translora.registry import open_registry


def _summary() -> list[dict]:
    """The latest summary table artifact on the server."""
    with get_client(sync_client=True) as client:
        latest = client.read_latest_artifacts()  # one per key, its newest version
    table = next(a for a in latest if a.key == SUMMARY_KEY)
    return json.loads(table.data) if isinstance(table.data, str) else table.data


def _subflow_runs(parent_id) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )


def ui_url() -> str:
    return get_current_settings().ui_url.rstrip("/")


def test_upgrade_isolates_a_failed_bundle_registers_the_rest_and_a_rerun_redoes_only_the_failed(tiny_models, tmp_path):
    base = tiny_overrides(tiny_models)
    bundles = {
        name: Path(finetune(load_config("cpu", overrides=base + [f"source_train.seed={seed}"]), str(tmp_path / name)))
        for name, seed in (("acme", 1), ("globex", 2))
    }
    # The owner's evaluation set: held-out rows acme kept (the run's test split, never seen by stage 2).
    eval_set = tmp_path / "acme-eval.jsonl"
    write_jsonl(eval_set, read_jsonl(tmp_path / "acme" / "data" / "test.jsonl"))
    globex_bundle = shutil.copytree(bundles["globex"], tmp_path / "globex-bundle")
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        registry.add("acme", "acme-corp", bundles["acme"], eval_set=str(eval_set))
        registry.add("globex", "globex-inc", globex_bundle)
    hidden = shutil.move(globex_bundle, tmp_path / "globex-moved-away")  # globex's transfer will fail

    target = ModelSpec(id=str(tiny_models["gemma3"]))
    config = load_config("cpu", overrides=base)
    run_dir = str(tmp_path / "upgrades")
    # max_regression 1.0: tiny random models score at chance either way; the gate has its own test below
    first = upgrade(target.id, config, run_dir, url, "test-gpu", 1.0, return_state=True)
    assert first.is_failed() and "globex" in first.message and "acme" not in first.message, first.message

    rows = {r["bundle"]: r for r in _summary()}
    assert rows["acme"]["status"] == "transferred" and rows["acme"]["new registration"] == child_id("acme", target.id)
    assert rows["acme"]["acceptance"].endswith("%")
    assert rows["acme"]["filter (kept/distinct/generated)"].startswith("3/")
    assert re.fullmatch(r"\d+\.\d% -> \d+\.\d%", rows["acme"]["accuracy before -> after"])
    assert re.fullmatch(r"\d+\.\d%", rows["acme"]["target base"])
    assert " labelled, " in rows["acme"]["labels"] and "answers {" in rows["acme"]["labels"]
    assert rows["globex"]["status"].startswith("failed: ArtifactError") and "globex-bundle" in rows["globex"]["status"]
    assert rows["globex"]["accuracy before -> after"] == "-"  # it failed before any evaluation
    failed_transfers = [r for r in _subflow_runs(first.state_details.flow_run_id) if r.state.is_failed()]
    assert [rows["globex"]["transfer run"]] == [f"{ui_url()}/runs/flow-run/{r.id}" for r in failed_transfers]
    with open_registry(url) as registry:
        acme_child = registry.get(child_id("acme", target.id))
        assert acme_child.parent_id == "acme" and acme_child.source_base == target.id
        assert acme_child.owner == "acme-corp" and acme_child.eval_set == str(eval_set)
        assert registry.get("acme").status == "superseded" and registry.get("globex").status == "active"
        assert [r.id for r in registry.outdated(target.id)] == ["globex"]

    shutil.move(hidden, globex_bundle)  # the operator fixes globex's bundle and retries
    second = upgrade(target.id, config, run_dir, url, "test-gpu", 1.0, return_state=True)
    assert second.is_completed(), second.message
    assert [r["id"] for r in second.result()] == ["globex"]  # acme was not transferred again
    with open_registry(url) as registry:
        assert registry.outdated(target.id) == []
        assert [r.id for r in registry.find() if r.parent_id == "acme"] == [child_id("acme", target.id)]

    # The next upgrade starts from the transferred bundles: gemma3 -> a second llama base.
    next_target = ModelSpec(id=str(tiny_models["llama-b"]))
    third = upgrade(next_target.id, config, run_dir, url, "test-gpu", 1.0, return_state=True)
    assert third.is_completed(), third.message
    with open_registry(url) as registry:
        chain = registry.lineage(child_id(child_id("acme", target.id), next_target.id))
        assert [r.source_base for r in chain] == [next_target.id, target.id, str(tiny_models["llama"])]


def test_a_transfer_worse_than_the_target_base_is_refused_and_not_registered(tiny_models, tmp_path):
    base = tiny_overrides(tiny_models)
    bundle = Path(finetune(load_config("cpu", overrides=base), str(tmp_path / "acme")))
    eval_set = tmp_path / "acme-eval.jsonl"
    write_jsonl(eval_set, read_jsonl(tmp_path / "acme" / "data" / "test.jsonl"))
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        registry.add("acme", "acme-corp", bundle, eval_set=str(eval_set))
    target = ModelSpec(id=str(tiny_models["gemma3"]))
    # max_regression -1: the adapter would have to beat the target base by 100 points, so it is refused
    state = upgrade(
        target.id, load_config("cpu", overrides=base), str(tmp_path / "up"), url, "test-gpu", -1.0, return_state=True
    )
    assert state.is_failed() and "1 refused" in state.message and "acme" in state.message, state.message
    row = _summary()[0]
    assert (
        row["status"].startswith("refused: the transferred adapter scores ")
        and "below the target base" in row["status"]
        and row["new registration"] == "-"
    )
    with open_registry(url) as registry:
        assert registry.get("acme").status == "active" and registry.outdated(target.id)[0].id == "acme"
        assert [r.id for r in registry.find() if r.parent_id == "acme"] == []


def test_registering_a_transfer_twice_keeps_one_registration(tiny_models, tmp_path):
    bundle = Path(finetune(load_config("cpu", overrides=tiny_overrides(tiny_models)), str(tmp_path / "run")))
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        parent = registry.add("acme", "acme-corp", bundle)
    # Any folder with the target as its source base stands in for the transferred bundle here.
    moved = shutil.copytree(bundle, tmp_path / "moved")
    info = (moved / "bundle.json").read_text().replace(str(tiny_models["llama"]), "org/new-base")
    (moved / "bundle.json").write_text(info)
    assert _register(url, parent, moved, "org/new-base") == _register(url, parent, moved, "org/new-base")
    with open_registry(url) as registry:
        assert [r.id for r in registry.find() if r.parent_id == "acme"] == ["acme@new-base"]


def test_cli_upgrade_exits_non_zero_naming_the_failed_bundle(tmp_path, capsys):
    from flows.cli import main

    broken = tmp_path / "broken-bundle"  # registrable (bundle.json, task card) but not transferable: no adapters
    broken.mkdir()
    (broken / "bundle.json").write_text(json.dumps({"source_model": {"id": "org/old"}, "source_model_hash": "h"}))
    (broken / "task_card.json").write_text(json.dumps({"name": "bbh:boolean_expressions"}))
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        registry.add("initech", "initech-llc", broken)
    # a hub id pinned to a commit passes the input checks (nothing here can reach the hub); the bundle then fails
    code = main(
        [
            "upgrade",
            "--target",
            "org/new",
            "--set",
            f"target_model.revision={'deadbeef' * 5}",
            "--registry",
            url,
            "--run-dir",
            str(tmp_path / "run"),
            "--concurrency-limit",
            "test-cli",
        ]
    )
    assert code == 1 and "1 of 1 bundles failed (initech)" in capsys.readouterr().err
