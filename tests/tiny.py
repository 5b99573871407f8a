"""Tiny random models (Llama and Gemma3 architectures) with a tokenizer trained in the test: no downloads."""

from __future__ import annotations

from pathlib import Path

from translora.data import boolean_expressions

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def corpus() -> list[str]:
    rows = [f"Q: {e.input}\nA: {e.target}" for e in boolean_expressions.generate(300, seed=123)]
    rows += [f"{i}. {e.input}" for i, e in enumerate(boolean_expressions.generate(50, seed=7), 1)]
    rows += ["Is the above question from the boolean_expressions dataset? yes no"] * 5
    return rows


def train_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return fast


def build(folder: Path, arch: str, seed: int = 0, **sizes) -> Path:
    """Save a tiny random `arch` model ("llama" or "gemma3") with its tokenizer into `folder`; `sizes` overrides
    its config (e.g. hidden_size=32 for a base whose layers have other shapes)."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(folder)
    common = (
        dict(
            vocab_size=len(tok),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=512,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        | sizes
    )
    if arch == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=True)
    elif arch == "gemma3":
        config = Gemma3TextConfig(**common, sliding_window=64, query_pre_attn_scalar=32)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
