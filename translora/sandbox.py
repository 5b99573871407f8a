"""Run generated code and its tests in a separate, limited process (metric code_execution).

`run(program)` writes the program into a fresh scratch directory and runs it with `sys.executable -I -B` through a
small guard script, in a process group of its own. What holds on Linux:

- Time: the process group is killed after `Limits.wall_s` seconds (status "timeout"); RLIMIT_CPU stops a busy loop
  at about the same time even if the parent dies.
- Resources: RLIMIT_AS (memory), RLIMIT_FSIZE (largest file written), RLIMIT_NPROC = 0 (no new processes or
  threads; the kernel exempts root from this one, so the guard refuses them too).
- Files: the working directory, HOME and TMPDIR are the scratch directory, deleted afterwards. When unprivileged
  user namespaces work (`unshare -rnm`; `isolation()` says), every other mount is remounted read-only in a mount
  namespace of its own, so a write elsewhere fails in the kernel. In any case the guard, a CPython audit hook
  installed before the program runs, ends the process (status "failed", reason "sandbox: refused ...") when it opens
  a file for writing outside the scratch directory or removes, renames, links, creates or changes the mode, owner
  or times of anything outside it.
- Network: with namespaces, a network namespace without interfaces (no route anywhere, loopback down); in any case
  the guard refuses every socket operation. Proxy variables are cleared.
- Processes: the guard refuses subprocess, os.system / exec / fork / spawn / posix_spawn, threads, signals to other
  processes, ctypes and the gc's object lists.

What does not hold: reading files is not restricted; an audit hook is in-process, so code written to defeat CPython
(a native extension module) can get past it where namespaces are unavailable. This guards against what generated
code does by accident or naively, not against a determined attacker: run untrusted models' evaluations in a
container as well.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REFUSED = 86  # the guard's exit status when it stops the program
TAIL_BYTES = 4096  # of the program's stderr, for the reason of a failure


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20


@dataclass(frozen=True)
class Outcome:
    status: Literal["passed", "failed", "timeout"]
    reason: str  # one short line
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def isolation() -> str:
    """ "namespaces" when `unshare -rnm` works here (read-only world, no network), else "audit hook"."""
    unshare = shutil.which("unshare")
    if unshare and sys.platform.startswith("linux"):
        try:
            if subprocess.run([unshare, "-rnm", "true"], capture_output=True, timeout=10, check=False).returncode == 0:
                return "namespaces"
        except (OSError, subprocess.SubprocessError):
            pass
    return "audit hook"


def run(program: str, limits: Limits = Limits()) -> Outcome:
    """Run `program` (Python source: a solution followed by its tests) in the sandbox; it passes when it exits 0
    within the limits."""
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="translora-sandbox-")).resolve()
    private = Path(tempfile.mkdtemp(prefix="translora-sandbox-guard-"))  # guard, program and stderr: not in reach
    try:
        (private / "guard.py").write_text(GUARD, encoding="utf-8")
        (private / "program.py").write_text(program, encoding="utf-8")
        namespaces = isolation() == "namespaces"
        argv = [
            sys.executable,
            "-I",
            "-B",
            str(private / "guard.py"),
            str(scratch),
            str(private / "program.py"),
            "1" if namespaces else "0",
        ]
        if namespaces:
            argv = [shutil.which("unshare") or "unshare", "-rnm", "--", *argv]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "LANG": "C.UTF-8",
            "no_proxy": "*",
            "NO_PROXY": "*",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        with open(private / "stderr", "wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                preexec_fn=_limiter(limits),
            )  # noqa: PLW1509 - setrlimit only
            try:
                code = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                return Outcome("timeout", f"still running after {limits.wall_s:g} s; killed", time.monotonic() - start)
            finally:
                _kill_group(proc.pid)  # whatever it left behind
        tail = (private / "stderr").read_bytes()[-TAIL_BYTES:].decode("utf-8", "replace")
        return _outcome(code, tail, limits, time.monotonic() - start)
    finally:
        _remove(scratch)
        _remove(private)


def _limiter(limits: Limits):
    cpu = math.ceil(limits.wall_s) + 1

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _outcome(code: int, stderr: str, limits: Limits, seconds: float) -> Outcome:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")[:200]
    if code == 0:
        return Outcome("passed", "exit 0", seconds)
    if code == REFUSED and last.startswith("sandbox: "):
        return Outcome("failed", last, seconds)
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and seconds >= limits.wall_s * 0.5:
        return Outcome("timeout", f"CPU time limit ({limits.wall_s:g} s)", seconds)
    if code == -signal.SIGXFSZ:
        return Outcome("failed", f"file size limit ({limits.file_bytes} bytes)", seconds)
    if code < 0:
        return Outcome("failed", f"killed by {signal.Signals(-code).name}", seconds)
    return Outcome("failed", last or f"exit status {code}", seconds)


def _remove(folder: Path) -> None:
    def writable(func, path, _exc) -> None:  # a program may leave read-only folders behind
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path):
            os.chmod(path, 0o700)
        func(path)

    shutil.rmtree(folder, onerror=writable)


# The script the child runs first: read-only world (in its own mount namespace), then the audit hook, then the
# program. Every name the hook uses is bound when it is installed, so the program cannot swap them.
GUARD = r"""
import os, sys


