"""What the stages share: their constants, the filter's candidate record, reading stage-1 data, training a fresh
adapter."""

from __future__ import annotations

from pydantic import BaseModel

from translora import models, training
from translora.artifacts import read_json, read_jsonl
from translora.config import AdapterSpec, ModelSpec, TrainSpec
from translora.data import Example, TaskCard
from translora.stage import StageContext

# Held out of the discriminator's training to measure it; a fifth keeps most data for training.
DISCRIMINATOR_HELD_OUT = 0.2
# Negatives: the source model gets this many completions per negative wanted before giving up.
NEGATIVES_BUDGET_FACTOR = 4
# The filter's file name inside the discriminator adapter: its calibrated threshold and held-out report.
FILTER_FILE = "filter.json"


class Candidate(BaseModel):
    input: str
    margin: float  # log p(yes) - log p(no) from the discriminator
    kept: bool


def read_card(folder) -> TaskCard:
    return TaskCard.model_validate(read_json(folder / "task_card.json"))


def read_examples(path) -> list[Example]:
    return [Example.model_validate(r) for r in read_jsonl(path)]


def token_counter(spec: ModelSpec):
    tokenizer = models.load_tokenizer(spec)
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def train_new_adapter(
    ctx: StageContext,
    base: ModelSpec,
    adapter: AdapterSpec,
    spec: TrainSpec,
    pairs,
    desc: str,
    weights: list[float] | None = None,
    answers: list[dict | None] | None = None,
):
    model, tok = models.load_model(spec.base(base))
    peft_model = training.new_adapter(model, adapter, spec.seed)
    result = training.train(
        peft_model,
        tok,
        pairs,
        spec,
        desc,
        ctx.progress,
        checkpoint_dir=ctx.work / "checkpoints",
        checkpoint_every_s=spec.checkpoint_every_s,
        weights=weights,
        answers=answers,
    )
    training.save_adapter(peft_model, ctx.out)
    return peft_model, tok, result
