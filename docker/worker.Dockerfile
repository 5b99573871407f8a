# GPU Prefect worker image: runs translora flows on an NVIDIA host (CUDA torch instead of the CPU pin).
# Not built in CI (no Docker engine on the CPU build machines); build with:
#   docker build -f docker/worker.Dockerfile -t translora-worker:latest .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 TRANSLORA_HOME=/cache/translora HF_HOME=/cache/hf
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/translora
COPY pyproject.toml README.md ./
COPY translora translora
COPY tasks tasks
COPY flows flows
RUN python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128 \
    && /opt/venv/bin/pip install --no-cache-dir -e . "prefect-docker"
ENV PATH=/opt/venv/bin:$PATH TRANSLORA_REPO=/opt/translora
VOLUME ["/cache", "/runs"]
CMD ["prefect", "worker", "start", "--pool", "translora-gpu"]
