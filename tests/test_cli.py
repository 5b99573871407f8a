import subprocess
import sys


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands():
    out = _cli("--help")
    assert out.returncode == 0
    for command in ("run", "finetune", "transfer", "evaluate", "prepare", "config"):
        assert command in out.stdout


def test_config_error_is_one_line_without_traceback():
    out = _cli("config", "--set", "filter.n_keep=many")
    assert out.returncode == 2
    assert out.stderr.startswith("error: invalid config: filter.n_keep")
    assert "Traceback" not in out.stderr


def test_config_prints_resolved_yaml():
    out = _cli("config", "--profile", "paper", "--set", "filter.n_keep=9")
    assert out.returncode == 0 and "n_keep: 9" in out.stdout and "profile: paper" in out.stdout


def test_transfer_from_a_folder_that_is_not_a_bundle(tmp_path):
    out = _cli("transfer", "--bundle", str(tmp_path), "--target", str(tmp_path), "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr
