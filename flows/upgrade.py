"""A fleet upgrade: move every registered bundle whose base is not the target to the target.

Each bundle's work (transfer, evaluation on the owner's set, the refusal gate) runs inside one slot of a Prefect
global concurrency limit (`translora-gpu`: as many slots as GPUs). Where it runs is the `bundle_deployment`
parameter:

- unset (the default: `translora upgrade` on one machine, with its temporary server and no workers): one
  `upgrade-bundle` task per bundle in this flow run, the `transfer` flow as its subflow;
- a deployment name (`translora-upgrade-bundle/upgrade-bundle`, as deployments/prefect.yaml's `upgrade` sets it):
  one flow run of that deployment per bundle, dispatched to its work pool, so workers on many machines share the
  fleet. Each publishes its outcome as a markdown artifact, which this run reads through the API once every one
  has ended (results persisted by a worker would need storage every machine reaches; the API is what they all do).

Once every transfer has ended, this run (and only it) writes the registry, registering each transferred bundle
with its parent, then the summary table artifact. A bundle that fails fails alone; the run is Failed when any
bundle failed or was refused. Retrying it redoes only those: the others are superseded in the registry, so no
longer outdated, and every stage a failed bundle finished before is reused from the store.

With vLLM and the in-process path, work the bundles share is done once: for each model that generates and is not
named in generation.vllm.servers, one managed server runs for the whole upgrade (the target for every bundle's
synthesis, each source base for the labels of all its bundles, their source adapters loaded into it as LoRA
modules), and every transfer is handed its URL in generation.vllm.servers. Store keys do not see those URLs, so a
transfer here is the same output as the same transfer run alone. Fanned out, such servers would listen on this
machine's loopback, out of the other workers' reach: a fleet names its vLLM servers in generation.vllm.servers.

The decisions that need no Prefect (ids, the evaluation set, refusals, shared models, the summary, where a bundle
made on another machine is here) are in translora/fleet.py; this module runs them as tasks and flows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
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
from translora.errors import ConfigError, DataError
from translora.fleet import (
    BundleOutcome,
    bundle_here,
    eval_data_folder,
    models_to_share,
    refuse,
    register_transfer,
    summary_rows,
)
from translora.generation.vllm import shared_servers
from translora.registry import Registration, open_registry
from translora.store import Store

SUMMARY_KEY = "translora-upgrade-summary"
BUNDLE_DEPLOYMENT = "translora-upgrade-bundle/upgrade-bundle"  # the deployment prefect.yaml's `upgrade` fans out to
OUTCOME = "translora upgrade outcome"  # how a bundle's flow run names the artifact that carries its outcome
POLL_SECONDS = 2.0  # how often a fanned-out upgrade asks the API how its bundles' runs stand


def _accuracy(
    config: Config, run_dir: Path, scope: str, slot: str, data: Path, model: ModelSpec, adapter: Path | None
) -> float:
    result = run_stage(
        stages.EVALUATE,
        config,
        run_dir,
        scope,
        slot=slot,
        inputs={"data": data, "adapter": adapter},
        models={"model": model},
    )
    return float(read_json(result / "result.json")["accuracy"])


def _register(registry_url: str | None, parent: Registration, new_bundle: Path, target: str) -> str:
    with open_registry(registry_url) as registry:
        return register_transfer(registry, parent, bundle_here(new_bundle, Store()), target)


def transfer_and_score(
    registration: Registration, config: Config, run_dir: str, concurrency_limit: str, max_regression: float = 0.0
) -> BundleOutcome:
    """One bundle's work, in a task or in its own flow run: transfer it to `config.target_model` inside one
    concurrency slot, evaluate, and apply the refusal gate. Never raises: a failure is the outcome's status and
    error. A transferred adapter that scores more than `max_regression` below the target base on the owner's
    evaluation set is refused (the owner stays on the old base and adapter rather than getting a new base made
    worse by its adapter). Registering is the upgrade run's, once every transfer has ended."""
    outcome = BundleOutcome(
        id=registration.id,
        owner=registration.owner,
        task=registration.task,
        source_base=registration.source_base,
        status="failed",
    )
    try:
        # a bundle registered by another machine: this machine's copy, from the shared store
        here = registration.model_copy(update={"bundle": str(bundle_here(registration.bundle, Store()))})
        with concurrency(concurrency_limit, occupy=1):  # a GPU slot: waits here while every slot is taken
            # Unpersisted, so a retried upgrade never takes another bundle's finished transfer for this one's
            # (Prefect matches a rerun's subflows by call order); the store makes a repeated transfer instant.
            state = transfer.with_options(persist_result=False)(here.bundle, config, run_dir, return_state=True)
            outcome.subflow_run_id = str(state.state_details.flow_run_id)
            outputs = state.result()  # raises the transfer's own error when it failed
            outcome.filter = read_manifest(Path(outputs["filtered"])).metrics
            outcome.labels = read_manifest(Path(outputs["labelled"])).metrics
            _evaluate(here, config, run_dir, outputs, outcome)
        if refuse(outcome, max_regression):
            return outcome
        outcome.new_bundle = str(Path(outputs["bundle"]).resolve())  # the store's folder, not the run's link
    except Exception as exc:  # this bundle's failure is its own row, never the fleet's
        outcome.error = f"{type(exc).__name__}: {exc}"
        return outcome
    outcome.status = "transferred"
    return outcome


