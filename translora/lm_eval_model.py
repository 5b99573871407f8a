"""lm-eval's hf model: only the logits it reads (in float32), LoRA merged, prompt tuning's generation done right.
Imported only when an evaluation runs (lm-eval is a heavy import).

Loglikelihood: lm-eval computes logits (and a log-softmax) at every position of the batch, then reads only the
continuation's few. With Gemma's 262k-token vocabulary that output layer was most of an evaluation's time. Here the
model computes the last positions only (`logits_to_keep`), enough to cover each row's right padding and the longest
continuation; lm-eval locates the continuation from the end (its ctx_len = inplen + logits length - padded length),
so the scores are the same numbers (tests/test_lm_eval_model.py).

lm-eval's generate_until calls peft's generate, which puts the virtual tokens before the left padding and numbers
the cached decoding steps without them (see training.virtual_tokens_in_front): a free-form answer from a prompt-tuning
adapter was decoded from logits that a full forward pass does not give. Here such an adapter generates from its base
model with the virtual tokens in front of each row's text, as translora's own generator does. Loglikelihood
(multiple-choice tasks) is unaffected: lm-eval right-pads and skips the virtual tokens' positions itself.

A LoRA or DoRA adapter is merged into the weights once loaded: the same function, without peft's per-layer detour."""

from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils_hf import stop_sequences_criteria
from peft import PeftModel

from translora.models import scoring_head
from translora.training import virtual_tokens_in_front


class PromptAlignedHFLM(HFLM):
    _longest_continuation: int | None = None  # set while _loglikelihood_tokens runs

    def _create_model(self, *args, **kwargs) -> None:
        super()._create_model(*args, **kwargs)
        model = self._model  # type: ignore[has-type]  # set by HFLM, which does not annotate it
        if isinstance(model, PeftModel) and not model.active_peft_config.is_prompt_learning:
            # LoRA / DoRA: the update merged into the weights scores the same numbers (up to rounding) without
            # peft's extra matmuls in every adapted layer; on the demo's r=8 adapters this saves little (16.6 s
            # merged vs 15.8 s unmerged, once the head's input is contiguous, below).
            self._model = model.merge_and_unload()
        # The head's input sliced by logits_to_keep is a non-contiguous view; with frozen weights (any peft model)
        # torch multiplies it as a batched product over a broadcast copy of the 262k-token head, 1 s a batch for
        # Gemma 3 270M: an adapter evaluation took twice the base's time. In bfloat16 (eval.dtype) the head runs in
        # float32: its rounding decided near-tie answers (models.scoring_head).
        scoring_head(self._model)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        self._longest_continuation = max((len(continuation) for _, _, continuation in requests), default=0)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        finally:
            self._longest_continuation = None

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        if self._longest_continuation is None or self.backend != "causal" or attn_mask is not None:
            return super()._model_call(inps, attn_mask, labels)
        keep = min(inps.shape[1], right_padding(inps) + self._longest_continuation)
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            return self.model(inps, logits_to_keep=keep).logits[:, -keep:, :]

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs):
        attention = generation_kwargs.pop("attention_mask", None)
        if attention is None:
            attention = torch.ones_like(context)
        prompted = virtual_tokens_in_front(self.model, context, attention)
        if prompted is None:
            return super()._model_generate(context, max_length, stop, attention_mask=attention, **generation_kwargs)
        embeds, prompted_attention = prompted
        if not generation_kwargs.get("do_sample"):  # greedy: a temperature would only draw a warning from HF
            generation_kwargs.pop("temperature", None)
            generation_kwargs["do_sample"] = False
        # From embeddings, generate returns (and stop criteria see) the new tokens only: offset 0, and the context is
        # put back in front because lm-eval cuts it off the result.
        new = self.model.base_model.generate(
            inputs_embeds=embeds,
            attention_mask=prompted_attention,
            max_new_tokens=max_length - context.shape[1],
            stopping_criteria=stop_sequences_criteria(self.tokenizer, stop, 0, context.shape[0]),
            pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
            **generation_kwargs,
        )
        return torch.cat([context, new], dim=1)


def right_padding(batch: torch.Tensor) -> int:
    """The longest run of trailing zeros in any row: lm-eval right-pads with zeros, so no row has more padding than
    this (a real trailing token 0 only makes the count larger, which keeps more logits, never fewer)."""
    nonzero = (batch != 0).int()
    last_nonzero = batch.shape[1] - 1 - nonzero.flip(1).argmax(1)  # argmax finds the first 1 from the right
    trailing = torch.where(nonzero.any(1), batch.shape[1] - 1 - last_nonzero, batch.shape[1])
    return int(trailing.max())
