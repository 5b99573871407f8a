"""The model card (README.md) in every adapter folder translora writes, in place of peft's empty template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from translora.config import ModelSpec


def base_name(spec: ModelSpec) -> str:
    """A base model by name: the hub name of an embedded model, else the id as given."""
    from translora.models import EMBEDDED

    if spec.id.startswith("embedded:"):
        embedded = EMBEDDED.get(spec.id.split(":", 1)[1])
        if embedded:
            return embedded.hub_name
    return spec.id


def write(folder: Path, title: str, base: ModelSpec, summary: str, facts: dict[str, Any]) -> None:
    """README.md with hub-style front matter, a one-paragraph summary and a table of facts."""
    front = {"base_model": base_name(base), "library_name": "peft", "tags": ["translora", "trans-lora", "lora"]}
    rows = "\n".join(f"| {k} | {_cell(v)} |" for k, v in facts.items())
    text = (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n# {title}\n\n{summary}\n\n"
        f"| | |\n|---|---|\n| base model | {base_name(base)} (`{base.id}`, {base.dtype}) |\n{rows}\n\n"
        "Written by translora (https://arxiv.org/abs/2405.17258). Load with "
        "`peft.PeftModel.from_pretrained(base_model, this_folder)`.\n"
    )
    (Path(folder) / "README.md").write_text(text)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")
