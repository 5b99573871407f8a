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
    args = cli.parser().parse_args(["transfer", "--bundle", "b", "--target", "my/new-base", "--profile", "paper",
                                    "--set", "target_model.revision=v2"])
    target = cli.command_config(args).target_model
    assert (target.id, target.dtype, target.revision) == ("my/new-base", "bfloat16", "v2")


def test_transfer_from_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    assert cli.main(["transfer", "--bundle", str(tmp_path), "--target", str(tmp_path),
                     "--run-dir", str(tmp_path / "r")]) == 2
    assert "is not a transfer bundle (no bundle.json)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_console_script_runs_without_traceback():
    """One real subprocess: the installed entry point, as a user runs it."""
    out = subprocess.run([sys.executable, "-m", "flows.cli", "config", "--set", "nosuch.x=1"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: unknown config section 'nosuch'; known sections: profile, seed,")


def test_gc_prints_what_it_freed(tmp_path, capsys):
    assert cli.main(["gc", "--store", str(tmp_path / "store")]) == 0
    assert "removed 0 unreferenced outputs, freed 0.0 MiB" in capsys.readouterr().out
