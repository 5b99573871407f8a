"""The adapter registry on both stores (SQLite, and a throwaway PostgreSQL server), and its CLI."""

from __future__ import annotations

import glob
import itertools
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from flows.cli import main
from tests.helpers import registry_bundle
from translora.errors import UserError
from translora.registry import (
    DuplicateRegistrationError,
    RegistryError,
    UnknownRegistrationError,
    open_registry,
)


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)), None
    )
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a loopback port, for this test session only."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (requirements/cpu.txt has it)")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found; scripts/test.sh installs the Debian `postgresql` package")
    root = Path(tempfile.mkdtemp(prefix="translora-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root: run them as the package's `postgres` user
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:  # a free port; the tiny race with other processes is acceptable in a test
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run(
        [*run_as, bindir / "initdb", "-D", data, "-U", "translora", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB"
    subprocess.run(
        [*run_as, bindir / "pg_ctl", "-D", data, "-l", root / "log", "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://translora@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_db_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty registry's URL on each store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'registry.db'}"  # a missing folder is created
    server = request.getfixturevalue("postgres_server")
    name = f"registry_{os.getpid()}_{next(_db_numbers)}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{server}/{name}"


def test_add_get_and_list(registry_url: str, tmp_path: Path) -> None:
    bundle = registry_bundle(tmp_path / "b1")
    with open_registry(registry_url) as reg:
        added = reg.add("acme-bool", "acme", bundle, eval_set="s3://acme/eval.jsonl")
        assert reg.get("acme-bool") == added
        assert (added.task, added.source_base, added.source_base_hash) == (
            "bbh:boolean_expressions",
            "org/base-a",
            "h-org/base-a",
        )
        assert added.bundle == str(bundle.resolve()) and added.status == "active" and added.parent_id is None
        assert added.created_at.tzinfo is not None
    with open_registry(registry_url) as reg:  # persisted, not held in memory
        assert [r.id for r in reg.find()] == ["acme-bool"]
        assert reg.get("acme-bool").eval_set == "s3://acme/eval.jsonl"


def test_duplicate_id_is_refused(registry_url: str, tmp_path: Path) -> None:
    with open_registry(registry_url) as reg:
        reg.add("x", "acme", registry_bundle(tmp_path / "b1"))
        with pytest.raises(DuplicateRegistrationError, match="'x' already exists; pick another id"):
            reg.add("x", "globex", registry_bundle(tmp_path / "b2", base="org/base-b"))
        assert reg.get("x").owner == "acme"
        assert issubclass(DuplicateRegistrationError, UserError)


def test_unknown_id(registry_url: str) -> None:
    with open_registry(registry_url) as reg, pytest.raises(UnknownRegistrationError, match="no registration"):
        reg.get("nope")


def test_not_a_bundle_is_refused(registry_url: str, tmp_path: Path) -> None:
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "bundle.json").write_text(json.dumps({"source_model": {"id": "m"}, "source_model_hash": "h"}))
    with open_registry(registry_url) as reg:
        with pytest.raises(RegistryError, match="not a transfer bundle"):
            reg.add("x", "acme", tmp_path)
        with pytest.raises(RegistryError, match="not a complete transfer bundle"):  # no task_card.json
            reg.add("x", "acme", incomplete)
        assert reg.find() == []


def test_filter_by_owner_and_base(registry_url: str, tmp_path: Path) -> None:
    with open_registry(registry_url) as reg:
        reg.add("a1", "acme", registry_bundle(tmp_path / "a1", base="org/base-a"))
        reg.add("a2", "acme", registry_bundle(tmp_path / "a2", base="org/base-b"))
        reg.add("g1", "globex", registry_bundle(tmp_path / "g1", base="org/base-a"))
        assert [r.id for r in reg.find(owner="acme")] == ["a1", "a2"]
        assert [r.id for r in reg.find(source_base="org/base-a")] == ["a1", "g1"]
        assert [r.id for r in reg.find(owner="acme", source_base="org/base-b")] == ["a2"]
        assert [r.id for r in reg.outdated("org/base-b")] == ["a1", "g1"]


def test_provenance_chain(registry_url: str, tmp_path: Path) -> None:
    with open_registry(registry_url) as reg:
        reg.add("v1", "acme", registry_bundle(tmp_path / "v1", base="org/base-a"), eval_set="/acme/eval.jsonl")
        v2 = reg.add_transferred("v2", registry_bundle(tmp_path / "v2", base="org/base-b"), parent_id="v1")
        assert (v2.owner, v2.eval_set, v2.parent_id) == ("acme", "/acme/eval.jsonl", "v1")
        reg.add_transferred("v3", registry_bundle(tmp_path / "v3", base="org/base-c"), parent_id="v2")
        assert [(r.id, r.source_base) for r in reg.lineage("v3")] == [
            ("v3", "org/base-c"),
            ("v2", "org/base-b"),
            ("v1", "org/base-a"),
        ]
        # an upgrade starts from the newest of a line, not again from the ones already transferred
        assert [r.status for r in reg.find()] == ["superseded", "superseded", "active"]
        assert [r.id for r in reg.outdated("org/base-d")] == ["v3"]
        assert reg.outdated("org/base-c") == []
        with pytest.raises(UnknownRegistrationError):
            reg.add_transferred("v4", registry_bundle(tmp_path / "v4"), parent_id="missing")
        assert len(reg.find()) == 3


def test_a_retired_registration_is_never_moved_again(registry_url: str, tmp_path: Path) -> None:
    with open_registry(registry_url) as reg:
        reg.add("a1", "acme", registry_bundle(tmp_path / "a1", base="org/base-a"))
        reg.add("g1", "globex", registry_bundle(tmp_path / "g1", base="org/base-a"))
        assert reg.retire("a1").status == "retired" and reg.get("a1").status == "retired"
        assert [r.id for r in reg.outdated("org/base-b")] == ["g1"]
        with pytest.raises(UnknownRegistrationError):
            reg.retire("missing")


def test_default_url_lives_under_translora_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRANSLORA_REGISTRY_URL", raising=False)
    monkeypatch.setenv("TRANSLORA_HOME", str(tmp_path / "home"))
    with open_registry() as reg:
        reg.add("x", "acme", registry_bundle(tmp_path / "b"))
    assert (tmp_path / "home" / "registry.db").is_file()
    monkeypatch.setenv("TRANSLORA_REGISTRY_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with open_registry() as reg:
        assert reg.find() == []


def test_unreachable_or_malformed_url_is_a_user_error() -> None:
    with pytest.raises(RegistryError, match=r"cannot open the registry at postgresql\+psycopg://u:\*\*\*@"):
        open_registry("postgresql+psycopg://u:secret@127.0.0.1:1/db")
    with pytest.raises(RegistryError, match="not a database URL"):
        open_registry("not a url")


# The CLI, in-process


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["registry", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_add_list_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    b1, b2 = registry_bundle(tmp_path / "b1"), registry_bundle(tmp_path / "b2", base="org/base-b", task="bbh:navigate")
    code, out, _ = _cli(
        capsys,
        "--registry",
        url,
        "add",
        "--id",
        "one",
        "--owner",
        "acme",
        "--bundle",
        str(b1),
        "--eval-set",
        "https://acme.example/eval.jsonl",
    )
    assert code == 0 and out == "registered one: bbh:boolean_expressions on org/base-a (owner acme)\n"
    # --registry also after the subcommand
    assert _cli(capsys, "add", "--id", "two", "--owner", "globex", "--bundle", str(b2), "--registry", url)[0] == 0

    code, out, _ = _cli(capsys, "--registry", url, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["id", "owner", "task"] and len(lines) == 3
    assert lines[1].startswith("one ") and lines[2].startswith("two ")
    code, out, _ = _cli(capsys, "list", "--registry", url, "--base", "org/base-b")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["two"]
    assert _cli(capsys, "list", "--registry", url, "--owner", "nobody")[1] == "no registrations\n"

    code, out, _ = _cli(capsys, "--registry", url, "show", "one")
    assert code == 0
    assert "eval_set:         https://acme.example/eval.jsonl" in out.splitlines()
    assert "parent_id:        -" in out.splitlines()
    assert out.splitlines()[-1] == "provenance:       one (org/base-a)"


def test_cli_errors_are_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSLORA_REGISTRY_URL", f"sqlite:///{tmp_path / 'r.db'}")  # the env var picks the store
    bundle = str(registry_bundle(tmp_path / "b"))
    assert _cli(capsys, "add", "--id", "one", "--owner", "acme", "--bundle", bundle)[0] == 0
    for args, message in [
        (("add", "--id", "one", "--owner", "acme", "--bundle", bundle), "error: registration id 'one' already exists"),
        (
            ("add", "--id", "two", "--owner", "acme", "--bundle", str(tmp_path)),
            f"error: {tmp_path} is not a transfer bundle",
        ),
        (("show", "ghost"), "error: no registration with id 'ghost'"),
    ]:
        code, out, err = _cli(capsys, *args)
        assert code == 2 and err.startswith(message) and err.count("\n") == 1 and out == "", (args, err)
    assert (tmp_path / "r.db").is_file()
