"""Shared test fixtures.

Tests never touch a model hub: the offline switches below make any accidental
download fail loudly, and every checkpoint a test needs is created and saved
locally by a fixture here.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A randomly initialised Qwen2-architecture causal LM (well under 1M
    parameters) with the project's domain tokenizer and chat template, saved with
    ``save_pretrained``. Returns its directory: load it exactly like a hub name."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dynamind_lite.models.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_checkpoint")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def checkpoint64(tmp_path_factory) -> str:
    """A random Qwen2 model 64 wide: bitsandbytes' 4-bit CPU kernels need layers >= 64 wide."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dynamind_lite.models.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("checkpoint64")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
