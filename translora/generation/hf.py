"""transformers `generate` backend: batched, left-padded, on whatever device torch has."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList, TopPLogitsWarper

from translora.errors import GenerationBackendError
from translora.generation.base import GenerationRequest, Generator, cut_at_stop
from translora.training import virtual_tokens_in_front


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
        """Completions in prompt order. A chunk that runs out of memory is retried at half the batch size (and the
        rest goes on at that size); at one prompt a chunk, out of memory is a retryable backend error."""
        self.tokenizer.padding_side = "left"  # batched generation needs prompts aligned at the right edge
        out: list[str] = []
        torch.manual_seed(request.seed)
        size = request.batch_size
        bar = tqdm(total=len(prompts), desc=self.description, leave=False, disable=len(prompts) <= size)
        while len(out) < len(prompts):
            chunk = prompts[len(out) : len(out) + size]
            texts: list[str] | None = None
            try:
                texts = self._generate_chunk(chunk, request)
            except torch.OutOfMemoryError as exc:
                if size == 1:
                    raise GenerationBackendError(f"out of memory while generating one prompt: {exc}") from exc
            if texts is None:  # handled outside the except block, whose traceback still holds the failed tensors
                size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            out.extend(texts)
            bar.update(len(chunk))
        bar.close()
        return out

    def _generate_chunk(self, prompts: list[str], request: GenerationRequest) -> list[str]:
        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True).to(self.model.device)
        sampler = [InverseCDFSampler(request.temperature, request.top_p)] if request.temperature > 0 else []
        # A prompt-tuning adapter's virtual tokens go in front here (see training.virtual_tokens_in_front): peft's
        # own generate shifts them under left padding and numbers the decoding steps without them.
        prompted = virtual_tokens_in_front(self.model, enc["input_ids"], enc["attention_mask"])
        model, inputs = self.model, dict(enc)
        if prompted is not None:
            model, inputs = self.model.base_model, dict(zip(("inputs_embeds", "attention_mask"), prompted))
        elif len(set(prompts)) < len(prompts):
            inputs = self._shared_prefill(prompts)
        ids = model.generate(
            **inputs,
            max_new_tokens=request.max_new_tokens,
            do_sample=False,  # the sampler, if any, has already picked the token that greedy decoding takes
            logits_processor=LogitsProcessorList(sampler),
            pad_token_id=tok.pad_token_id,
            stop_strings=list(request.stop) or None,
            tokenizer=tok if request.stop else None,
        )
        new = (
            ids if prompted is not None else ids[:, inputs["input_ids"].shape[1] :]
        )  # from embeddings: new tokens only
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [cut_at_stop(t, request.stop) for t in texts]

    def _shared_prefill(self, prompts: list[str]) -> dict:
        """generate's inputs for a chunk that repeats prompts, with each distinct prompt read once: its cache (all
        but the last token, which generate reads itself) is copied to every row that asks for it. Synthesis asks
        for several completions of each prompt, and on a CPU reading the prompt cost more than writing the item."""
        distinct = list(dict.fromkeys(prompts))
        rows = torch.tensor([distinct.index(p) for p in prompts], device=self.model.device)
        enc = self.tokenizer(distinct, return_tensors="pt", padding=True).to(self.model.device)
        ids, attention = enc["input_ids"], enc["attention_mask"]
        if ids.shape[1] < 2:  # nothing to read ahead of generate
            return {"input_ids": ids[rows], "attention_mask": attention[rows]}
        cache = DynamicCache(config=self.model.config)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # as generate counts them under left padding
        self.model(
            input_ids=ids[:, :-1],
            attention_mask=attention[:, :-1],
            position_ids=positions[:, :-1],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_select_indices(rows)
        return {"input_ids": ids[rows], "attention_mask": attention[rows], "cache": cache}

    def close(self) -> None:
        self.model = None


class InverseCDFSampler(LogitsProcessor):
    """Samples from softmax(logits / temperature), nucleus-truncated at top_p, and leaves only the drawn token
    finite, so greedy decoding emits it. One uniform number per row through the cumulative distribution: torch's
    multinomial (what `do_sample` uses) draws an exponential number for every vocabulary entry, which on a CPU took
    about 40% of each decoding step with Gemma 3's 262k-token vocabulary."""

    def __init__(self, temperature: float, top_p: float = 1.0):
        self.temperature = temperature
        self.nucleus = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        scores = scores.float() / self.temperature  # type: ignore[assignment]
        if self.nucleus is not None:
            scores = self.nucleus(input_ids, scores)
        cdf = torch.softmax(scores, dim=-1).cumsum(dim=-1)
        draw = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        token = torch.searchsorted(cdf, draw, side="right").clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)
