"""The temporary Prefect server of a process that runs flows without a configured API (the CLI, the bench
scripts), tied to that process's life.

Prefect would start the same server itself on first use (its SubprocessASGIServer), but only once the flow's
modules are loaded, and then wait for it: ~10 s of imports and ~9 s of server start one after the other on every
CLI run. Started here, before the flow's imports, the two overlap, and this process never loads Prefect's server
modules (~5 s): the server runs in its own process, and this one talks to it through PREFECT_API_URL as to any
other Prefect server."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

# What Prefect's SubprocessASGIServer sets: no UI, the services of an ephemeral server.
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
_PORT_IN_USE = 3  # uvicorn's exit status when it cannot bind


def start_temporary_server() -> Callable[[], None]:
    """Start the server unless a Prefect API is configured (environment or profile), and return `ready`, which
    blocks until the server answers. Call it before the first flow; in between, load the flow's modules.

    The server is a child the kernel kills with this process (also on SIGKILL), started from the main thread
    (which lives as long as this process). It has a session of its own: a signal to the process group (Ctrl-C)
    must not end it before this process has reported the interrupted runs to it (issue 22). An exit hook stops
    and reaps it, after Prefect's own hooks (registered later, run earlier) have flushed logs and events to it."""
    import prefect.context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return lambda: None
    server = _TemporaryServer(settings.to_environment_variables(exclude_unset=True))
    server.spawn()
    atexit.register(server.stop)
    os.environ["PREFECT_API_URL"] = server.api_url  # for this process's Prefect clients and its children
    prefect.context.refresh_global_settings_context()
    return server.wait_ready


class _TemporaryServer:
    def __init__(self, settings_env: dict[str, str]):
        self.env = os.environ | settings_env | _SERVER_ENV
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def spawn(self) -> None:
        import prefect

        from translora.processes import die_with_parent

        with socket.socket() as sock:  # a free port; uvicorn exits 3 should another process take it first
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent)]
            + ["--factory", "prefect.server.api.server:create_app"]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=self.env,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        import httpx
        import prefect.context

        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if (status := self.process.poll()) == _PORT_IN_USE:
                self.spawn()
                os.environ["PREFECT_API_URL"] = self.api_url
                prefect.context.refresh_global_settings_context()
            elif status is not None:
                raise RuntimeError(f"the temporary Prefect server exited with status {status} while starting")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"the temporary Prefect server did not answer within {timeout:.0f} s; raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `prefect server start` and set PREFECT_API_URL"
        )

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 5 s, and reap it."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()