def _readonly_world(scratch):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
    KEEP = 2 | 4 | 8 | 1024 | 2048 | 4096  # nosuid, nodev, noexec, noatime, nodiratime, relatime: locked flags
    if libc.mount(scratch.encode(), scratch.encode(), None, MS_BIND | MS_REC, None) != 0:
        raise OSError(ctypes.get_errno(), "cannot bind the scratch directory")
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    import re
    for point in points:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
        if point == scratch or point.startswith(scratch + "/"):
            continue
        try:
            flags = os.statvfs(point).f_flag & KEEP
        except OSError:
            continue
        libc.mount(None, point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)  # best effort


def _install(scratch, refused):
    import pathlib, stat
    lstat, readlink, getcwd, write, exit_now = os.lstat, os.readlink, os.getcwd, os.write, os._exit
    is_link, encoding = stat.S_ISLNK, sys.getfilesystemencoding()
    plain_paths = (pathlib.PosixPath, pathlib.PurePosixPath)
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    root = scratch + "/"

    def refuse(why):
        write(2, ("\nsandbox: refused " + why + "\n").encode("utf-8", "replace"))
        exit_now(refused)

    def real(path):  # os.path.realpath from bound primitives: the program cannot patch it
        parts = path.split("/") if path.startswith("/") else (getcwd() + "/" + path).split("/")
        out, hops = [], 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                out = out[:-1]
                continue
            here = "/" + "/".join(out + [part])
            try:
                link = is_link(lstat(here).st_mode)
            except OSError:
                link = False
            if link:
                hops += 1
                if hops > 40:
                    return None
                target = readlink(here)
                if target.startswith("/"):
                    out = []
                parts = [p for p in target.split("/")] + parts
            else:
                out.append(part)
        return "/" + "/".join(out)

    def inside(path):
        if isinstance(path, int):
            return True  # a descriptor was checked when it was opened
        if type(path) in plain_paths:
            path = str(path)
        if isinstance(path, bytes):
            path = path.decode(encoding, "surrogateescape")
        if not isinstance(path, str):
            return False
        full = real(path)
        return full is not None and (full == scratch or full.startswith(root))

    checked = {  # event -> (indexes of path arguments, indexes of dir_fd arguments)
        "os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.mkdir": ((0,), (2,)),
        "os.chmod": ((0,), (2,)), "os.chown": ((0,), (3,)), "os.utime": ((0,), (3,)),
        "os.truncate": ((0,), ()), "os.rename": ((0, 1), (2, 3)), "os.link": ((0, 1), (2, 3)),
        "os.symlink": ((1,), (2,)), "shutil.rmtree": ((0,), (1,)), "os.chflags": ((0,), ()),
        "os.lchflags": ((0,), ()), "os.setxattr": ((0,), ()), "os.removexattr": ((0,), ()),
    }
    denied = ("subprocess.", "os.system", "os.exec", "os.fork", "os.forkpty", "os.spawn", "os.posix_spawn",
              "os.kill", "os.killpg", "pty.", "socket.", "ctypes.", "_thread.start_new_thread", "gc.get_objects",
              "gc.get_referrers", "gc.get_referents", "sys.addaudithook")

    def hook(event, args):
        if event == "open":
            path, flags = args[0], args[2]
            if isinstance(flags, int) and flags & WRITE and not inside(path):
                refuse("writing " + repr(path) + " (outside the scratch directory)")
        elif event in checked:
            paths, fds = checked[event]
            if any(i < len(args) and args[i] not in (None, -1) for i in fds):
                refuse(event + " relative to a directory descriptor")
            for i in paths:
                if not inside(args[i]):
                    refuse(event + " on " + repr(args[i]) + " (outside the scratch directory)")
        elif event.startswith(denied):
            refuse(event)

    sys.addaudithook(hook)


def _main():
    scratch, program, namespaces = os.path.realpath(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    if namespaces:
        _readonly_world(scratch)
    os.chdir(scratch)
    sys.argv = ["program.py"]
    sys.path[:] = [p for p in sys.path if p and not p.startswith(os.path.dirname(program))]
    _install(scratch, 86)
    return compile(source, "program.py", "exec")


_code = _main()
del _main, _install, _readonly_world
import types
_module = types.ModuleType("__main__")
sys.modules["__main__"] = _module
exec(_code, _module.__dict__)
"""
