"""translora.sandbox: generated code runs in a limited child process, with namespaces where they work and with the
audit-hook guard alone (as on a machine without user namespaces)."""

import tempfile
import time

import pytest

from translora import sandbox

LIMITS = sandbox.Limits(wall_s=3)


@pytest.fixture(params=["namespaces", "audit hook"])
def mode(request, monkeypatch, tmp_path):
    if request.param == "namespaces" and sandbox.isolation() != "namespaces":
        pytest.skip("unshare -rnm does not work here (no user namespaces)")
    monkeypatch.setattr(sandbox, "isolation", lambda: request.param)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # scratch folders land here, to be counted
    (tmp_path / "tmp").mkdir()
    return request.param


def test_a_correct_solution_passes_and_a_wrong_one_fails(mode, tmp_path):
    solution = "def add(a, b):\n    return a + b\n"
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
    assert sandbox.run(solution + tests, LIMITS).status == "passed"
    wrong = sandbox.run("def add(a, b):\n    return a - b\n" + tests, LIMITS)
    assert wrong.status == "failed" and wrong.reason.startswith("AssertionError")
    broken = sandbox.run("def add(a, b) return a\n" + tests, LIMITS)
    assert broken.status == "failed" and "SyntaxError" in broken.reason
    assert list((tmp_path / "tmp").iterdir()) == []  # every scratch directory is gone


@pytest.mark.parametrize("program", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_code_that_never_ends_is_killed_within_the_limit(mode, program):
    start = time.monotonic()
    outcome = sandbox.run(program, sandbox.Limits(wall_s=1.5))
    assert outcome.status == "timeout" and not outcome.passed
    assert time.monotonic() - start < 5


WRITES = {
    "open": "open({path!r}, 'w').write('x')\n",
    "caught": "try:\n    open({path!r}, 'w').write('x')\nexcept Exception:\n    pass\n",  # no way to swallow it
    "os.open": "import os\nos.close(os.open({path!r}, os.O_WRONLY | os.O_CREAT))\n",
    "symlink": "import os\nos.symlink({path!r}, 'inside')\nopen('inside', 'w').write('x')\n",
    "rename": "open('mine', 'w').write('x')\nimport os\nos.rename('mine', {path!r})\n",
    "pathlib": "import pathlib\npathlib.Path({path!r}).write_text('x')\n",
}


@pytest.mark.parametrize("how", sorted(WRITES))
def test_a_write_outside_the_scratch_directory_fails_and_leaves_nothing(mode, how, tmp_path):
    target = tmp_path / "outside.txt"
    outcome = sandbox.run(WRITES[how].format(path=str(target)) + "print('done')\n", LIMITS)
    assert outcome.status == "failed", outcome
    assert not target.exists()
    assert "outside the scratch directory" in outcome.reason


def test_a_write_beside_the_guard_fails_where_the_world_is_read_only(tmp_path):
    """A path relative to a directory descriptor is invisible to the audit hook's `open` event; the read-only
    mount namespace still stops it."""
    if sandbox.isolation() != "namespaces":
        pytest.skip("unshare -rnm does not work here")
    program = (
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        "os.close(os.open('outside.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
    )
    outcome = sandbox.run(program, LIMITS)
    assert outcome.status == "failed" and "Read-only file system" in outcome.reason
    assert not (tmp_path / "outside.txt").exists()


def test_writes_inside_the_scratch_directory_are_allowed(mode):
    program = (
        "import os, tempfile\nopen('a.txt', 'w').write('x')\nos.mkdir('d')\nos.rename('a.txt', 'd/b.txt')\n"
        "fd, name = tempfile.mkstemp()\nos.close(fd)\nos.remove(name)\n"
        "assert open('d/b.txt').read() == 'x'\n"
    )
    assert sandbox.run(program, LIMITS).status == "passed"


@pytest.mark.parametrize(
    "program, event",
    [
        ("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n", "socket."),
        ("import subprocess\nsubprocess.run(['true'])\n", "subprocess.Popen"),
        ("import os\nos.system('true')\n", "os.system"),
        ("import os\nos.fork()\n", "os.fork"),
    ],
)
def test_network_and_new_processes_are_refused(mode, program, event):
    outcome = sandbox.run(program, LIMITS)
    assert outcome.status == "failed" and event in outcome.reason


def test_memory_is_limited(mode):
    outcome = sandbox.run("block = bytearray(3 << 30)\n", sandbox.Limits(wall_s=5, memory_bytes=512 << 20))
    assert outcome.status == "failed" and "MemoryError" in outcome.reason
