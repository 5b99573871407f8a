"""The temporary Prefect server of a process that runs flows without a configured API (the CLI, the bench
scripts), tied to that process's life."""

from __future__ import annotations


def start_temporary_server() -> None:
    """Without a configured API, Prefect starts a temporary server (uvicorn) on first use, which a killed process
    would leave behind (the bench scripts left them running with parent 1). Start that same server here, from the
    main thread (which lives as long as this process), as a child the kernel kills with this process. In a session
    of its own: a signal to the process group (Ctrl-C) must not end it before this process has reported the
    interrupted runs to it (issue 22); Prefect's exit hook stops and reaps it."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    from translora.processes import children_die_with_parent

    if PREFECT_API_URL.value():
        return
    with children_die_with_parent(new_session=True):
        SubprocessASGIServer().start()  # Prefect's own clients reuse this instance (one per process)
