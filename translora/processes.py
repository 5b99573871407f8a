"""Child processes that die with their parent, whatever signal ended it (SIGKILL included).

A parent that is killed cannot clean up, so the kernel must: on Linux, `prctl(PR_SET_PDEATHSIG)` set in the child
(between fork and exec) makes the kernel send it a signal when the thread that started it ends. Elsewhere this is
a no-op and children are stopped only by a parent that exits normally.

`PromptExitOnSignals`: SIGINT and SIGTERM end a process in bounded time, its children stopped and reaped, even
when the signal also killed a server the process would otherwise wait for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Self

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` when the thread that started it ends.

    Start such children from a thread that lives as long as they should (the main thread, or the thread that also
    stops them): the kernel tracks the starting thread, not the process."""
    parent = os.getpid()

    def preexec() -> None:
        if _libc is None:
            return
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody would send the signal
            os.kill(os.getpid(), sig)

    return preexec


def _children() -> list[int]:
    """This process's child pids (Linux: from /proc; elsewhere none are known)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:  # the field after the state: the parent's pid
                found.append(int(entry))
    return found


def stop_children(timeout: float = 3.0) -> None:
    """SIGTERM every child (its whole process group when it leads one: a server in a session of its own), SIGKILL
    what is left after `timeout` seconds, and reap them all, so none is left a zombie or an orphan."""
    pids = _children()

    def send(pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
        except OSError:
            pass

    for pid in pids:
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids:
        for pid in list(pids):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:  # reaped elsewhere (a Popen.wait in another thread)
                done = True
            if done:
                pids.remove(pid)
        if pids and time.monotonic() > deadline:
            for pid in pids:
                send(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


class PromptExitOnSignals:
    """SIGINT and SIGTERM end this process within `grace_s` seconds, whatever its main thread is stuck in.

    The first one unwinds the main thread as a KeyboardInterrupt, so `finally` blocks and the caller's clean-up
    run. It also arms a deadline: if the process is still alive `grace_s` seconds later, or on a second SIGINT
    (a second Ctrl-C), it ends hard: `announce(signal)`, `stop_children()`, `os._exit(128 + signal)`. That is
    for a main thread or an exit hook that waits on something the same signal killed: a signal sent to the
    whole process group (Ctrl-C, systemd's stop) also ends the servers the process talks to, and a client that
    retries against a dead server with back-off (Prefect's does, about a minute per request) would hold the
    process for minutes.

    A library may swap in a handler of its own for a while (Prefect raises its TerminationSignal on SIGTERM
    within a flow run, and sends the signal again to the handler installed here once it has reported the
    crash). The deadline is armed all the same: Python's C-level handler writes the number of every signal it
    catches to the wakeup fd, whichever Python handler then runs, and a thread here reads it. The first signal
    and `announce` are kept for the caller (`signal`, `announce_once`). Outside the main thread this does
    nothing."""

    def __init__(self, grace_s: float, announce: Callable[[int], None]):
        self.grace_s, self.announce = grace_s, announce
        self.signal: int | None = None
        self._lock, self._announced, self._raised = threading.RLock(), False, False  # a handler may run while held
        self._installed = False

    def __enter__(self) -> Self:
        if threading.current_thread() is not threading.main_thread():
            return self
        import socket

        self._reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer
        self._old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._old_handlers = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        self._installed = True
        threading.Thread(target=self._watch, name="translora-signals", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        """Restores the handlers and the wakeup fd; an armed deadline stays armed (exit hooks can hang too)."""
        if not self._installed:
            return
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(self._old_fd)
        self._writer.close()  # the watcher reads end-of-file and stops
        self._installed = False

    def announce_once(self) -> None:
        with self._lock:
            if self._announced:
                return
            self._announced = True
        self.announce(self.signal or signal.SIGINT)

    def _first(self, sig: int) -> None:
        with self._lock:
            if self.signal is not None:
                return
            self.signal = sig
        threading.Thread(target=self._end_after_grace, name="translora-exit-deadline", daemon=True).start()

    def _handler(self, sig: int, frame) -> None:
        self._first(sig)
        if not self._raised:  # later ones (Prefect's resend, a repeated signal) must not break the clean-up
            self._raised = True
            raise KeyboardInterrupt

    def _watch(self) -> None:
        seen = 0
        while data := self._reader.recv(64):
            for sig in data:
                if sig not in (signal.SIGINT, signal.SIGTERM):
                    continue
                self._first(sig)
                if sig == signal.SIGINT and seen:  # a second Ctrl-C: the user will not wait
                    self._end_now()
                seen += 1
        self._reader.close()

    def _end_after_grace(self) -> None:
        time.sleep(self.grace_s)
        self._end_now()

    def _end_now(self) -> None:
        self.announce_once()
        stop_children()
        os._exit(128 + (self.signal or signal.SIGINT))
