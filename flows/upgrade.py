"""A fleet upgrade: move every registered bundle whose base is not the target to the target, in one flow run.

Each bundle is one `upgrade-bundle` task that takes a slot of a Prefect global concurrency limit (`translora-gpu`:
as many slots as GPUs), runs the `transfer` flow as a subflow, scores the adapter before and after on the owner's
evaluation set when there is one, and registers the transferred bundle with its parent. A bundle that fails fails
alone; the run ends with a summary table artifact and is Failed when any bundle failed.

Retrying the run redoes only the failed bundles: the ones already transferred are superseded in the registry, so
they are no longer outdated, and every stage a failed bundle finished before is reused from the store.

With the vLLM backend, work the bundles share is done once: for each model that generates and is not named in
generation.vllm.servers, one managed server runs for the whole upgrade (the target for every bundle's synthesis,
each source base for the labels of all its bundles, their source adapters loaded into it as LoRA modules), and every
transfer is handed its URL in generation.vllm.servers. Store keys do not see those URLs, so a transfer here is the
same output as the same transfer run alone.

The decisions that need no Prefect (ids, the evaluation set, refusals, shared models, the summary) are in
translora/fleet.py; this module runs them as tasks and a flow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.states import Failed, State

from flows.transfer import transfer, transfer_scope
from tasks.stage import run_stage
from translora import stages
from translora.artifacts import read_json, read_manifest
from translora.bundle import Bundle
from translora.config import Config, ModelSpec
from translora.errors import DataError
from translora.fleet import BundleOutcome, eval_data_folder, models_to_share, refuse, register_transfer, summary_rows
from translora.generation.vllm import shared_servers
from translora.registry import Registration, open_registry
from translora.store import Store

SUMMARY_KEY = "translora-upgrade-summary"


def _accuracy(config: Config, run_dir: Path, scope: str, slot: str, data: Path, model: ModelSpec,
              adapter: Path | None) -> float:
    result = run_stage(stages.EVALUATE, config, run_dir, scope, slot=slot, inputs={"data": data, "adapter": adapter},
                       models={"model": model})
    return float(read_json(result / "result.json")["accuracy"])


def _register(registry_url: str | None, parent: Registration, new_bundle: Path, target: str) -> str:
    with open_registry(registry_url) as registry:
        return register_transfer(registry, parent, new_bundle, target)


@task(name="upgrade-bundle", task_run_name="upgrade {registration.id}", cache_policy=NO_CACHE, persist_result=False)
def upgrade_bundle(registration: Registration, config: Config, run_dir: str, registry_url: str | None,
                   concurrency_limit: str, max_regression: float = 0.0) -> BundleOutcome | State:
    """Transfer one bundle to `config.target_model` inside one concurrency slot, evaluate, register. A failure
    fails this task only, with the summary row as its data. A transferred adapter that scores more than
    `max_regression` below the target base on the owner's evaluation set is refused: not registered, so the owner
    stays on the old base and adapter rather than getting a new base made worse by its adapter."""
    outcome = BundleOutcome(id=registration.id, owner=registration.owner, task=registration.task,
                            source_base=registration.source_base, status="failed")
    try:
        with concurrency(concurrency_limit, occupy=1):  # a GPU slot: waits here while every slot is taken
            # Unpersisted, so a retried upgrade never takes another bundle's finished transfer for this one's
            # (Prefect matches a rerun's subflows by call order); the store makes a repeated transfer instant.
            state = transfer.with_options(persist_result=False)(registration.bundle, config, run_dir,
                                                                return_state=True)
            outcome.subflow_run_id = str(state.state_details.flow_run_id)
            outputs = state.result()  # raises the transfer's own error when it failed
            outcome.filter = read_manifest(Path(outputs["filtered"])).metrics
            outcome.labels = read_manifest(Path(outputs["labelled"])).metrics
            _evaluate(registration, config, run_dir, outputs, outcome)
        if refuse(outcome, max_regression):
            return Failed(message=f"{registration.id}: {outcome.error}", data=outcome)
        outcome.new_id = _register(registry_url, registration, Path(outputs["bundle"]), config.target_model.id)
    except Exception as exc:  # this bundle's failure is its own row, never the fleet's
        outcome.error = f"{type(exc).__name__}: {exc}"
        return Failed(message=f"{registration.id}: {outcome.error}", data=outcome)
    outcome.status = "transferred"
    return outcome


def _evaluate(registration: Registration, config: Config, run_dir: str, outputs: dict[str, str],
              outcome: BundleOutcome) -> None:
    """Accuracy before (source base + source adapter), after (target + transferred adapter) and of the target base
    alone on the owner's evaluation set, when one is registered."""
    if not registration.eval_set:
        outcome.eval_note = "no evaluation set"
        return
    source = Bundle(Path(registration.bundle))
    target = config.target_model
    run, scope = Path(run_dir), transfer_scope(source, target.id)
    # "before" is scored on the teacher exactly as the transfer loaded it (the label stage's manifest)
    teacher = ModelSpec.model_validate(read_manifest(Path(outputs["labelled"])).models["teacher"]["spec"])
    try:
        with tempfile.TemporaryDirectory() as tmp:  # only its content reaches the store key
            data = eval_data_folder(registration.eval_set, source, Path(tmp))
            outcome.accuracy_before = _accuracy(config, run, scope, "eval-set/before", data, teacher,
                                                source.source_adapter)
            outcome.accuracy_after = _accuracy(config, run, scope, "eval-set/after", data, target,
                                               Path(outputs["adapter"]))
            outcome.accuracy_target_base = _accuracy(config, run, scope, "eval-set/target-base", data, target, None)
    except DataError as exc:  # the owner's set, not the transfer, is at fault: still register
        outcome.eval_note = str(exc)
        get_run_logger().warning("%s: no accuracy: %s", registration.id, exc)


