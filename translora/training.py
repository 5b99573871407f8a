"""The one PEFT training loop (LoRA, DoRA, prompt tuning) with a completion-only loss.

Batches are left-padded so every completion ends at the last position; the model then computes logits only for
the last `max completion length + 1` positions (`logits_to_keep`), which matters for large vocabularies
(Gemma's 262k-token head).

A long run saves a checkpoint every `checkpoint_every_s` seconds (adapter weights as safetensors, optimizer and
scheduler state as tensors-only torch files, data order and RNG states as JSON) and resumes from it after a kill,
ending exactly where an uninterrupted run would. An out-of-memory step halves the micro-batch and accumulates
gradients over the pieces, so the effective batch, and the result, stay the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from tqdm.auto import tqdm

from translora.config import AdapterSpec, TrainSpec
from translora.errors import AdapterMismatchError, DataError, TransientError

log = logging.getLogger(__name__)

# Files of one complete checkpoint folder; the folder only ever appears under its final name once all are written.
_CHECKPOINT_FILES = ("adapter.safetensors", "optimizer.pt", "state.json")
# Gradient norm clipping at 1.0, the transformers Trainer's default: keeps the high LoRA learning rates (1e-3 in
# the cpu profile) from blowing up on a batch of odd synthetic inputs.
MAX_GRAD_NORM = 1.0


@dataclass
class TrainResult:
    steps: int = 0
    examples: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)
    micro_batch_size: int = 0  # rows per forward pass; below the batch size after out-of-memory halvings
    oom_halvings: int = 0
    resumed_from_step: int = 0  # 0: started fresh; else the checkpoint step it went on from

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


def new_adapter(model, spec: AdapterSpec, seed: int = 0):
    """A fresh adapter on `model`, its random initialization drawn from `seed` (not from whatever the process's
    global RNG holds), so the same config gives the same adapter in any process."""
    from peft import get_peft_model

    torch.manual_seed(seed)
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
    except torch.OutOfMemoryError as exc:  # a RuntimeError too, but worth a retry, not a "wrong base" verdict
        raise TransientError(f"out of memory while loading the adapter in {adapter_dir}: {exc}") from exc
    except (RuntimeError, ValueError, KeyError) as exc:
        raise AdapterMismatchError(
            f"the adapter in {adapter_dir} does not fit this base model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}). Use the base model the adapter was trained on."
        ) from exc


class Encoded(NamedTuple):
    """One training example as token ids."""

    ids: list[int]  # prompt + completion (+ eos)
    n: int  # the completion's length: the last n ids
    # Soft targets: per completion token, (token id, probability) pairs the student learns instead of that token.
    soft: list[list[tuple[int, float]]] | None = None


def _completion_ids(tokenizer, completion: str) -> list[int]:
    ids = tokenizer(completion, add_special_tokens=False).input_ids
    return ids + [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


def encode_pair(
    tokenizer, prompt: str, completion: str, max_length: int, answers: dict[str, float] | None = None
) -> Encoded:
    """Token ids of prompt+completion(+eos) and the completion's length; the prompt is cut from the left. With
    `answers` (completion -> the teacher's probability, `completion` among them), soft targets along `completion`."""
    prompt_ids = tokenizer(prompt).input_ids
    completion_ids = _completion_ids(tokenizer, completion)[: max_length // 2]  # at most half: keep the question
    room = max_length - len(completion_ids)
    soft = (
        None
        if answers is None
        else soft_targets(completion_ids, [(_completion_ids(tokenizer, a), p) for a, p in answers.items()])
    )
    return Encoded(prompt_ids[-room:] + completion_ids, len(completion_ids), soft)


def soft_targets(path: list[int], answers: list[tuple[list[int], float]]) -> list[list[tuple[int, float]]]:
    """Per token of `path`, the next tokens of the answers that agree with `path` so far, each with its share of
    their probability. Single-token answers (True / False, A / B) give the teacher's whole distribution at the first
    token, in one training row instead of one row per answer; the tokens after it follow `path`."""
    out = []
    for j, token in enumerate(path):
        mass: dict[int, float] = {}
        for ids, p in answers:
            if j < len(ids) and ids[:j] == path[:j]:
                mass[ids[j]] = mass.get(ids[j], 0.0) + p
        total = sum(mass.values())
        out.append([(t, m / total) for t, m in sorted(mass.items())] if total > 0 else [(token, 1.0)])
    return out


def collate(encoded: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad; labels mark the completion tokens of the last `k` positions (-100 elsewhere). Where a row has
    soft targets, soft_ids/soft_probs hold every row's targets per position (a hard token as probability 1)."""
    width = max(len(e.ids) for e in encoded)
    k = max(e.n for e in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), k), -100, dtype=torch.long)
    for row, e in enumerate(encoded):
        input_ids[row, width - len(e.ids) :] = torch.tensor(e.ids)
        attention[row, width - len(e.ids) :] = 1
        labels[row, k - e.n :] = torch.tensor(e.ids[-e.n :])
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    if any(e.soft for e in encoded):
        targets = [e.soft or [[(t, 1.0)] for t in e.ids[-e.n :]] for e in encoded]
        m = max(len(options) for rows in targets for options in rows)
        batch["soft_ids"] = torch.zeros((len(encoded), k, m), dtype=torch.long)
        batch["soft_probs"] = torch.zeros((len(encoded), k, m))
        batch["soft_mask"] = torch.zeros((len(encoded), k, m), dtype=torch.bool)  # which options are real
        for row, (e, rows) in enumerate(zip(encoded, targets)):
            for j, options in enumerate(rows):
                for i, (token, p) in enumerate(options):
                    batch["soft_ids"][row, k - e.n + j, i], batch["soft_probs"][row, k - e.n + j, i] = token, p
                    batch["soft_mask"][row, k - e.n + j, i] = True
    return batch


def virtual_tokens_in_front(model, input_ids: torch.Tensor, attention: torch.Tensor):
    """(inputs_embeds, attention) with a prompt-tuning adapter's virtual tokens in front of each row's padding, or
    None for other models. With positions counted from the attention mask, a left-padded row then sees exactly what
    it sees alone. peft itself puts the virtual tokens before the padding and drops explicit position ids, so a
    padded row moved its prompt away from the text; and its generate numbered the cached decoding steps without the
    virtual tokens (every token after the first differed from a full forward pass)."""
    config = getattr(model, "active_peft_config", None)
    if config is None or not config.is_prompt_learning:
        return None
    embeds = model.word_embeddings(input_ids)
    prompt = model.get_prompt(batch_size=input_ids.shape[0]).to(embeds.dtype)
    ones = torch.ones(prompt.shape[:2], dtype=attention.dtype, device=attention.device)
    return torch.cat([prompt, embeds], dim=1), torch.cat([ones, attention], dim=1)


def tail_logits(model, input_ids: torch.Tensor, attention: torch.Tensor, n: int) -> torch.Tensor:
    """Logits of the last `n` positions of a left-padded batch (float32), with positions counted from each row's
    first real token (a prompt-tuning adapter's virtual tokens included), so padding changes nothing."""
    prompted = virtual_tokens_in_front(model, input_ids, attention)
    if prompted is not None:
        model, (embeds, attention) = model.base_model, prompted
        inputs = {"inputs_embeds": embeds}
    else:
        inputs = {"input_ids": input_ids}
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    out = model(**inputs, attention_mask=attention, position_ids=positions, logits_to_keep=n)
    return out.logits[:, -n:, :].float()


def completion_loss(
    model, batch: dict[str, torch.Tensor], weights: torch.Tensor | None = None, aux: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy over completion tokens, computing logits only where they are needed; against soft
    targets where the batch has them (see collate); with `weights` (one per row) a weighted mean, each row's tokens
    counting that much; with `aux` > 0, soft targets mixed with the student's own hardened answers
    (`confident_targets`)."""
    labels = batch["labels"]
    k = labels.shape[1]
    logits = tail_logits(model, batch["input_ids"], batch["attention_mask"], k + 1)[:, :-1, :]
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    if weights is None and "soft_ids" not in batch:
        return torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=-100)
    if "soft_ids" in batch:
        m = batch["soft_ids"].shape[-1]
        logp = torch.log_softmax(flat_logits, -1).gather(-1, batch["soft_ids"].reshape(-1, m))
        targets = batch["soft_probs"].reshape(-1, m).to(logp.dtype)
        if aux > 0:
            targets = confident_targets(logp.detach(), targets, batch["soft_mask"].reshape(-1, m), aux)
        per_token = -(logp * targets).sum(-1)
    else:
        per_token = torch.nn.functional.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="none")
    token_weights = (labels != -100).to(per_token.dtype)
    if weights is not None:
        token_weights = token_weights * weights.to(per_token.device, per_token.dtype).unsqueeze(-1)
    return (per_token.view(labels.shape) * token_weights).sum() / token_weights.sum().clamp(min=1e-8)


def confident_targets(logp: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, coef: float) -> torch.Tensor:
    """Burns et al.'s auxiliary confidence target at the answer positions (those with more than one option):
    (1 - coef) * the teacher's distribution + coef * the student's own answer as a one-hot. The student's answer is
    its argmax after matching the batch's answer frequencies to the teacher's (log q - log mean q + log mean t; the
    paper's quantile threshold for two classes), so a student that starts out always answering one way is not
    pulled further that way. Other positions keep their targets."""
    answer = mask.sum(-1) > 1
    if not answer.any():
        return teacher
    q = torch.softmax(logp[answer].masked_fill(~mask[answer], float("-inf")), -1)
    t = teacher[answer]
    prior = torch.log(t.mean(0).clamp(min=1e-6)) - torch.log(q.mean(0).clamp(min=1e-6))
    own = torch.log(q.clamp(min=1e-12)) + prior
    hard = torch.nn.functional.one_hot(own.masked_fill(~mask[answer], float("-inf")).argmax(-1), t.shape[-1])
    out = teacher.clone()
    out[answer] = (1 - coef) * t + coef * hard.to(t.dtype)
    return out


def aux_coefficient(spec: TrainSpec, step: int, total: int) -> float:
    """The auxiliary confidence loss's weight at `step`: rising linearly over the warm-up, then constant (no jump
    at the warm-up's end, the bug in openai/weak-to-strong's loss, its PR #33)."""
    return spec.aux_confidence * min(1.0, step / max(1.0, spec.aux_warmup * total))


def _accumulate(
    peft_model, rows: list[Encoded], weights: list[float] | None, pad_id: int, device, micro: int, aux: float = 0.0
) -> float:
    """Forward and backward one batch in pieces of `micro` rows. Each piece's mean loss is weighted by its share of
    the batch's (weighted) completion tokens, so the gradient (and the returned loss) is that of the whole batch at
    once."""
    row_weights = weights or [1.0] * len(rows)
    mass = [w * e.n for w, e in zip(row_weights, rows)]
    value = 0.0
    for start in range(0, len(rows), micro):
        piece = rows[start : start + micro]
        batch = {k: v.to(device) for k, v in collate(piece, pad_id).items()}
        piece_weights = None if weights is None else torch.tensor(weights[start : start + micro])
        loss = completion_loss(peft_model, batch, piece_weights, aux)
        if micro < len(rows):  # a whole batch keeps its loss untouched, bit for bit
            loss = loss * (sum(mass[start : start + micro]) / max(sum(mass), 1e-8))
        loss.backward()
        value += float(loss.detach())
    return value


def _fingerprint(peft_model, encoded: list[Encoded], weights: list[float] | None, spec: TrainSpec, total: int) -> str:
    """What a checkpoint must match to be resumed: the data, the training spec and the adapter's shape."""
    shapes = [(n, list(p.shape)) for n, p in peft_model.named_parameters() if p.requires_grad]
    blob = json.dumps([encoded, weights, spec.model_dump(mode="json"), total, shapes])
    return hashlib.sha256(blob.encode()).hexdigest()


def _latest_checkpoint(folder: Path) -> Path | None:
    complete = sorted(p for p in folder.glob("step-*") if all((p / f).is_file() for f in _CHECKPOINT_FILES))
    return complete[-1] if complete else None


def _save_checkpoint(folder: Path, peft_model, optimizer, schedule, state: dict) -> None:
    """Write folder/step-NNNNNNNN under a temporary name, rename it into place, then drop older checkpoints."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    final = folder / f"step-{state['step']:08d}"
    if final.exists():  # same step, same state: already saved
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    save_file(weights, str(tmp / "adapter.safetensors"))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "torch_rng": torch.get_rng_state(),  # dropout masks: a resumed run must draw the same ones
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state))
    os.replace(tmp, final)
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, peft_model, optimizer, schedule, device) -> None:
    """Restore weights, optimizer, scheduler and torch RNG from `folder` (its JSON state is the caller's)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    # The caller checked the fingerprint, which covers the adapter's parameter names and shapes.
    set_peft_model_state_dict(peft_model, load_file(str(folder / "adapter.safetensors"), device=str(device)))
    # weights_only: tensors and plain containers only, never arbitrary pickled objects
    blob = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    schedule.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])


def train(
    peft_model,
    tokenizer,
    pairs: list[tuple[str, str]],
    spec: TrainSpec,
    description: str = "train",
    progress: Callable[[float], None] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every_s: float = 120,
    weights: list[float] | None = None,
    answers: list[dict[str, float] | None] | None = None,
) -> TrainResult:
    """Train the adapter's parameters of `peft_model` in place on (prompt, completion) pairs, each pair's loss
    scaled by its entry in `weights` where given (see completion_loss); where a pair's entry in `answers` is given
    (every completion the teacher considered -> its probability), the pair teaches those soft targets.

    With `checkpoint_dir`, a checkpoint is saved there every `checkpoint_every_s` seconds (between steps), and a
    complete checkpoint found there on start, from a run of the same data, spec and adapter, is resumed.
    """
    from transformers import get_linear_schedule_with_warmup

    if not pairs:
        raise DataError(f"{description}: no training examples")
    device = next(peft_model.parameters()).device
    if weights is not None and (len(weights) != len(pairs) or any(not 0 <= w <= 1 for w in weights)):
        raise ValueError(f"{description}: need one weight in [0, 1] per training pair")
    if answers is not None and len(answers) != len(pairs):
        raise ValueError(f"{description}: need one answers entry (or None) per training pair")
    if weights is not None and all(w == 1 for w in weights):
        weights = None  # the unweighted loss, bit for bit
    encoded = [
        encode_pair(tokenizer, p, c, spec.max_length, answers[i] if answers else None) for i, (p, c) in enumerate(pairs)
    ]
    steps_per_epoch = math.ceil(len(encoded) / spec.batch_size)
    total = spec.max_steps or max(1, math.ceil(steps_per_epoch * spec.epochs))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(spec.warmup_ratio * total), total)
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    result = TrainResult(examples=len(encoded), micro_batch_size=spec.batch_size)
    order: list[int] = []
    step, seconds_before = 0, 0.0
    fingerprint, checkpoint = "", None
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(peft_model, encoded, weights, spec, total)
        for stale in checkpoint_dir.glob(".tmp-*"):  # half-written by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        checkpoint = _latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        state = json.loads((checkpoint / "state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            log.warning(
                "%s: ignoring checkpoint %s from a different run (data, spec or adapter changed)",
                description,
                checkpoint,
            )
        else:
            _load_checkpoint(checkpoint, peft_model, optimizer, schedule, device)
            step, order, seconds_before = state["step"], state["order"], state["seconds"]
            version, internal, gauss = state["python_rng"]
            rng.setstate((version, tuple(internal), gauss))
            result.losses, result.completion_tokens = state["losses"], state["completion_tokens"]
            result.micro_batch_size, result.oom_halvings = state["micro_batch_size"], state["oom_halvings"]
            result.resumed_from_step = step
    start = time.time()
    last_save = time.monotonic()
    peft_model.train()
    bar = tqdm(total=total, initial=step, desc=description, leave=False)
    while step < total:
        if len(order) < spec.batch_size:
            epoch = list(range(len(encoded)))
            rng.shuffle(epoch)
            order.extend(epoch)
        idx, order = order[: spec.batch_size], order[spec.batch_size :]
        rows = [encoded[i] for i in idx]
        row_weights = None if weights is None else [weights[i] for i in idx]
        while True:
            try:
                value = _accumulate(
                    peft_model,
                    rows,
                    row_weights,
                    tokenizer.pad_token_id,
                    device,
                    result.micro_batch_size,
                    aux_coefficient(spec, step, total),
                )
                break
            except torch.OutOfMemoryError as exc:
                if result.micro_batch_size == 1:
                    raise TransientError(f"out of memory in {description} even at one example per step: {exc}") from exc
            # Outside the except block, so the failed attempt's tensors (held by its traceback) can be freed.
            optimizer.zero_grad(set_to_none=True)
            result.micro_batch_size = max(1, result.micro_batch_size // 2)
            result.oom_halvings += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.warning(
                "%s: out of memory; going on with %d rows per forward pass (effective batch %d)",
                description,
                result.micro_batch_size,
                spec.batch_size,
            )
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        result.losses.append(round(value, 5))
        result.completion_tokens += sum(e.n for e in rows)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        if checkpoint_dir is not None and time.monotonic() - last_save >= checkpoint_every_s:
            _save_checkpoint(
                checkpoint_dir,
                peft_model,
                optimizer,
                schedule,
                {
                    "fingerprint": fingerprint,
                    "step": step,
                    "order": order,
                    "python_rng": rng.getstate(),
                    "losses": result.losses,
                    "completion_tokens": result.completion_tokens,
                    "micro_batch_size": result.micro_batch_size,
                    "oom_halvings": result.oom_halvings,
                    "seconds": seconds_before + time.time() - start,
                },
            )
            last_save = time.monotonic()
        if progress:
            progress(step / total)
    bar.close()
    peft_model.eval()
    result.steps = total
    result.seconds = seconds_before + time.time() - start
    result.first_loss, result.final_loss = result.losses[0], sum(result.losses[-5:]) / len(result.losses[-5:])
    return result


def save_adapter(peft_model, out_dir: Path) -> None:
    """peft's standard folder format (adapter_config.json + adapter_model.safetensors)."""
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
