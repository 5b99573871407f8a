"""The one PEFT training loop (LoRA, DoRA, prompt tuning) with a completion-only loss.

Batches are left-padded so every completion ends at the last position; the model then computes logits only for
the last `max completion length + 1` positions (`logits_to_keep`), which matters for large vocabularies
(Gemma's 262k-token head).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from translora.config import AdapterSpec, TrainSpec
from translora.errors import AdapterMismatchError, DataError, TransientError


@dataclass
class TrainResult:
    steps: int = 0
    examples: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)

    def metrics(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "losses"} | {"loss_curve": self.losses}


def peft_config(spec: AdapterSpec):
    from peft import LoraConfig, PromptTuningConfig, TaskType

    if spec.kind == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.num_virtual_tokens)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        use_dora=spec.kind == "dora",
    )


def new_adapter(model, spec: AdapterSpec):
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config(spec))
    except ValueError as exc:
        raise AdapterMismatchError(
            f"cannot put a {spec.kind} adapter on this model: {exc}. Check adapter.target_modules against the "
            "model's module names (e.g. q_proj, v_proj)."
        ) from exc


def attach_adapter(model, adapter_dir: Path, trainable: bool = False):
    """Load a saved peft adapter onto `model`; a wrong base is reported as such, not as a shape dump."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise AdapterMismatchError(
            f"the adapter in {adapter_dir} does not fit this base model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Use the base model the adapter was trained on."
        ) from exc


def encode_pair(tokenizer, prompt: str, completion: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt+completion(+eos) and the completion's length; the prompt is cut from the left."""
    prompt_ids = tokenizer(prompt).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids
    if tokenizer.eos_token_id is not None:
        completion_ids = completion_ids + [tokenizer.eos_token_id]
    completion_ids = completion_ids[: max_length // 2]
    room = max_length - len(completion_ids)
    return prompt_ids[-room:] + completion_ids, len(completion_ids)


def collate(encoded: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad; labels mark the completion tokens of the last `k` positions (-100 elsewhere)."""
    width = max(len(ids) for ids, _ in encoded)
    k = max(n for _, n in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), k), -100, dtype=torch.long)
    for row, (ids, n) in enumerate(encoded):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention[row, width - len(ids):] = 1
        labels[row, k - n:] = torch.tensor(ids[-n:])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over completion tokens, computing logits only where they are needed."""
    labels = batch["labels"]
    k = labels.shape[1]
    attention = batch["attention_mask"]
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    out = model(
        input_ids=batch["input_ids"], attention_mask=attention, position_ids=positions, logits_to_keep=k + 1
    )
    logits = out.logits[:, -(k + 1): -1, :].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100)


def train(
    peft_model,
    tokenizer,
    pairs: list[tuple[str, str]],
    spec: TrainSpec,
    description: str = "train",
    progress: Callable[[float], None] | None = None,
) -> TrainResult:
    """Train the adapter's parameters of `peft_model` in place on (prompt, completion) pairs."""
    from transformers import get_linear_schedule_with_warmup

    if not pairs:
        raise DataError(f"{description}: no training examples")
    device = next(peft_model.parameters()).device
    encoded = [encode_pair(tokenizer, p, c, spec.max_length) for p, c in pairs]
    steps_per_epoch = math.ceil(len(encoded) / spec.batch_size)
    total = spec.max_steps or max(1, math.ceil(steps_per_epoch * spec.epochs))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(spec.warmup_ratio * total), total)
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    result = TrainResult(examples=len(encoded))
    start = time.time()
    peft_model.train()
    order: list[int] = []
    bar = tqdm(range(total), desc=description, leave=False)
    for _ in bar:
        if len(order) < spec.batch_size:
            epoch = list(range(len(encoded)))
            rng.shuffle(epoch)
            order.extend(epoch)
        idx, order = order[: spec.batch_size], order[spec.batch_size:]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], tokenizer.pad_token_id).items()}
        try:
            loss = completion_loss(peft_model, batch)
            loss.backward()
        except torch.OutOfMemoryError as exc:
            raise TransientError(f"out of memory in {description}: {exc}") from exc
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        result.losses.append(round(value, 5))
        result.completion_tokens += int((batch["labels"] != -100).sum())
        bar.set_postfix(loss=f"{value:.3f}")
        if progress:
            progress(len(result.losses) / total)
    peft_model.eval()
    result.steps = total
    result.seconds = time.time() - start
    result.first_loss, result.final_loss = result.losses[0], sum(result.losses[-5:]) / len(result.losses[-5:])
    return result


def save_adapter(peft_model, out_dir: Path) -> None:
    """peft's standard folder format (adapter_config.json + adapter_model.safetensors)."""
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
