# vLLM OpenAI-compatible server for GPU hosts, serving one base model with runtime LoRA loading, so translora's
# flows (generation.backend=vllm, generation.vllm.servers) can load each bundle's source adapter into it.
# It listens on all interfaces (other containers must reach it), so it refuses to start without an API key:
# vLLM then answers /v1/* only with "Authorization: Bearer $VLLM_API_KEY", and translora's workers send that header
# when they have the same VLLM_API_KEY in their environment.
# Not built in CI (no Docker engine on the CPU build machines). Build and run:
#   docker build -f docker/vllm-server.Dockerfile -t translora-vllm:latest .
#   docker run --gpus all -p 8000:8000 -e VLLM_API_KEY -v /models:/models -v /runs:/runs translora-vllm:latest \
#       /models/source-model --enable-lora --max-lora-rank 64
# Mount the run directories at the same path as on the worker, so adapter paths resolve on both sides.
FROM vllm/vllm-openai:v0.33.0
ENV VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
COPY --chmod=755 docker/vllm-entrypoint.sh /usr/local/bin/vllm-entrypoint.sh
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/vllm-entrypoint.sh"]