def _final(outcome: BundleOutcome) -> BundleOutcome | State:
    """A bundle's task or flow run fails when its bundle failed or was refused, with the outcome as its data."""
    if outcome.status == "transferred":
        return outcome
    return Failed(message=f"{outcome.id}: {outcome.error}", data=outcome)


@task(name="upgrade-bundle", task_run_name="upgrade {registration.id}", cache_policy=NO_CACHE, persist_result=False)
def upgrade_bundle(
    registration: Registration, config: Config, run_dir: str, concurrency_limit: str, max_regression: float = 0.0
) -> BundleOutcome | State:
    """One bundle's work in the upgrade's own flow run (no bundle deployment)."""
    return _final(transfer_and_score(registration, config, run_dir, concurrency_limit, max_regression))


@flow(name="translora-upgrade-bundle", log_prints=True, persist_result=False)
def upgrade_one_bundle(
    registration: Registration,
    config: Config,
    run_dir: str,
    concurrency_limit: str = "translora-gpu",
    max_regression: float = 0.0,
) -> BundleOutcome | State:
    """One bundle of a fleet upgrade in its own flow run, on whichever worker of the pool takes it: transfer to
    `config.target_model` inside one slot of `concurrency_limit`, evaluate on the owner's set, refuse a transfer
    worse than the target base by more than `max_regression`. Registers nothing: the upgrade run that dispatched it
    reads its outcome (this run's markdown artifact) and registers once every bundle has ended."""
    ensure_concurrency_limit(concurrency_limit)  # also when someone runs this deployment by hand
    outcome = transfer_and_score(registration, config, run_dir, concurrency_limit, max_regression)
    create_markdown_artifact(
        f"```json\n{outcome.model_dump_json(indent=1)}\n```",
        description=f"{OUTCOME} of {registration.id}: {outcome.status}",
    )
    return _final(outcome)


def _evaluate(
    registration: Registration, config: Config, run_dir: str, outputs: dict[str, str], outcome: BundleOutcome
) -> None:
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
            outcome.accuracy_before = _accuracy(
                config, run, scope, "eval-set/before", data, teacher, source.source_adapter
            )
            outcome.accuracy_after = _accuracy(
                config, run, scope, "eval-set/after", data, target, Path(outputs["adapter"])
            )
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
    get_run_logger().warning(
        "global concurrency limit %r did not exist: created with 1 slot; give it one slot "
        "per GPU with `prefect gcl update %s --limit N`",
        name,
        name,
    )
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
    print(
        f"starting {len(shared)} vLLM servers for the whole upgrade ({', '.join(m.model.id for m in shared)}); "
        f"logs in {log_dir}"
    )
    with shared_servers(spec, shared, log_dir) as urls:
        vllm = spec.model_copy(update={"servers": spec.servers | urls})
        yield config.model_copy(update={"generation": config.generation.model_copy(update={"vllm": vllm})})


def run_url(flow_run_id: str | None) -> str:
    ui = get_current_settings().ui_url
    if flow_run_id is None:
        return "-"
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else flow_run_id


def _failed(registration: Registration, error: str | None) -> BundleOutcome:
    return BundleOutcome(
        id=registration.id,
        owner=registration.owner,
        task=registration.task,
        source_base=registration.source_base,
        status="failed",
        error=error,
    )


