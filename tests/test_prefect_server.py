"""The CLI's temporary Prefect server (flows/prefect_server.py): it answers once `ready()` returns, this process's
Prefect settings point at it, and it ends with the process that started it, whether that exits or is killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import answers

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import os, sys, time
from flows.prefect_server import start_temporary_server
ready = start_temporary_server()
ready()
from prefect.settings import get_current_settings
print(get_current_settings().api.url, flush=True)
print(" ".join(open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()), flush=True)
if sys.argv[1] == "wait":
    time.sleep(600)
"""


def _start(mode: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    env = os.environ | {"PREFECT_HOME": str(tmp_path_factory.mktemp("prefect"))}
    env.pop("PREFECT_API_URL", None)
    return env


def _gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(Path(f"/proc/{p}").exists() for p in pids)


@pytest.mark.parametrize("end", ["exit", "SIGKILL"])
def test_the_temporary_server_answers_and_ends_with_its_process(env, end):
    proc = _start("exit" if end == "exit" else "wait", env)
    api, children = proc.stdout.readline().strip(), [int(p) for p in proc.stdout.readline().split()]
    assert api.startswith("http://127.0.0.1:") and len(children) == 1
    assert os.getsid(children[0]) == children[0]  # a session of its own: Ctrl-C to the CLI's group misses it
    assert answers(f"{api}/health")
    if end == "SIGKILL":
        proc.send_signal(signal.SIGKILL)  # no exit hook runs: the kernel must end the server
    assert proc.wait(timeout=30) == (0 if end == "exit" else -signal.SIGKILL)
    assert _gone(children) and not answers(f"{api}/health")


def test_a_configured_api_starts_nothing(env):
    proc = _start("exit", env | {"PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert proc.stdout.readline().strip() == "http://127.0.0.1:9/api"
    assert proc.stdout.readline().strip() == ""
    assert proc.wait(timeout=30) == 0
