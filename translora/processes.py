"""Child processes that die with their parent, whatever signal ended it (SIGKILL included).

A parent that is killed cannot clean up, so the kernel must: on Linux, `prctl(PR_SET_PDEATHSIG)` set in the child
(between fork and exec) makes the kernel send it a signal when the thread that started it ends. Elsewhere this is
a no-op and children are stopped only by a parent that exits normally.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


_patch_lock = threading.Lock()


@contextmanager
def children_die_with_parent(sig: int = signal.SIGKILL) -> Iterator[None]:
    """Within the block, every `subprocess.Popen` without its own `preexec_fn` gets `die_with_parent`: for
    children that library code starts (Prefect's temporary API server)."""
    guard = die_with_parent(sig)
    original = subprocess.Popen

    class GuardedPopen(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("preexec_fn", guard)
            super().__init__(*args, **kwargs)

    with _patch_lock:
        subprocess.Popen = GuardedPopen  # type: ignore[misc]
        try:
            yield
        finally:
            subprocess.Popen = original  # type: ignore[misc]