def _outcome(future: PrefectFuture, registration: Registration) -> BundleOutcome:
    future.wait()  # as_completed yields on the thread's end; wait() makes `state` the final one, not the server's
    state = future.state
    data = state.result(raise_on_failure=False)
    if isinstance(data, BundleOutcome):
        return data
    # The task itself failed (a lost concurrency lease): the row says what, the others go on.
    return _failed(registration, f"{type(data).__name__}: {data}" if isinstance(data, BaseException) else state.message)


def _in_process(
    todo: list[Registration], cfg: Config, run_dir: str, concurrency_limit: str, max_regression: float, progress: UUID
) -> list[BundleOutcome]:
    """Every bundle as an `upgrade-bundle` task of this flow run, vLLM servers shared for the whole upgrade."""
    slots = ensure_concurrency_limit(concurrency_limit)
    outcomes = []
    with shared_generation(cfg, todo, slots) as shared_cfg:  # its servers stop once every bundle is done
        futures = {
            upgrade_bundle.submit(reg, shared_cfg, run_dir, concurrency_limit, max_regression): reg for reg in todo
        }
        for done, future in enumerate(as_completed(list(futures)), 1):
            outcomes.append(_outcome(future, futures[future]))
            update_progress_artifact(progress, 100.0 * done / len(futures))
    return outcomes


def _read_outcome(client, run: FlowRun, registration: Registration) -> BundleOutcome:
    """The outcome a bundle's flow run published; a run that ended without one (crashed, cancelled, killed) is a
    failed row that says how it ended. Its "transfer run" is that flow run."""
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]), type=ArtifactFilterType(any_=["markdown"])
        )
    )
    published = [a for a in artifacts if (a.description or "").startswith(OUTCOME) and isinstance(a.data, str)]
    if published:
        text = published[-1].data
        outcome = BundleOutcome.model_validate(json.loads(text[text.index("\n") + 1 : text.rindex("```")]))
    else:
        outcome = _failed(
            registration,
            f"its flow run {run.name} ended {run.state.name if run.state else '?'} "
            f"without an outcome: {run.state.message if run.state else ''}",
        )
    outcome.subflow_run_id = str(run.id)
    return outcome


def _bundle_deployment(name: str):
    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ConfigError(
                f"bundle_deployment {name!r} is not deployed on {get_current_settings().api.url}: deploy it with "
                f"`prefect deploy --prefect-file deployments/prefect.yaml --name upgrade-bundle`, or leave "
                f"bundle_deployment unset to transfer every bundle in this flow run"
            ) from None
        except ValueError as exc:  # not "flow name/deployment name"
            raise ConfigError(f"bundle_deployment {name!r}: {exc}") from None


def _fan_out(
    deployment: str,
    todo: list[Registration],
    cfg: Config,
    run_dir: str,
    concurrency_limit: str,
    max_regression: float,
    progress: UUID,
) -> list[BundleOutcome]:
    """One flow run of `deployment` per bundle, on its work pool; returns once every one has ended."""
    spec = _bundle_deployment(deployment)
    ensure_concurrency_limit(concurrency_limit)
    if cfg.generation.backend == "vllm" and models_to_share(cfg, todo, 1):
        print(
            "fanned out, each transfer starts the vLLM servers it needs unless generation.vllm.servers names "
            "them (servers this run started would listen on this machine only)"
        )
    config = cfg.model_dump(mode="json")
    runs: dict[UUID, Registration] = {}
    for reg in todo:
        child: FlowRun = run_deployment(  # type: ignore[assignment]  # sync in a sync flow
            deployment,
            timeout=0,
            flow_run_name=f"upgrade {reg.id}",
            parameters={
                "registration": reg.model_dump(mode="json"),
                "config": config,
                "run_dir": run_dir,
                "concurrency_limit": concurrency_limit,
                "max_regression": max_regression,
            },
            # one run per bundle and attempt, even when the API call is retried
            idempotency_key=f"{flow_run.id}/{flow_run.run_count}/{reg.id}",
        )
        runs[child.id] = reg
    queue = f"work pool {spec.work_pool_name!r}, queue {spec.work_queue_name!r}"
    print(f"dispatched {len(runs)} bundle runs of {deployment} to {queue}")
    outcomes: list[BundleOutcome] = []
    pending, late_told = set(runs), False
    with get_client(sync_client=True) as client:
        while pending:
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(pending)))):
                if run.state is not None and run.state.is_final():
                    pending.discard(run.id)
                    outcomes.append(_read_outcome(client, run, runs[run.id]))
                    print(f"{outcomes[-1].id}: {outcomes[-1].status} ({run_url(str(run.id))})")
                    update_progress_artifact(progress, 100.0 * len(outcomes) / len(runs))
                elif run.state is not None and run.state.name == "Late" and not late_told:
                    late_told = True
                    get_run_logger().warning("bundle runs are late: no worker polls %s, or every one is busy", queue)
            if pending:
                time.sleep(POLL_SECONDS)
    return outcomes


