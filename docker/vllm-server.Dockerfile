# vLLM OpenAI-compatible server for GPU hosts, serving one base model with runtime LoRA loading, so translora's
# flows (generation.backend=vllm, generation.vllm.servers) can load each bundle's source adapter into it.
# Not built in CI (no Docker engine on the CPU build machines). Build and run:
#   docker build -f docker/vllm-server.Dockerfile -t translora-vllm:latest .
#   docker run --gpus all -p 8000:8000 -v /models:/models -v /runs:/runs translora-vllm:latest \
#       /models/source-model --enable-lora --max-lora-rank 64
# Mount the run directories at the same path as on the worker, so adapter paths resolve on both sides.
FROM vllm/vllm-openai:v0.33.0
ENV VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
EXPOSE 8000
ENTRYPOINT ["vllm", "serve", "--host", "0.0.0.0", "--port", "8000"]