def ensure_concurrency_limit(name: str) -> int:
    """A missing limit would bound nothing; create it with one slot (the safe default) and say so. Returns its
    slots: how many transfers run at once."""
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:  # another upgrade run created it just now
            return client.read_global_concurrency_limit_by_name(name).limit
    get_run_logger().warning("global concurrency limit %r did not exist: created with 1 slot; give it one slot "
                             "per GPU with `prefect gcl update %s --limit N`", name, name)
    return 1


@contextmanager
def shared_generation(config: Config, todo: list[Registration], slots: int) -> Iterator[Config]:
    """`config` with generation.vllm.servers naming one server per shared model, started for the block and stopped
    when it ends or fails; `config` itself on the hf backend."""
    shared = models_to_share(config, todo, slots) if config.generation.backend == "vllm" else []
    if not shared:
        yield config
        return
    spec = config.generation.vllm
    log_dir = Store().log_dir(f"upgrade-{flow_run.id or 'local'}")
    print(f"starting {len(shared)} vLLM servers for the whole upgrade ({', '.join(m.model.id for m in shared)}); "
          f"logs in {log_dir}")
    with shared_servers(spec, shared, log_dir) as urls:
        vllm = spec.model_copy(update={"servers": spec.servers | urls})
        yield config.model_copy(update={"generation": config.generation.model_copy(update={"vllm": vllm})})


def run_url(flow_run_id: str | None) -> str:
    ui = get_current_settings().ui_url
    if flow_run_id is None:
        return "-"
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else flow_run_id


def _outcome(future: PrefectFuture, registration: Registration) -> BundleOutcome:
    future.wait()  # as_completed yields on the thread's end; wait() makes `state` the final one, not the server's
    state = future.state
    data = state.result(raise_on_failure=False)
    if isinstance(data, BundleOutcome):
        return data
    # The task itself failed (the registry, a lost concurrency lease): the row says what, the others go on.
    return BundleOutcome(id=registration.id, owner=registration.owner, task=registration.task,
                         source_base=registration.source_base, status="failed",
                         error=f"{type(data).__name__}: {data}" if isinstance(data, BaseException) else state.message)


@flow(name="translora-upgrade", log_prints=True)
def upgrade(target: str, config: Config, run_dir: str, registry_url: str | None = None,
            concurrency_limit: str = "translora-gpu", max_regression: float = 0.0) -> list[dict[str, Any]] | State:
    """Move every active registration whose base is not `target` (a model id: it replaces target_model.id and keeps
    the configured dtype, revision and trust settings) to it; returns one summary row per bundle,
    or a Failed state naming the bundles that failed or were refused (the others are transferred and registered).
    max_regression: how much accuracy (0-1) a transferred adapter may lose against the target base on the owner's
    evaluation set and still be registered."""
    cfg = config.with_target(target)
    with open_registry(registry_url) as registry:
        todo = registry.outdated(target)
    print(f"{len(todo)} registered bundles to move to {target}: {', '.join(r.id for r in todo) or 'none'}")
    slots = ensure_concurrency_limit(concurrency_limit)
    progress = create_progress_artifact(0.0, key="translora-upgrade-progress",
                                        description=f"Bundles moved to {target}")
    outcomes = []
    with shared_generation(cfg, todo, slots) as shared_cfg:  # its servers stop once every bundle is done
        futures = {upgrade_bundle.submit(reg, shared_cfg, run_dir, registry_url, concurrency_limit,
                                         max_regression): reg
                   for reg in todo}
        for done, future in enumerate(as_completed(list(futures)), 1):
            outcomes.append(_outcome(future, futures[future]))
            update_progress_artifact(progress, 100.0 * done / len(futures))
    if not todo:
        update_progress_artifact(progress, 100.0)
    outcomes.sort(key=lambda o: o.id)
    rows = summary_rows(outcomes, run_url)
    create_table_artifact(rows or [{"bundle": "-", "status": f"every active bundle is already on {target}"}],
                          key=SUMMARY_KEY, description=f"Upgrade to {target}: one row per registered bundle")
    for row in rows:
        print(" | ".join(f"{k}: {v}" for k, v in row.items()))
    failed = [o.id for o in outcomes if o.status == "failed"]
    refused = [o.id for o in outcomes if o.status == "refused"]
    if failed or refused:
        why = [f"{len(failed)} of {len(outcomes)} bundles failed ({', '.join(failed)})"] if failed else []
        why += [f"{len(refused)} refused, worse than the target base on their evaluation sets "
                f"({', '.join(refused)}): they stay on their old base"] if refused else []
        return Failed(message="; ".join(why) + ". The others are registered. Retry this run to redo only the "
                                               "failed ones; a refused one is refused again unless --max-regression "
                                               "allows its loss.")
    return [o.model_dump() for o in outcomes]
