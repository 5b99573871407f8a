"""transformers `generate` backend: batched, left-padded, on whatever device torch has."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from translora.errors import GenerationBackendError
from translora.generation.base import GenerationRequest, Generator, cut_at_stop


class HFGenerator(Generator):
    def __init__(self, model, tokenizer, description: str = "generate"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.description = description

    @classmethod
    def load(cls, spec, adapter: Path | None = None, description: str = "generate") -> "HFGenerator":
        from translora.models import load_model
        from translora.training import attach_adapter

        model, tokenizer = load_model(spec)
        if adapter is not None:
            model = attach_adapter(model, adapter)
        return cls(model, tokenizer, description)

    @torch.no_grad()
    def generate(self, prompts: list[str], request: GenerationRequest) -> list[str]:
        tok = self.tokenizer
        tok.padding_side = "left"  # batched generation needs prompts aligned at the right edge
        out: list[str] = []
        torch.manual_seed(request.seed)
        sampling = request.temperature > 0
        for start in tqdm(range(0, len(prompts), request.batch_size), desc=self.description, leave=False,
                          disable=len(prompts) <= request.batch_size):
            batch = prompts[start: start + request.batch_size]
            enc = tok(batch, return_tensors="pt", padding=True).to(self.model.device)
            try:
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=request.max_new_tokens,
                    do_sample=sampling,
                    temperature=request.temperature if sampling else None,
                    top_p=request.top_p if sampling else None,
                    top_k=None,
                    pad_token_id=tok.pad_token_id,
                    stop_strings=list(request.stop) or None,
                    tokenizer=tok if request.stop else None,
                )
            except torch.OutOfMemoryError as exc:
                raise GenerationBackendError(f"out of memory while generating: {exc}") from exc
            new = ids[:, enc["input_ids"].shape[1]:]
            texts = tok.batch_decode(new, skip_special_tokens=True)
            out.extend(cut_at_stop(t, request.stop) for t in texts)
        return out

    def close(self) -> None:
        self.model = None
