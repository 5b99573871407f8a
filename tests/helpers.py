"""Helpers the tests share (test modules import from here, never from each other)."""

from __future__ import annotations

from pathlib import Path

from translora.data import boolean_expressions


def plain_peft_adapter(base: Path, out: Path, kind: str = "lora", steps: int = 4) -> Path:
    """An adapter as a customer trains one, with plain peft and torch and nothing of translora: its own settings
    (rank 4 on q and k), a few AdamW steps on whole prompt + answer sequences, saved by save_pretrained."""
    import torch
    from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if kind == "prompt_tuning":
        config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=6)
    else:
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"],
                            use_dora=kind == "dora")
    peft_model = get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for example in boolean_expressions.generate(steps, seed=9):
        batch = tokenizer(f"Q: {example.input}\nA: {example.target}", return_tensors="pt")
        peft_model(**batch, labels=batch.input_ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(out)
    return out
