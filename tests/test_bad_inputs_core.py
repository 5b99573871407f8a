"""Inputs a user can get wrong (config files, --set overrides, task files, BIG-Bench Hard task names) give one of the
project's own errors, in one line that names the fix."""

import gzip

import pytest

from translora.config import TaskSpec, load_config
from translora.data.sources import load_task
from translora.errors import ConfigError, DataError


def _config_file(tmp_path, kind: str):
    path = tmp_path / "c.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "latin-1":
        path.write_bytes("task:\n  name: bbh:navigate  # café\n".encode("latin-1"))
    elif kind == "list":
        path.write_text("- filter\n- n_keep: 3\n")
    elif kind == "bad yaml":
        path.write_text("filter:\n  n_keep: [3\n")
    return path


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("directory", "is a directory; give the YAML file itself"),
        ("latin-1", "is not UTF-8 text .*save it as UTF-8"),
        ("list", "must hold a mapping of sections .*not a list"),
        ("bad yaml", "is not valid YAML at line 3, column 1: .*fix the file there"),
    ],
)
def test_bad_config_file(tmp_path, kind, phrase):
    with pytest.raises(ConfigError, match=phrase) as err:
        load_config("cpu", path=_config_file(tmp_path, kind))
    assert "\n" not in str(err.value)


def test_empty_config_file_changes_nothing(tmp_path):
    (tmp_path / "c.yaml").write_text("# nothing yet\n")
    assert load_config("cpu", path=tmp_path / "c.yaml") == load_config("cpu")


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        (["filter.n_keep=[3"], "'filter.n_keep=\\[3': the value is not valid YAML .*a string in quotes"),
        (["task.name=@home"], "not valid YAML"),
        (["=3"], "empty name before '='"),
        (["filter.=3"], "empty name before '='"),
        ([".n_keep=3"], "empty name before '='"),
        (["filter n_keep 3"], "not of the form section.field=value"),
        (["filter=3", "filter.n_keep=2"], "cannot set fields of filter: it is 3, a plain value, not a section"),
        (["filter.n_keep.max=2"], "cannot set fields of filter.n_keep: it is \\d+, a plain value"),
        (["filterr.n_keep=2"], "unknown config section 'filterr' \\(did you mean 'filter'\\?\\); known sections: "),
        (["colour=red"], "unknown config section 'colour'; known sections: profile, seed"),
    ],
)
def test_bad_override(overrides, phrase):
    with pytest.raises(ConfigError, match=phrase) as err:
        load_config("cpu", overrides=overrides)
    assert "\n" not in str(err.value)


def _task_file(tmp_path, kind: str):
    path = tmp_path / "t.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "gzip":
        path.write_bytes(gzip.compress(b'{"input": "q", "target": "a"}\n' * 20))
    elif kind == "nul bytes":
        path.write_bytes(b'{"input": "q", "target": "a"}\n\0\0\0\n')
    elif kind == "empty":
        path.write_text("")
    elif kind == "blank lines":
        path.write_text("\n  \n\n")
    return path


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("directory", "is a directory; give the .jsonl file itself"),
        ("gzip", "is not UTF-8 text \\(a binary or compressed file\\?\\)"),
        ("nul bytes", "is not UTF-8 text"),
        ("empty", "holds no examples; write one"),
        ("blank lines", "holds no examples"),
    ],
)
def test_bad_task_file(tmp_path, kind, phrase):
    path = _task_file(tmp_path, kind)
    with pytest.raises(DataError, match=phrase) as err:
        load_task(TaskSpec(name=f"jsonl:{path}", n_train=10, n_test=1), 0, tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["causal_judgment", "logical_deduction", "../configs/cpu", ""])
def test_unknown_bbh_task_lists_the_known_ones(tmp_path, name):
    """A misspelt BIG-Bench Hard task (here BIG-bench spellings the release renamed or split) names the real ones."""
    with pytest.raises(
        DataError, match="unknown BIG-Bench Hard task .*causal_judgement.*logical_deduction_five_objects"
    ) as err:
        load_task(TaskSpec(name=f"bbh:{name}", n_train=10, n_test=1), 0, tmp_path)
    assert "\n" not in str(err.value)
