"""translora as a service, for real: scripts/serve.sh starts a Prefect server on loopback, the process pool, the
translora-gpu concurrency limit, the `upgrade` deployment of deployments/prefect.yaml and a process worker; a
`translora.base-model.released` event runs the upgrade; the finished run is looked at in headless Chromium.

One module-scoped service (about 3 minutes on 2 cores): the tests read what it did.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import AwaitingRetry
from websockets.sync.client import connect

from flows.finetune import finetune
from flows.upgrade import SUMMARY_KEY
from tests.helpers import answers, free_port, tiny_overrides
from translora.artifacts import read_jsonl, write_jsonl
from translora.config import load_config
from translora.fleet import child_id
from translora.registry import open_registry

pytestmark = pytest.mark.service
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")


@dataclass
class Service:
    root: Path
    api: str  # http://127.0.0.1:PORT/api
    ui: str
    registry_url: str
    target: str
    first: FlowRun  # the event's upgrade run, after its first attempt
    retried: FlowRun  # the same run after the retry
    subflows: list[FlowRun]
    leftovers: list[str]  # processes of the service still alive after it was stopped (filled at teardown)


def _wait(what: str, check, timeout: float, log: Path, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := check()) is not None and value is not False:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; service log:\n{log.read_text()[-4000:]}")


def _upgrade_runs() -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["upgrade"])))


def _finished(run_id: UUID, attempt: int) -> FlowRun | None:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    return run if run.run_count >= attempt and run.state is not None and run.state.is_final() else None


def _group_members(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.split()[1] == str(pgid)]


@pytest.fixture(scope="module")
def service(tiny_models, tmp_path_factory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("service")
    port = free_port()
    api, registry_url = f"http://127.0.0.1:{port}/api", f"sqlite:///{root / 'registry.db'}"
    overrides = tiny_overrides(tiny_models)
    # What a platform would put in its deployment: its config and where the runs go (merged over prefect.yaml's).
    params = {
        "config": load_config("cpu", overrides=overrides).model_dump(mode="json"),
        "run_dir": str(root / "upgrades"),
        "max_regression": 1.0,  # tiny random models: the refusal gate is tested in tests/flows/test_upgrade.py
        # serve.sh's one worker runs the bundles in the upgrade's own run; test_fanout.py fans them out
        "bundle_deployment": None,
    }
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "TRANSLORA_SERVE_PORT": str(port),
        "TRANSLORA_GPU_SLOTS": "1",
        "TRANSLORA_UPGRADE_PARAMS": json.dumps(params),
        "TRANSLORA_STORE": str(root / "store"),
        "TRANSLORA_REGISTRY_URL": registry_url,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env.pop("PREFECT_API_URL", None)
    log = root / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "serve.sh")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # its own process group
    state = Service(root, api, api.removesuffix("/api"), registry_url, str(tiny_models["gemma3"]), None, None, [], [])
    try:
        with pytest.MonkeyPatch.context() as mp, temporary_settings({PREFECT_API_URL: api}):
            mp.setenv("TRANSLORA_STORE", str(root / "store"))  # the worker's flows read the same store
            _wait("the Prefect server", lambda: answers(f"{api}/health"), 180, log)
            # Two customers' bundles, made while the script deploys and starts its worker.
            bundles = {
                name: Path(
                    finetune(load_config("cpu", overrides=overrides + [f"source_train.seed={seed}"]), str(root / name))
                )
                for name, seed in (("acme", 1), ("globex", 2))
            }
            eval_set = root / "acme-eval.jsonl"
            write_jsonl(eval_set, read_jsonl(root / "acme" / "data" / "test.jsonl"))
            globex = shutil.copytree(bundles["globex"], root / "globex-bundle")
            with open_registry(registry_url) as registry:
                registry.add("acme", "acme-corp", bundles["acme"], eval_set=str(eval_set))
                registry.add("globex", "globex-inc", globex)
            moved = shutil.move(globex, root / "globex-elsewhere")  # globex's transfer fails on the first attempt
            _wait("the worker", lambda: "started!" in log.read_text(), 180, log)

            # The platform announces a new base model; the deployment's trigger turns the event into a run.
            emit_event(
                event="translora.base-model.released",
                resource={"prefect.resource.id": "translora.base-model.gemma3"},
                payload={"target": state.target},
            )
            EventsWorker.drain_all(timeout=30)  # sent now, not when this process exits
            run_id = _wait("the triggered upgrade run", lambda: [r.id for r in _upgrade_runs()] or None, 60, log)[0]
            state.first = _wait("the upgrade's first attempt", lambda: _finished(run_id, 1), 240, log)

            # The operator fixes globex's bundle and retries the run, as the UI's Retry button does.
            shutil.move(moved, globex)
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(run_id, AwaitingRetry(message="retry from the test"), force=True)
            state.retried = _wait("the retried upgrade", lambda: _finished(run_id, 2), 180, log)
            with get_client(sync_client=True) as client:
                state.subflows = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]))
                )
            yield state
    finally:
        proc.send_signal(signal.SIGTERM)  # serve.sh stops its worker, then its server
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        state.leftovers = _group_members(proc.pid)
        if state.leftovers:
            os.killpg(proc.pid, signal.SIGKILL)
        assert not state.leftovers, f"serve.sh left processes behind: {state.leftovers}"


def test_the_release_event_upgrades_every_bundle_once_and_a_retry_redoes_only_the_failed(service: Service):
    assert service.first.state.is_failed() and "globex" in service.first.state.message
    assert service.retried.state.is_completed(), service.retried.state.message
    assert service.retried.parameters["target"] == service.target  # from the event's payload: the id only
    with open_registry(service.registry_url) as registry:
        children = {r.parent_id: r for r in registry.find(source_base=service.target)}
        assert set(children) == {"acme", "globex"}
        assert children["acme"].id == child_id("acme", service.target) and children["acme"].owner == "acme-corp"
        assert registry.outdated(service.target) == []
        assert {r.id: r.status for r in registry.find(source_base=None) if r.parent_id is None} == {
            "acme": "superseded",
            "globex": "superseded",
        }
    # acme once (attempt 1), globex twice (failed, then retried): the retry did not redo acme.
    names = sorted((r.parameters["bundle"].endswith("globex-bundle"), r.state.type.value) for r in service.subflows)
    assert names == [(False, "COMPLETED"), (True, "COMPLETED"), (True, "FAILED")], names
    # One slot in translora-gpu: no two transfers ran at once.
    for a, b in itertools.combinations(service.subflows, 2):
        assert a.end_time <= b.start_time or b.end_time <= a.start_time, (a.name, b.name)
    with temporary_settings({PREFECT_API_URL: service.api}), get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("translora-gpu")
        artifacts = {a.key: a for a in client.read_latest_artifacts()}
    assert limit.limit == 1
    rows = {r["bundle"]: r for r in json.loads(artifacts[SUMMARY_KEY].data)}
    assert list(rows) == ["globex"] and rows["globex"]["status"] == "transferred"  # the retry's own summary


class Browser:
    """Headless Chromium (Debian's package) driven over the DevTools protocol: open a page, click, read, shoot."""

    def __init__(self, profile: Path) -> None:
        # Its own profile (no state from, or left in, the user's) and process group (stopped whole at the end).
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "--window-size=1600,1000",
                "about:blank",
            ],
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for line in self.proc.stderr:
            if found := re.search(r"DevTools listening on ws://127.0.0.1:(\d+)/", line):
                break
        else:
            raise AssertionError("chromium did not start its DevTools endpoint")
        with urllib.request.urlopen(f"http://127.0.0.1:{found.group(1)}/json/list", timeout=10) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=2**26)
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while (msg := json.loads(self.ws.recv())).get("id") != msg_id:
            pass  # an event
        assert "error" not in msg, msg
        return msg["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for_text(self, *texts: str, timeout: float = 45) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.js("document.body ? document.body.innerText : ''") or ""
            if all(t in body for t in texts):
                return body
            time.sleep(0.5)
        raise AssertionError(f"{texts} not all on the page after {timeout:.0f} s; it shows:\n{body[-3000:]}")

    def click(self, element_id: str) -> None:
        self.wait_for(f"!!document.getElementById({element_id!r})")
        self.js(f"document.getElementById({element_id!r}).click()")

    def wait_for(self, condition: str, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(condition):
            assert time.monotonic() < deadline, f"{condition} still false after {timeout:.0f} s"
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.ws.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture()
def browser(service: Service) -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("no chromium; scripts/test.sh installs Debian's package")
    chromium = Browser(service.root / "chromium-profile")
    yield chromium
    chromium.close()


def test_the_finished_run_in_the_prefect_ui(service: Service, browser: Browser):
    """What an operator sees: the run's task runs (both attempts), its artifacts, and the summary table."""
    browser.open(f"{service.ui}/runs/flow-run/{service.retried.id}")
    browser.click("task-runs")
    browser.wait_for_text("upgrade acme", "upgrade globex", "Failed", "Completed")
    browser.screenshot(service.root / "upgrade-run.png")
    browser.click("artifacts")
    browser.wait_for_text(SUMMARY_KEY, "translora-upgrade-progress")
    with temporary_settings({PREFECT_API_URL: service.api}), get_client(sync_client=True) as client:
        summary = next(a for a in client.read_latest_artifacts() if a.key == SUMMARY_KEY)
    browser.open(f"{service.ui}/artifacts/artifact/{summary.latest_id}")  # the key's newest version
    table = browser.wait_for_text("globex-inc", "transferred", "3 labelled")
    assert f"{service.ui}/runs/flow-run/" in table  # the link to globex's transfer subflow run
    browser.screenshot(service.root / "upgrade-summary.png")
    for shot in ("upgrade-run.png", "upgrade-summary.png"):
        assert (service.root / shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
