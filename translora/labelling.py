"""Teacher labels constrained to a multiple-choice task's answer choices.

Greedy generation can answer something that is not a choice at all; scoring each choice instead, as lm-eval's
`acc` does (sum of log-probabilities of the continuation " <choice>" after the prompt), always gives a choice and,
through the softmax over the choices' scores, a confidence that `select` can filter on. The student then learns the
best choice (label.targets=hard), the best choice weighted by the teacher's probability above chance (weighted), or
the teacher's whole distribution over the choices (soft); `student_data` makes the training data.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

import numpy as np
import torch
from pydantic import BaseModel

from translora.data.records import TaskCard
from translora.diagnostics import Interval, bootstrap_statistic
from translora.training import tail_logits


class Labelled(BaseModel):
    """One kept input as the teacher labelled it (a line of the label stage's labelled.jsonl)."""

    input: str
    completion: str
    confidence: float | None = None  # the teacher's probability of this answer (multiple-choice labels)
    probs: dict[str, float] | None = None  # its probability of every answer choice
    weight: float = 1.0  # how much the student learns from it (label.targets=weighted)


class ChoiceLabel(BaseModel):
    input: str
    label: str  # the choice with the highest score (the first of tied ones)
    confidence: float  # its probability under the softmax over the choices' scores
    probs: dict[str, float]  # softmax over choices; sums to 1
    scores: dict[str, float]  # sum of log-probabilities of each choice's continuation tokens


def _encode(tokenizer, prompt: str, choice: str) -> tuple[list[int], int]:
    # Tokenized the way training.encode_pair tokenizes a completion, so the teacher is scored on the token
    # sequences its adapter was trained on (no eos: a choice is scored as a continuation, not an ending).
    prompt_ids = tokenizer(prompt).input_ids
    choice_ids = tokenizer(TaskCard.completion(choice), add_special_tokens=False).input_ids
    return prompt_ids + choice_ids, len(choice_ids)


def _left_padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token id rows, left-padded so that every row ends at the last position."""
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    return input_ids.to(device), attention.to(device)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@torch.no_grad()
def _continuation_logprobs(model, tokenizer, encoded: list[tuple[list[int], int]], batch_size: int) -> list[float]:
    """Sum of log p(continuation token) per (ids, continuation length): left-padded batches with explicit position
    ids, logits only for the last `longest continuation + 1` positions (what matters for a 262k vocabulary)."""
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        k = max(n for _, n in batch)
        input_ids, attention = _left_padded([ids for ids, _ in batch], _pad_id(tokenizer), device)
        logits = tail_logits(model, input_ids, attention, k + 1)[:, :-1, :]
        logp = torch.log_softmax(logits, -1).gather(-1, input_ids[:, -k:].unsqueeze(-1)).squeeze(-1)
        for row, (_, n) in enumerate(batch):
            out.append(float(logp[row, k - n :].sum()))  # every continuation ends at the last position
    return out


@torch.no_grad()
def _next_token_logprobs(
    model, tokenizer, prompts: list[list[int]], tokens: list[list[int]], batch_size: int
) -> list[list[float]]:
    """log p(token | prompt) for each of a prompt's candidate `tokens`, from one forward pass over the prompt."""
    device = next(model.parameters()).device
    out: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention = _left_padded(prompts[start : start + batch_size], _pad_id(tokenizer), device)
        logp = torch.log_softmax(tail_logits(model, input_ids, attention, 1)[:, -1, :], -1)
        for row, candidates in enumerate(tokens[start : start + batch_size]):
            out.append(logp[row, candidates].tolist())
    return out


def _choice_scores(model, tokenizer, encoded: list[tuple[list[int], int]], n_choices: int, batch_size: int):
    """Each input's choice scores (`encoded`: its choices' rows, one after another). Where every choice is one token
    after the same prompt (True / False, A / B), one forward pass over each prompt scores them all; else each
    (prompt, choice) row is scored."""
    groups = [encoded[i : i + n_choices] for i in range(0, len(encoded), n_choices)]
    if all(n == 1 and ids[:-1] == group[0][0][:-1] for group in groups for ids, n in group):
        prompts = [group[0][0][:-1] for group in groups]
        return _next_token_logprobs(model, tokenizer, prompts, [[ids[-1] for ids, _ in g] for g in groups], batch_size)
    flat = _continuation_logprobs(model, tokenizer, encoded, batch_size)
    return [flat[i : i + n_choices] for i in range(0, len(flat), n_choices)]


def label_choices(
    model, tokenizer, inputs: list[str], choices: list[str], prompt_template: str, batch_size: int = 16
) -> list[ChoiceLabel]:
    """Score every choice after each input's prompt (`prompt_template` as in TaskCard) with `model` (a
    transformers model, with or without a peft adapter); one ChoiceLabel per input, in order."""
    if len(set(choices)) != len(choices) or not choices:
        raise ValueError(f"choices must be distinct and non-empty, got {choices}")
    model.eval()
    encoded = [_encode(tokenizer, prompt_template.format(input=x), c) for x in inputs for c in choices]
    out = []
    for text, scores in zip(inputs, _choice_scores(model, tokenizer, encoded, len(choices), batch_size)):
        top = max(scores)
        exp = [math.exp(s - top) for s in scores]  # shifted by the max: no overflow
        total = sum(exp)
        probs = [e / total for e in exp]
        best = scores.index(top)
        out.append(
            ChoiceLabel(
                input=text,
                label=choices[best],
                confidence=probs[best],
                probs=dict(zip(choices, probs)),
                scores=dict(zip(choices, scores)),
            )
        )
    return out


def mean_confidence(labels: list[ChoiceLabel]) -> float:
    return sum(x.confidence for x in labels) / len(labels) if labels else 0.0


def _lift_arrays(labels: list[ChoiceLabel]) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) probabilities of each input's choices and (n,) the column of its answer."""
    choices = list(labels[0].probs)
    probs = np.array([[x.probs.get(c, 0.0) for c in choices] for x in labels])
    return probs, np.array([choices.index(x.label) for x in labels])