def _register_all(
    outcomes: list[BundleOutcome], parents: dict[str, Registration], registry_url: str | None, target: str
) -> None:
    """Register every transferred bundle with its parent (after every transfer has ended); a registration that
    fails fails its bundle's row."""
    for outcome in outcomes:
        if outcome.status != "transferred":
            continue
        try:
            assert outcome.new_bundle is not None  # a transferred outcome names its bundle
            outcome.new_id = _register(registry_url, parents[outcome.id], Path(outcome.new_bundle), target)
        except Exception as exc:  # noqa: BLE001 - the registry said no: this row fails, the others go on
            outcome.status, outcome.error = "failed", f"not registered: {type(exc).__name__}: {exc}"


@flow(name="translora-upgrade", log_prints=True)
def upgrade(
    target: str,
    config: Config,
    run_dir: str,
    registry_url: str | None = None,
    concurrency_limit: str = "translora-gpu",
    max_regression: float = 0.0,
    bundle_deployment: str | None = None,
) -> list[dict[str, Any]] | State:
    """Move every active registration whose base is not `target` (a model id: it replaces target_model.id and keeps
    the configured dtype, revision and trust settings) to it; returns one summary row per bundle,
    or a Failed state naming the bundles that failed or were refused (the others are transferred and registered).
    max_regression: how much accuracy (0-1) a transferred adapter may lose against the target base on the owner's
    evaluation set and still be registered.
    bundle_deployment: a deployment of `translora-upgrade-bundle` ("flow/deployment") that runs each bundle as its own
    flow run on its work pool, shared by the workers of many machines; unset, every bundle runs in this flow run."""
    cfg = config.with_target(target)
    with open_registry(registry_url) as registry:
        todo = registry.outdated(target)
    print(f"{len(todo)} registered bundles to move to {target}: {', '.join(r.id for r in todo) or 'none'}")
    # a sync flow gets the id itself, not a coroutine
    progress = cast(
        UUID, create_progress_artifact(0.0, key="translora-upgrade-progress", description=f"Bundles moved to {target}")
    )
    if bundle_deployment:
        outcomes = _fan_out(bundle_deployment, todo, cfg, run_dir, concurrency_limit, max_regression, progress)
    else:
        outcomes = _in_process(todo, cfg, run_dir, concurrency_limit, max_regression, progress)
    if not todo:
        update_progress_artifact(progress, 100.0)
    # Every transfer has ended: now the registry, then the summary.
    _register_all(outcomes, {r.id: r for r in todo}, registry_url, target)
    outcomes.sort(key=lambda o: o.id)
    rows = summary_rows(outcomes, run_url)
    create_table_artifact(
        rows or [{"bundle": "-", "status": f"every active bundle is already on {target}"}],
        key=SUMMARY_KEY,
        description=f"Upgrade to {target}: one row per registered bundle",
    )
    for row in rows:
        print(" | ".join(f"{k}: {v}" for k, v in row.items()))
    failed = [o.id for o in outcomes if o.status == "failed"]
    refused = [o.id for o in outcomes if o.status == "refused"]
    if failed or refused:
        why = [f"{len(failed)} of {len(outcomes)} bundles failed ({', '.join(failed)})"] if failed else []
        why += (
            [
                f"{len(refused)} refused, worse than the target base on their evaluation sets "
                f"({', '.join(refused)}): they stay on their old base"
            ]
            if refused
            else []
        )
        return Failed(
            message="; ".join(why) + ". The others are registered. Retry this run to redo only the "
            "failed ones; a refused one is refused again unless --max-regression "
            "allows its loss."
        )
    return [o.model_dump() for o in outcomes]
