"""The discriminator: a base model plus its own LoRA, taught to answer " yes" for real task inputs and " no" for
synthetic ones, on `"{x}\\nIs the above question from the {task} dataset?"`. It keeps x when p(yes) > p(no)."""

from __future__ import annotations

from pathlib import Path

import torch

from translora.training import attach_adapter

YES, NO = " yes", " no"


def question(text: str, task: str) -> str:
    return f"{text}\nIs the above question from the {task} dataset?"


def training_pairs(real: list[str], synthetic: list[str], task: str) -> list[tuple[str, str]]:
    return [(question(x, task), YES) for x in real] + [(question(x, task), NO) for x in synthetic]


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
            batch = [question(t, self.task) for t in texts[start: start + batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True).to(self.model.device)
            positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            logits = self.model(**enc, position_ids=positions, logits_to_keep=1).logits[:, -1, :].float()
            out.extend((logits[:, self.yes_id] - logits[:, self.no_id]).tolist())
        return out

    def accuracy(self, real: list[str], synthetic: list[str], batch_size: int = 16) -> dict[str, float]:
        """How often it says yes to real inputs and no to synthetic ones."""
        real_ok = sum(m > 0 for m in self.margins(real, batch_size)) / max(1, len(real))
        synth_ok = sum(m <= 0 for m in self.margins(synthetic, batch_size)) / max(1, len(synthetic))
        return {"real_accepted": real_ok, "synthetic_rejected": synth_ok}
