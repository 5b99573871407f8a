"""The upgrade fans out, for real: one Prefect server, two process workers, each with its own TRANSLORA_HOME (so
its own read cache, as on two machines), sharing nothing but the API, an S3 store on moto's server and the registry.
The `upgrade` and `upgrade-bundle` deployments come from deployments/prefect.yaml.

Worker A polls every queue with two runs at a time, so it takes the upgrade and one bundle; worker B polls only the
`transfers` queue, one run at a time, so it takes the other bundle. The bundles were made by a third "machine"
whose read cache is gone before the upgrade: each worker fetches its bundle from the store.

One module-scoped fleet (about 3 minutes on 2 cores): the tests read what it did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.upgrade import SUMMARY_KEY
from tests.helpers import answers, finetune_stages, free_port, tiny_overrides
from translora import stages
from translora.config import load_config
from translora.fleet import child_id
from translora.registry import open_registry
from translora.store import Store

pytestmark = pytest.mark.service
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET, PREFIX = "translora-fleet", "store"
WORKERS = {"fleet-a": ["--limit", "2"], "fleet-b": ["--work-queue", "transfers", "--limit", "1"]}


@dataclass
class Fleet:
    root: Path
    api: str
    registry_url: str
    target: str
    homes: dict[str, Path]  # worker name -> its TRANSLORA_HOME
    upgrade: FlowRun | None = None  # the upgrade deployment's run, finished
    bundle_runs: list[FlowRun] = field(default_factory=list)  # the upgrade-bundle deployment's runs


def _wait(what: str, check, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()) is not None and value is not False:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )  # its own process group, stopped whole at the end


def _prefect(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([str(BIN / "prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def _stop(procs: list[tuple[subprocess.Popen, signal.Signals]]) -> None:
    """Stops these processes together: a process worker stops on SIGINT (twice: prefect 3.9's may ignore the
    first), the rest on SIGTERM; then SIGKILL to each group for whatever it left behind."""
    for wait in (5, 20):  # one at a time, a worker that ignored its first SIGINT cost 20 s each
        alive = [(proc, sig) for proc, sig in procs if proc.poll() is None]
        for proc, sig in alive:
            proc.send_signal(sig)
        deadline = time.monotonic() + wait
        for proc, _ in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for proc, _ in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fleet(tiny_models, tmp_path_factory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    s3_port, api_port = free_port(), free_port()
    s3, api = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{api_port}/api"
    registry_url, store_url = f"sqlite:///{root / 'registry.db'}", f"s3://{BUCKET}/{PREFIX}"
    # Every machine of the fleet: the API, the bucket (endpoint and keys in the standard AWS variables), the registry.
    aws = {
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AWS_PROFILE", "TRANSLORA_HOME")}
    fleet_env = (
        base
        | aws
        | {
            "PREFECT_API_URL": api,
            "TRANSLORA_STORE": store_url,
            "TRANSLORA_REGISTRY_URL": registry_url,
            "TRANSLORA_REPO": str(REPO),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TOKENIZERS_PARALLELISM": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    state = Fleet(
        root, api, registry_url, str(tiny_models["gemma3"]), {name: root / f"home-{name}" for name in WORKERS}
    )
    procs: dict[str, tuple[subprocess.Popen, signal.Signals]] = {}
    logs = [root / f"{name}.log" for name in ("moto", "server", *WORKERS)]
    try:
        procs["moto"] = (
            _start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], base, root / "moto.log"),
            signal.SIGTERM,
        )
        procs["server"] = (
            _start(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
                fleet_env | {"PREFECT_HOME": str(root / "prefect-server"), "PREFECT_UI_API_URL": api},
                root / "server.log",
            ),
            signal.SIGTERM,
        )
        with pytest.MonkeyPatch.context() as mp:
            for name, value in aws.items():
                mp.setenv(name, value)
            _wait("moto's S3 server", lambda: answers(f"{s3}/moto-api/"), 60, logs)
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            # Two customers' bundles, made on a machine of their own while the server starts; that machine's read
            # cache is then gone, so the registered folders exist nowhere but in the store.
            overrides = tiny_overrides(tiny_models)
            maker = Store(store_url, cache=root / "maker-cache")
            bundles = {
                name: finetune_stages(load_config("cpu", overrides=overrides + [f"source_train.seed={seed}"]), maker)[1]
                for name, seed in (("acme", 1), ("globex", 2))
            }
            with open_registry(registry_url) as registry:
                for name, bundle in bundles.items():
                    registry.add(name, f"{name}-corp", bundle)
            shutil.rmtree(root / "maker-cache")

        _wait("the Prefect server", lambda: answers(f"{api}/health"), 180, logs)
        _prefect(fleet_env, "work-pool", "create", "translora-local", "--type", "process")
        _prefect(fleet_env, "gcl", "create", "translora-gpu", "--limit", "2")  # two GPU slots: both at once
        _prefect(
            fleet_env,
            "--no-prompt",
            "deploy",
            "--prefect-file",
            "deployments/prefect.yaml",
            "--name",
            "upgrade",
            "--name",
            "upgrade-bundle",
        )
        for name, options in WORKERS.items():
            env = fleet_env | {
                "TRANSLORA_HOME": str(state.homes[name]),
                "PREFECT_HOME": str(root / f"prefect-{name}"),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            }
            procs[name] = (
                _start(
                    [
                        str(BIN / "prefect"),
                        "worker",
                        "start",
                        "--pool",
                        "translora-local",
                        "--type",
                        "process",
                        "--name",
                        name,
                        *options,
                    ],
                    env,
                    root / f"{name}.log",
                ),
                signal.SIGINT,
            )
        for name in WORKERS:
            _wait(f"worker {name}", lambda log=root / f"{name}.log": "started!" in log.read_text(), 120, logs)

        with temporary_settings({PREFECT_API_URL: api}):
            params = {
                "target": state.target,
                "run_dir": str(root / "upgrades"),
                "config": load_config("cpu", overrides=overrides).model_dump(mode="json"),
                "max_regression": 1.0,
            }  # tiny random models: the refusal gate has its own test
            run = run_deployment("translora-upgrade/upgrade", parameters=params, timeout=0, as_subflow=False)

            def finished() -> FlowRun | None:
                with get_client(sync_client=True) as client:
                    current = client.read_flow_run(run.id)
                return current if current.state is not None and current.state.is_final() else None

            state.upgrade = _wait("the upgrade", finished, 480, logs)
            with get_client(sync_client=True) as client:
                state.bundle_runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["upgrade-bundle"]))
                )
            yield state
    finally:
        # the workers first, then the server, then the bucket
        _stop([procs[name] for name in WORKERS if name in procs])
        _stop([procs[name] for name in ("server", "moto") if name in procs])


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite gives back naive UTC


def _worker(run: FlowRun) -> str | None:
    return run.labels.get("prefect.worker.name")


def test_each_bundle_is_its_own_flow_run_and_both_workers_transferred(fleet: Fleet):
    assert fleet.upgrade.state.is_completed(), fleet.upgrade.state.message
    assert _worker(fleet.upgrade) == "fleet-a"  # the only worker on the upgrade's queue
    runs = {r.name: r for r in fleet.bundle_runs}
    assert sorted(runs) == ["upgrade acme", "upgrade globex"]
    assert all(r.state.is_completed() for r in runs.values()), [(r.name, r.state.message) for r in runs.values()]
    assert sorted(_worker(r) for r in runs.values()) == ["fleet-a", "fleet-b"]
    with temporary_settings({PREFECT_API_URL: fleet.api}), get_client(sync_client=True) as client:
        for r in runs.values():  # linked to the upgrade, as its subflow runs
            assert client.read_task_run(r.parent_task_run_id).flow_run_id == fleet.upgrade.id
    # Each worker fetched its own bundle from the store and computed its own transfer into its own cache.
    for name, home in fleet.homes.items():
        cache = home / "s3-cache" / BUCKET / PREFIX
        fetched = [p for p in (cache / stages.BUNDLE.name).glob("*") if (p / "bundle.json").exists()]
        made = list((cache / stages.EMIT_BUNDLE.name).glob("*"))
        assert len(fetched) == 1 and len(made) == 1, (name, fetched, made)


def test_the_registry_and_the_summary_are_written_once_every_transfer_ended(fleet: Fleet):
    last_end = max(r.end_time for r in fleet.bundle_runs)
    with open_registry(fleet.registry_url) as registry:
        children = {r.parent_id: r for r in registry.find(source_base=fleet.target)}
        assert set(children) == {"acme", "globex"}
        assert children["acme"].id == child_id("acme", fleet.target) and children["globex"].owner == "globex-corp"
        assert all(_utc(r.created_at) >= last_end for r in children.values())
        assert registry.outdated(fleet.target) == []
        assert {r.id: r.status for r in registry.find() if r.parent_id is None} == {
            "acme": "superseded",
            "globex": "superseded",
        }
    with temporary_settings({PREFECT_API_URL: fleet.api}), get_client(sync_client=True) as client:
        summary = next(a for a in client.read_latest_artifacts() if a.key == SUMMARY_KEY)
        assert summary.created >= last_end and summary.flow_run_id == fleet.upgrade.id
    rows = {r["bundle"]: r for r in json.loads(summary.data)}
    assert {b: r["status"] for b, r in rows.items()} == {"acme": "transferred", "globex": "transferred"}
    assert all(r["filter (kept/distinct/generated)"].startswith("3/") for r in rows.values())
    ui = fleet.api.removesuffix("/api")
    assert {rows[r.name.split()[1]]["transfer run"] for r in fleet.bundle_runs} == {
        f"{ui}/runs/flow-run/{r.id}" for r in fleet.bundle_runs
    }  # each row links its bundle's own run
