"""The discriminator: a base model plus its own LoRA, taught to answer " yes" for real task inputs and " no" for
synthetic ones, on `"{x}\\nIs the above question from the {task} dataset?"`. It keeps x when its margin
log p(yes) - log p(no) is above a threshold: 0 (p(yes) > p(no)) unless one was calibrated on held-out inputs."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from pydantic import BaseModel

from translora.diagnostics import roc_auc
from translora.training import attach_adapter, tail_logits

YES, NO = " yes", " no"


def question(text: str, task: str) -> str:
    return f"{text}\nIs the above question from the {task} dataset?"


def training_pairs(real: list[str], synthetic: list[str], task: str) -> list[tuple[str, str]]:
    return [(question(x, task), YES) for x in real] + [(question(x, task), NO) for x in synthetic]


class HeldOutReport(BaseModel):
    """How the discriminator does on real and synthetic inputs it was not trained on, at one threshold."""

    auc: float  # threshold-free: P(a real input's margin > a synthetic one's)
    threshold: float  # keep x when margin > threshold
    real_accepted: float
    synthetic_accepted: float
    n_real: int
    n_synthetic: int


def held_out_report(real_margins: list[float], synthetic_margins: list[float], threshold: float = 0.0) -> HeldOutReport:
    return HeldOutReport(
        auc=roc_auc(real_margins, synthetic_margins),
        threshold=threshold,
        real_accepted=sum(m > threshold for m in real_margins) / len(real_margins),
        synthetic_accepted=sum(m > threshold for m in synthetic_margins) / len(synthetic_margins),
        n_real=len(real_margins),
        n_synthetic=len(synthetic_margins),
    )


def calibrate_threshold(
    real_margins: list[float], synthetic_margins: list[float], min_real_accept: float = 0.9
) -> float:
    """The threshold that rejects the most held-out synthetic inputs while still keeping (margin > threshold) at
    least `min_real_accept` of the held-out real ones.

    Rule: let k = ceil(min_real_accept * n_real) and r the k-th largest real margin. Every threshold below r keeps
    at least k real inputs (ties with r included) and a higher one rejects more synthetic inputs, so the answer
    lies just below r: halfway to the largest margin (real or synthetic) below r, or r - 1 when there is none.
    Synthetic margins tied with r cannot be rejected without losing real ones, so they stay accepted. With a
    handful of real inputs k is coarse (one real input is 1/n of the rate): report n_real beside the threshold.
    """
    if not real_margins:
        raise ValueError("calibrate_threshold needs at least one held-out real margin")
    if not 0 < min_real_accept <= 1:
        raise ValueError(f"min_real_accept must be in (0, 1], got {min_real_accept}")
    ordered = sorted(real_margins, reverse=True)
    k = math.ceil(min_real_accept * len(ordered) - 1e-9)  # 0.7 * 10 is 7.000000000000001: must stay 7
    r = ordered[k - 1]
    below = [m for m in (*real_margins, *synthetic_margins) if m < r]
    if not below:
        return r - 1.0
    lower = max(below)
    mid = lower + (r - lower) / 2
    return mid if mid < r else lower  # adjacent floats: the midpoint may round up to r


class Discriminator:
    def __init__(self, model, tokenizer, task: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.yes_id = tokenizer(YES, add_special_tokens=False).input_ids[0]
        self.no_id = tokenizer(NO, add_special_tokens=False).input_ids[0]

    @classmethod
    def load(cls, spec, adapter_dir: Path, task: str) -> "Discriminator":
        from translora.models import load_model

        model, tokenizer = load_model(spec)
        return cls(attach_adapter(model, adapter_dir), tokenizer, task)

    @torch.no_grad()
    def margins(self, texts: list[str], batch_size: int = 16) -> list[float]:
        """log p(yes) - log p(no) for each text; positive means "looks real"."""
        tok = self.tokenizer
        tok.padding_side = "left"
        out: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch = [question(t, self.task) for t in texts[start : start + batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True).to(self.model.device)
            logits = tail_logits(self.model, enc["input_ids"], enc["attention_mask"], 1)[:, -1, :]
            out.extend((logits[:, self.yes_id] - logits[:, self.no_id]).tolist())
        return out

    def report(
        self, real: list[str], synthetic: list[str], threshold: float = 0.0, batch_size: int = 16
    ) -> HeldOutReport:
        """held_out_report on the margins of held-out real and synthetic inputs."""
        return held_out_report(self.margins(real, batch_size), self.margins(synthetic, batch_size), threshold)

    def accuracy(self, real: list[str], synthetic: list[str], batch_size: int = 16) -> dict[str, float]:
        """How often it says yes to real inputs and no to synthetic ones."""
        real_ok = sum(m > 0 for m in self.margins(real, batch_size)) / max(1, len(real))
        synth_ok = sum(m <= 0 for m in self.margins(synthetic, batch_size)) / max(1, len(synthetic))
        return {"real_accepted": real_ok, "synthetic_rejected": synth_ok}