def _lift(probs: np.ndarray, answers: np.ndarray) -> float:
    average = probs.mean(axis=0)
    return float((probs[np.arange(len(answers)), answers] - average[answers]).mean())


def lift(labels: list[ChoiceLabel]) -> float:
    """How far the inputs move a model toward its answers: the mean over inputs of its probability of its answer
    minus its average probability of that answer over all the inputs. A model that gives nearly the same answer
    whatever the input (a letter bias, a collapsed adapter) has a lift near 0 however sure it is; a model that reads
    the input scores high. Data-free: no real label is read."""
    return _lift(*_lift_arrays(labels)) if labels else 0.0


def lift_gain(teacher: list[ChoiceLabel], target: list[ChoiceLabel], seed: int = 0) -> Interval:
    """The teacher's lift minus the target's on the same inputs, with its 95% paired bootstrap interval (both lifts,
    averages included, recomputed on each resample of the inputs)."""
    (tp, ta), (bp, ba) = _lift_arrays(teacher), _lift_arrays(target)
    return bootstrap_statistic(lambda rows: _lift(tp[rows], ta[rows]) - _lift(bp[rows], ba[rows]), len(ta), seed=seed)


def trusted(teacher: list[ChoiceLabel], target: list[ChoiceLabel], seed: int = 0) -> str:
    """ "teacher" or "target": whose answers the student learns. The teacher only where the inputs move it further
    toward its answers than they move the target, the whole 95% interval of the lift gain above 0; otherwise the
    target, whose base is then kept (label.when_target_trusted), a floor the student cannot fall through.

    Measured on kept inputs (bench/results/trust.md): mean confidence, the earlier rule, picked the more accurate
    labeller on the demo's two answers but on 1 of 4 multiple-choice BBH tasks, where a model leaning to one letter
    is sure and wrong (salient_translation_error_detection's target: mean confidence 0.62, one answer on every input,
    test accuracy 0.13 against the teacher's 0.20; lift gain +0.008 [+0.006, +0.009], and the teacher's labels taught
    a student 0.28). Where neither lift is clearly above the other, the labels teach no more than a leaning:
    geometric_shapes' gain +0.003 [-0.005, +0.011], and its student of the teacher's labels scored 0.09 against the
    target base's 0.15 (bench/results/labels.md), hence the interval rather than the point."""
    return "teacher" if lift_gain(teacher, target, seed).low > 0 else "target"


def select(
    labels: list[ChoiceLabel], min_confidence: float = 0.0, balance: bool = False, seed: int = 0
) -> list[ChoiceLabel]:
    """Labels at or above `min_confidence`; with `balance`, every label present downsampled (seeded) to the
    rarest one's count, so a teacher that favours one answer does not teach the student to always give it.
    Order is kept."""
    sure = [x for x in labels if x.confidence >= min_confidence]
    if not balance or not sure:
        return sure
    by_label: dict[str, list[int]] = {}
    for i, x in enumerate(sure):
        by_label.setdefault(x.label, []).append(i)
    quota = min(len(idx) for idx in by_label.values())
    rng = random.Random(seed)
    keep = {i for idx in by_label.values() for i in rng.sample(idx, quota)}
    return [x for i, x in enumerate(sure) if i in keep]


def margin_weight(confidence: float, n_choices: int) -> float:
    """How far above chance the teacher's probability is: 0 at 1/n_choices (a guess), 1 at certainty."""
    chance = 1 / n_choices
    return max(0.0, (confidence - chance) / (1 - chance)) if n_choices > 1 else 1.0


def as_labelled(chosen: list[ChoiceLabel], n_choices: int, targets: str) -> list[Labelled]:
    return [
        Labelled(
            input=x.input,
            completion=x.label,
            confidence=x.confidence,
            probs=x.probs,
            weight=margin_weight(x.confidence, n_choices) if targets == "weighted" else 1.0,
        )
        for x in chosen
    ]


class StudentData(NamedTuple):
    """What training.train takes: (prompt, completion) pairs, a weight per pair, and per pair the soft targets
    (completion -> the teacher's probability) or None for the completion alone."""

    pairs: list[tuple[str, str]]
    weights: list[float]
    answers: list[dict[str, float] | None]


def sharpen(probs: dict[str, float], temperature: float) -> dict[str, float]:
    """p^(1 / temperature), renormalized (in log space: no underflow at low temperatures); at 1, `probs` as is."""
    if temperature == 1:
        return probs
    logs = {a: math.log(max(p, 1e-300)) / temperature for a, p in probs.items()}
    top = max(logs.values())
    total = sum(math.exp(v - top) for v in logs.values())
    return {a: math.exp(v - top) / total for a, v in logs.items()}


def student_data(rows: list[Labelled], targets: str, card: TaskCard, temperature: float = 1.0) -> StudentData:
    """One training example per labelled input: its label (hard), its label weighted (weighted), or its label
    with the teacher's probability of every answer, sharpened by `temperature`, as soft targets (soft; a generated
    label has no distribution and stays the answer)."""

    def soft(r: Labelled) -> dict[str, float] | None:
        if targets != "soft" or r.probs is None:
            return None
        return {card.completion(answer): p for answer, p in sharpen(r.probs, temperature).items()}

    return StudentData(
        pairs=[(card.prompt(r.input), card.completion(r.completion)) for r in rows],
        weights=[r.weight for r in rows],
        answers=[soft(r) for r in rows],
    )
