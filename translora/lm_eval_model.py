"""lm-eval's hf model with a prompt-tuning adapter's generation done right. Imported only when an evaluation runs
(lm-eval is a heavy import).

lm-eval's generate_until calls peft's generate, which puts the virtual tokens before the left padding and numbers
the cached decoding steps without them (see training.virtual_tokens_in_front): a free-form answer from a prompt-tuning
adapter was decoded from logits that a full forward pass does not give. Here such an adapter generates from its base
model with the virtual tokens in front of each row's text, as translora's own generator does. Loglikelihood
(multiple-choice tasks) is unaffected: lm-eval right-pads and skips the virtual tokens' positions itself."""

from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils_hf import stop_sequences_criteria

from translora.training import virtual_tokens_in_front


class PromptAlignedHFLM(HFLM):
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
