import subprocess
import sys

import pytest

from flows import cli


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for command in ("run", "finetune", "transfer", "evaluate", "prepare", "config", "gc", "registry"):
        assert command in out


def test_config_error_is_one_line_without_traceback(capsys):
    assert cli.main(["config", "--set", "filter.n_keep=many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid config: filter.n_keep") and err.count("\n") == 1


def test_config_prints_resolved_yaml(capsys):
    assert cli.main(["config", "--profile", "paper", "--set", "filter.n_keep=9"]) == 0
    out = capsys.readouterr().out
    assert "n_keep: 9" in out and "profile: paper" in out


def test_transfer_target_keeps_the_configured_dtype_and_revision():
    args = cli.parser().parse_args(
        [
            "transfer",
            "--bundle",
            "b",
            "--target",
            "my/new-base",
            "--profile",
            "paper",
            "--set",
            "target_model.revision=v2",
        ]
    )
    target = cli.command_config(args).target_model
    assert (target.id, target.dtype, target.revision) == ("my/new-base", "bfloat16", "v2")


def test_transfer_from_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    assert (
        cli.main(["transfer", "--bundle", str(tmp_path), "--target", str(tmp_path), "--run-dir", str(tmp_path / "r")])
        == 2
    )
    assert "is not a transfer bundle (no bundle.json)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_console_script_runs_without_traceback():
    """One real subprocess: the installed entry point, as a user runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "config", "--set", "nosuch.x=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: unknown config section 'nosuch'; known sections: profile, seed,")


def test_gc_prints_what_it_freed(tmp_path, capsys):
    assert cli.main(["gc", "--store", str(tmp_path / "store")]) == 0
    assert "removed 0 unreferenced outputs, freed 0.0 MiB" in capsys.readouterr().out


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"translora {version('translora')}"


def _a_run_with_an_output(tmp_path):
    """A store with one output referenced by a registered run folder, and one output nothing references."""
    from translora.config import load_config
    from translora.stage import Stage, execute
    from translora.store import RunIndex, Store

    store = Store(tmp_path / "store")
    outs = [
        execute(
            Stage(n, lambda ctx: (ctx.out / "w").write_bytes(b"x" * 2048) and {}, (), slot=n),
            load_config(),
            {},
            {},
            store,
        )
        for n in ("kept", "loose")
    ]
    run_dir = tmp_path / "run"
    RunIndex(run_dir).record("data", "kept", outs[0].key, outs[0].path)
    store.register_run(run_dir)
    (run_dir / "transfer" / "t" / "task-b").mkdir(parents=True)
    (run_dir / "transfer" / "t" / "task-b" / "results.json").write_text("{}")
    return store, run_dir, outs


def test_gc_dry_run_says_what_it_would_free_and_frees_nothing(tmp_path, capsys):
    store, _, (kept, loose) = _a_run_with_an_output(tmp_path)
    assert cli.main(["gc", "--dry-run", "--store", str(store.root)]) == 0
    assert "would remove 1 unreferenced outputs" in capsys.readouterr().out and loose.path.exists()
    assert cli.main(["gc", "--store", str(store.root)]) == 0
    assert not loose.path.exists() and kept.path.exists()


def test_runs_lists_the_stores_run_folders_with_their_results(tmp_path, capsys):
    import json

    store, run_dir, _ = _a_run_with_an_output(tmp_path)
    assert cli.main(["runs", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"1 stages  {run_dir.resolve()}" in out and "transfer/t/task-b/results.json" in out
    assert cli.main(["runs", "--json", "--store", str(store.root)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_dir"], r["stages"]) for r in rows] == [(str(run_dir.resolve()), 1)]


def test_upgrade_dry_run_lists_what_would_move_and_starts_nothing(tmp_path, capsys, monkeypatch):
    import json

    from tests.helpers import registry_bundle
    from translora.registry import open_registry

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with open_registry(url) as registry:
        registry.add("acme", "acme-inc", registry_bundle(tmp_path / "a", base="org/old"))
        registry.add("globex", "globex", registry_bundle(tmp_path / "g", base="org/new"))
    monkeypatch.setattr(cli, "start_temporary_server", lambda: (_ for _ in ()).throw(AssertionError("started")))
    assert (
        cli.main(
            [
                "upgrade",
                "--dry-run",
                "--json",
                "--target",
                "org/new",
                "--registry",
                url,
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert [r["id"] for r in json.loads(captured.out)] == ["acme"]
    assert "would move acme (owner acme-inc" in captured.err and not (tmp_path / "run").exists()


def test_registry_retire_and_list_json(tmp_path, capsys):
    import json

    from tests.helpers import registry_bundle

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    assert (
        cli.main(
            [
                "registry",
                "--registry",
                url,
                "add",
                "--id",
                "acme",
                "--owner",
                "acme-inc",
                "--bundle",
                str(registry_bundle(tmp_path / "a")),
            ]
        )
        == 0
    )
    assert cli.main(["registry", "--registry", url, "retire", "acme"]) == 0
    assert "retired acme: upgrades no longer move it" in capsys.readouterr().out
    assert cli.main(["registry", "--registry", url, "list", "--json"]) == 0
    assert [(r["id"], r["status"]) for r in json.loads(capsys.readouterr().out)] == [("acme", "retired")]
    assert cli.main(["registry", "--registry", url, "retire", "nobody"]) == 2


def test_a_transient_failure_exits_75_apart_from_user_errors(tmp_path, capsys, monkeypatch):
    from translora.errors import TransientError

    def fails(args):
        raise TransientError("the vLLM server died mid-stage")

    monkeypatch.setattr(cli, "_cmd_runs", fails)
    assert cli.main(["runs", "--store", str(tmp_path)]) == 75
    assert capsys.readouterr().err.startswith("error (transient, worth a retry): the vLLM server died")
