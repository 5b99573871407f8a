"""The fleet's decisions without Prefect or a server: registration ids, the owner's evaluation set, when a transfer
is refused, which models an upgrade's transfers generate with, and the summary table."""

from datetime import datetime, timezone

import pytest

from tests.helpers import make_adapter, make_bundle, tiny_overrides
from translora.bundle import Bundle
from translora.config import load_config
from translora.errors import DataError
from translora.fleet import BundleOutcome, child_id, eval_data_folder, models_to_share, refuse, summary_rows
from translora.registry import Registration


def _registration(id: str, bundle, base: str) -> Registration:
    return Registration(
        id=id,
        owner="acme",
        task="boolean_expressions",
        source_base=base,
        source_base_hash="h",
        bundle=str(bundle),
        created_at=datetime.now(timezone.utc),
    )


def _outcome(after, floor) -> BundleOutcome:
    return BundleOutcome(
        id="acme",
        owner="acme",
        task="t",
        source_base="org/old",
        status="failed",
        accuracy_after=after,
        accuracy_target_base=floor,
    )


def test_child_ids_name_the_target_briefly():
    assert child_id("acme", "embedded:gemma3-270m") == "acme@gemma3-270m"
    assert child_id("acme@gemma3-270m", "/models/Llama-3/") == "acme@gemma3-270m@Llama-3"


def test_a_transfer_below_the_target_base_is_refused_with_its_reason():
    low = _outcome(0.50, 0.60)
    assert refuse(low, 0.05) and low.status == "refused" and "50.0%" in low.error and "60.0%" in low.error
    assert not refuse(_outcome(0.56, 0.60), 0.05)  # within the allowed loss
    assert not refuse(_outcome(None, 0.60), 0.0)  # not scored: nothing to refuse on


def test_the_owners_evaluation_set_is_a_local_jsonl(tmp_path, tiny_models):
    bundle = Bundle(
        make_bundle(tmp_path / "b", make_adapter(tiny_models["llama"], tmp_path / "a"), tiny_models["llama"])
    )
    rows = tmp_path / "eval.jsonl"
    rows.write_text('{"input": "True is", "target": "True"}\n')
    folder = eval_data_folder(f"file://{rows}", bundle, tmp_path / "out")
    assert (folder / "test.jsonl").read_text().count("\n") == 1 and (folder / "task_card.json").exists()
    with pytest.raises(DataError, match="is not a local file"):
        eval_data_folder("s3://bucket/eval.jsonl", bundle, tmp_path / "out2")
    rows.write_text("")
    with pytest.raises(DataError, match="is empty"):
        eval_data_folder(str(rows), bundle, tmp_path / "out3")


def test_shared_servers_follow_what_the_transfers_generate_with(tmp_path, tiny_models):
    adapter = make_adapter(tiny_models["llama"], tmp_path / "a")
    todo = [
        _registration(
            f"r{i}", make_bundle(tmp_path / f"b{i}", adapter, tiny_models["llama"]), str(tiny_models["llama"])
        )
        for i in range(3)
    ]
    base = tiny_overrides(tiny_models) + ["generation.backend=vllm"]
    # choice-scored labels run on torch: only the target synthesizes on a server
    shared = models_to_share(load_config(overrides=base), todo, slots=2)
    assert [m.model.id for m in shared] == [str(tiny_models["gemma3"])]
    # generated labels: the teacher serves all three source adapters, at most as many at once as there are slots
    shared = models_to_share(load_config(overrides=base + ["label.mode=generate"]), todo, slots=2)
    assert [m.model.id for m in shared] == [str(tiny_models["gemma3"]), str(tiny_models["llama"])]
    assert shared[1].lora_rank == 8 and shared[1].max_loras == 2
    # the seeds_only ablation never synthesizes; a model with a named server is not started again
    shared = models_to_share(
        load_config(
            overrides=base
            + [
                "filter.mode=seeds_only",
                "label.mode=generate",
                f"generation.vllm.servers={{'{tiny_models['llama']}': 'http://127.0.0.1:1'}}",
            ]
        ),
        todo,
        slots=2,
    )
    assert shared == []


def test_the_summary_has_one_row_per_bundle_with_its_accuracies():
    done = _outcome(0.7, 0.6).model_copy(
        update={
            "status": "transferred",
            "new_id": "acme@new",
            "accuracy_before": 0.65,
            "subflow_run_id": "123",
            "filter": {"kept": 3, "distinct": 4, "generated": 5},
        }
    )
    rows = summary_rows([done], lambda run: f"http://ui/runs/{run}")
    assert rows[0]["accuracy before -> after"] == "65.0% -> 70.0%" and rows[0]["target base"] == "60.0%"
    assert rows[0]["filter (kept/distinct/generated)"] == "3/4/5" and rows[0]["transfer run"] == "http://ui/runs/123"
