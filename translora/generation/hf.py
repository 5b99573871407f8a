"""The transformers backend: batched, left-padded decoding on whatever device torch has, with translora's own
decoding loop over the model's cache (finished rows leave the batch)."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, TopPLogitsWarper

from translora.errors import GenerationBackendError
from translora.generation.base import GenerationRequest, Generator, cut_at_stop
from translora.generation.drawn import Drawn
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
        # A prompt-tuning adapter's virtual tokens go in front here (see training.virtual_tokens_in_front): peft's
        # own generate shifts them under left padding and numbers the decoding steps without them.
        prompted = virtual_tokens_in_front(self.model, enc["input_ids"], enc["attention_mask"])
        if prompted is not None:
            model, (embeds, attention) = self.model.base_model, prompted
            cache, logits = self._prefill(model, {"inputs_embeds": embeds}, attention)
        elif len(set(prompts)) < len(prompts):
            model = self.model
            cache, logits, attention = self._shared_prefill(prompts)
        else:
            model, attention = self.model, enc["attention_mask"]
            cache, logits = self._prefill(model, {"input_ids": enc["input_ids"]}, attention)
        drawn: list[Drawn | None] = [(request.drawn or {}).get(p) for p in prompts]
        tokens = self._decode(model, cache, logits, attention, request, drawn)
        return [cut_at_stop(tok.decode(t, skip_special_tokens=True), request.stop) for t in tokens]

    def _prefill(self, model, inputs: dict, attention: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
        """Reads a left-padded batch into a fresh cache; returns it and the next token's logits, [rows, vocab]."""
        cache = DynamicCache(config=model.config)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        out = model(
            **inputs,
            attention_mask=attention,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return cache, out.logits[:, -1, :]

    def _shared_prefill(self, prompts: list[str]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """The prefill of a chunk that repeats prompts, with each distinct prompt read once and its cache and logits
        copied to every row that asks for it. Synthesis asks for several completions of each prompt, and on a CPU
        reading the prompt cost more than writing the item."""
        distinct = list(dict.fromkeys(prompts))
        rows = torch.tensor([distinct.index(p) for p in prompts], device=self.model.device)
        enc = self.tokenizer(distinct, return_tensors="pt", padding=True).to(self.model.device)
        cache, logits = self._prefill(self.model, {"input_ids": enc["input_ids"]}, enc["attention_mask"])
        cache.batch_select_indices(rows)
        return cache, logits[rows], enc["attention_mask"][rows]

    def _decode(
        self,
        model,
        cache: DynamicCache,
        logits: torch.Tensor,
        attention: torch.Tensor,
        request: GenerationRequest,
        drawn: list[Drawn | None],
    ) -> list[list[int]]:
        """Each row's new tokens, decoded one step at a time from the prefilled cache. A row leaves the batch as soon
        as it ends (an end-of-text token or a stop string): transformers' generate computes every row until the
        last one ends, and a synthetic item a third of the token cap long then cost the whole cap."""
        sampler = InverseCDFSampler(request.temperature, request.top_p) if request.temperature > 0 else None
        ends = self._end_tokens()
        new: list[list[int]] = [[] for _ in range(logits.shape[0])]
        nodes = [d.root if d else None for d in drawn]  # each row's place in its prompt's trie of drawn sequences
        probs: list[list[float]] = [[] for _ in new]  # each new token's probability, for `drawn`
        removing = any(d is not None for d in drawn)
        active = list(range(logits.shape[0]))  # the rows still decoding, in the batch's current order
        position = attention.sum(-1, keepdim=True)  # the next token's position, counted from each row's first
        for step in range(request.max_new_tokens):
            logits = logits.float()
            if removing:
                original = torch.log_softmax(logits / max(request.temperature, 1e-6), -1)
                logits = without_drawn(logits, [nodes[row] for row in active], request.temperature)
            scores = sampler(None, logits) if sampler else logits
            chosen = scores.argmax(-1)
            going = []
            for i, (row, token) in enumerate(zip(active, chosen.tolist())):
                new[row].append(token)
                text = self.tokenizer.decode(new[row], skip_special_tokens=True) if request.stop else ""
                ended = token in ends or any(s in text for s in request.stop) or step == request.max_new_tokens - 1
                if (row_drawn := drawn[row]) is not None:
                    probs[row].append(float(original[i, token].exp()))
                    nodes[row] = Drawn.step(nodes[row], token)
                    if ended:  # what later rows and draws of this prompt must not repeat
                        row_drawn.add(new[row], probs[row])
                if not ended:
                    going.append(i)
            if not going:
                break
            if len(going) < len(active):
                keep = torch.tensor(going, device=logits.device)
                cache.batch_select_indices(keep)
                active, chosen = [active[i] for i in going], chosen[keep]
                attention, position = attention[keep], position[keep]
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
            out = model(
                input_ids=chosen[:, None], attention_mask=attention, position_ids=position, cache=cache, use_cache=True
            )
            logits, position = out.logits[:, -1, :], position + 1
        return new

    def _end_tokens(self) -> set[int]:
        """The ids that end a completion: the generation config's end-of-text ids, else the tokenizer's."""
        config = getattr(self.model, "generation_config", None)
        ids = getattr(config, "eos_token_id", None)
        if ids is None:
            ids = self.tokenizer.eos_token_id
        return set(ids if isinstance(ids, list) else [] if ids is None else [ids])

    def close(self) -> None:
        self.model = None


def without_drawn(logits: torch.Tensor, nodes: list, temperature: float) -> torch.Tensor:
    """`logits` ([rows, vocab], one row per trie node) with the sequences already drawn taken out of each row's
    next-token distribution: temperature * log(1 - M) added where a token leads into the trie (Drawn.penalties), so
    that after the sampler divides by the temperature each such token's probability is scaled by 1 - M."""
    where = [(i, token, penalty) for i, node in enumerate(nodes) for token, penalty in Drawn.penalties(node).items()]
    if not where:
        return logits
    rows, tokens, penalties = zip(*where)
    out = logits.clone()
    out[list(rows), list(tokens)] += max(temperature, 1e-6) * torch.tensor(
        penalties, dtype=out.dtype, device=out.device
    )
    return out


class InverseCDFSampler:
    """Samples from softmax(logits / temperature), nucleus-truncated at top_p, and leaves only the drawn token
    finite, so the argmax is the drawn token. One uniform number per row through the cumulative distribution: torch's
    multinomial (what `do_sample` uses) draws an exponential number for every vocabulary entry, which on a CPU took
    about 40% of each decoding step with Gemma 3's 262k-token vocabulary."""

    def __init__(self, temperature: float, top_p: float = 1.0):
        self.temperature = temperature
        self.nucleus = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        if self.nucleus is not None:
            scores = self.nucleus(input_ids, scores)
        cdf = torch.softmax(scores, dim=-1).cumsum(dim=-1)
        draw = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        token = torch.searchsorted(cdf, draw, side="right").clamp_(max=cdf.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)
