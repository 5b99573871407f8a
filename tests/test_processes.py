"""Processes translora starts die with it, whatever ended it; a server that stops answering fails the stage with a
message that says what hung; managed vLLM servers are private to the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests import fake_vllm
from tests.helpers import tiny_overrides
from translora.config import VLLMSpec
from translora.errors import GenerationBackendError
from translora.generation.base import GenerationRequest
from translora.generation.vllm import VLLMGenerator, VLLMServer

ROOT = Path(__file__).resolve().parents[1]
FAKE = [sys.executable, str(Path(fake_vllm.__file__).resolve())]


def _gone(pids: list[int], within: float) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to `within` seconds."""
    deadline = time.time() + within
    while True:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


def test_a_server_that_stops_answering_fails_the_request_naming_what_hung():
    server = fake_vllm.serve("stall")
    try:
        gen = VLLMGenerator(fake_vllm.url(server), description="target synthesis", request_timeout=1)
        start = time.time()
        with pytest.raises(
            GenerationBackendError,
            match=r"did not answer within 1 s while target synthesis "
            r"\(prompts 1-2 of 2\).*generation.vllm.request_timeout",
        ):
            gen.generate(["1.", "2."], GenerationRequest(max_new_tokens=4))
        assert time.time() - start < 10
    finally:
        server.shutdown()


def test_managed_servers_listen_on_loopback_with_a_fresh_key_each(tmp_path):
    servers = [VLLMServer(VLLMSpec(command=FAKE), "m", None, tmp_path / f"{i}.log").start() for i in range(2)]
    try:
        for srv in servers:
            assert srv.command()[srv.command().index("--host") + 1] == "127.0.0.1"
            assert psutil.Process(srv.process.pid).environ()["VLLM_API_KEY"] == srv.api_key
            assert VLLMGenerator(srv.url, server=srv).client.headers["Authorization"] == f"Bearer {srv.api_key}"
        assert servers[0].api_key != servers[1].api_key and len(servers[0].api_key) >= 32
    finally:
        for srv in servers:
            srv.stop()


def test_a_managed_vllm_server_dies_with_a_killed_parent(tmp_path):
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from translora.config import VLLMSpec
        from translora.generation.vllm import VLLMServer
        srv = VLLMServer(VLLMSpec(command={FAKE!r}), "m", None, Path({str(tmp_path / "log")!r})).start()
        print(srv.process.pid, flush=True)
        time.sleep(600)
    """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    server_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(server_pid)
    parent.kill()  # SIGKILL: no handler, no atexit, nothing of the parent runs
    parent.wait()
    assert _gone([server_pid], within=10) == []


def test_a_killed_cli_run_leaves_no_process_behind(tiny_models, tmp_path):
    """`translora run` SIGKILLed in the middle of a stage: its temporary Prefect server (and anything else it
    started) goes too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "TRANSLORA_HOME": str(tmp_path / "home"),
        "TRANSLORA_STORE": str(tmp_path / "store"),
    }
    run_dir = tmp_path / "run"
    sets = [a for o in tiny_overrides(tiny_models) + ["source_train.max_steps=400"] for a in ("--set", o)]
    cli = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "--run-dir", str(run_dir), *sets],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while not (run_dir / "data").exists():  # prepare-data recorded: the source adapter is training now
            assert cli.poll() is None and time.time() < deadline, "the run ended or never reached a stage"
            time.sleep(0.5)
        children = psutil.Process(cli.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in children), [c.cmdline() for c in children]
    finally:
        cli.kill()
        cli.wait()
    alive = _gone([c.pid for c in children], within=10)
    for pid in alive:  # the test failed; do not leave them running
        os.kill(pid, signal.SIGKILL)
    assert alive == []


def test_a_local_model_is_served_offline_and_a_hub_id_as_the_environment_allows(tmp_path, monkeypatch):
    """vLLM must not reach for the hub for a folder (a machine without one hangs), but must be able to fetch a
    hub id when the caller's environment allows it."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    folder = VLLMServer(VLLMSpec(), str(tmp_path), None, tmp_path / "log").environment()
    hub = VLLMServer(VLLMSpec(), "HuggingFaceTB/SmolLM2-135M-Instruct", None, tmp_path / "log").environment()
    assert folder["HF_HUB_OFFLINE"] == "1" and "HF_HUB_OFFLINE" not in hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert VLLMServer(VLLMSpec(), "org/model", None, tmp_path / "log").environment()["HF_HUB_OFFLINE"] == "1"
