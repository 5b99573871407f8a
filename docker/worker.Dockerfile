# GPU Prefect worker image: runs translora flows on an NVIDIA host (CUDA torch instead of the CPU pin).
# Not built in CI (no Docker engine on the CPU build machines); build with:
#   docker build -f docker/worker.Dockerfile -t translora-worker:latest .
#
# Why python:3.11-slim and not nvidia/cuda: translora requires Python 3.11 (pyproject), which Ubuntu 24.04's archive
# (the nvidia/cuda:*-ubuntu24.04 bases) no longer carries. The CUDA torch wheel brings its own CUDA runtime, cuDNN and
# NCCL as nvidia-* pip packages, so a CUDA base image would only add a second, unused copy; the host's driver is
# mounted in by the NVIDIA container toolkit, which the two NVIDIA_* variables below ask for.
FROM python:3.11-slim-bookworm
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    TRANSLORA_HOME=/cache/translora HF_HOME=/cache/hf
# git: Prefect deployments may pull flow code from a repository
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/translora
COPY pyproject.toml README.md ./
COPY translora translora
COPY tasks tasks
COPY flows flows
RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128 \
    && /opt/venv/bin/pip install --no-cache-dir -e . "prefect-docker==0.7.4"
# Flows run as an unprivileged user (numeric, so Kubernetes' runAsNonRoot can check it); cache and runs are theirs.
RUN groupadd --gid 1000 worker && useradd --create-home --uid 1000 --gid 1000 worker \
    && mkdir -p /cache /runs && chown 1000:1000 /cache /runs
USER 1000:1000
ENV PATH=/opt/venv/bin:$PATH TRANSLORA_REPO=/opt/translora
VOLUME ["/cache", "/runs"]
CMD ["prefect", "worker", "start", "--pool", "translora-gpu"]
