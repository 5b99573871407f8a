import pytest

from translora.artifacts import Manifest, atomic_dir, folder_hash, hash_path, read_manifest, write_manifest
from translora.errors import ArtifactError


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_existing_only_on_success(tmp_path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(ValueError):
        with atomic_dir(final) as tmp:
            (tmp / "a.txt").write_text("new")
            raise ValueError
    assert (final / "a.txt").read_text() == "old"  # a failed rewrite never corrupts what was there
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_manifest_hash_detects_edits(tmp_path):
    folder = tmp_path / "stage"
    with atomic_dir(folder) as tmp:
        (tmp / "data.jsonl").write_text('{"a": 1}\n')
        write_manifest(tmp, Manifest(stage="x", metrics={"m": 1}))
    assert read_manifest(folder).content_hash == hash_path(folder) == folder_hash(folder)
    (folder / "data.jsonl").write_text('{"a": 2}\n')
    with pytest.raises(ArtifactError, match="changed after it was written"):
        folder_hash(folder)


def test_hash_depends_on_names_and_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("1")
    h1 = hash_path(tmp_path / "a")
    (tmp_path / "a" / "x").rename(tmp_path / "a" / "y")
    assert hash_path(tmp_path / "a") != h1
    with pytest.raises(ArtifactError):
        hash_path(tmp_path / "missing")
