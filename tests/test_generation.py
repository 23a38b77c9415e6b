"""Generation backends: the batched HF generator against a naive reference."""

from __future__ import annotations

import pytest
import torch

from dynamind_lite.generation import Generation, GenerationConfig, Generator, make_generator
from dynamind_lite.models import load_policy
from dynamind_lite.prompts import build_messages

GRIDS = ["######\n#_XP_#\n#_O__#\n######", "#####\n#P_X_O#\n#####", "####\n#PXO#\n####"]


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    torch.set_num_threads(1)
    return load_policy(tiny_checkpoint, device="cpu")


def _conversations() -> list[list[dict]]:
    return [build_messages(GRIDS[0]), build_messages(GRIDS[1], [(GRIDS[0], "Up")]), build_messages(GRIDS[2]),
            build_messages(GRIDS[1])]


def _naive_greedy(model, tokenizer, conversation, max_new_tokens) -> list[int]:
    """One conversation, no padding, no KV cache: argmax of a full forward pass per token."""
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False)
    generated = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=torch.tensor([ids + generated])).logits  # [1, T, V]
        generated.append(int(logits[0, -1].argmax()))
    return generated


def test_batched_greedy_matches_one_by_one_reference(policy):
    model, tokenizer = policy
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=3)
    assert isinstance(generator, Generator)
    conversations = _conversations()
    generations = generator.generate(conversations, GenerationConfig(max_new_tokens=8))
    assert len(generations) == len(conversations)
    for conversation, generation in zip(conversations, generations):
        reference = _naive_greedy(model, tokenizer, conversation, 8)
        assert generation.text == tokenizer.decode(reference, skip_special_tokens=True)
        assert generation.num_tokens == 8 and generation.finish_reason == "length"
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=False)
        assert generation.prompt_tokens == len(prompt)  # left padding not counted


def test_stops_at_end_of_turn_token(policy):
    model, tokenizer = policy
    first = _naive_greedy(model, tokenizer, _conversations()[0], 1)[0]
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = first  # make the first greedy token end the turn
    try:
        generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=4)
        generation = generator.generate(_conversations()[:1], GenerationConfig(max_new_tokens=8))[0]
    finally:
        model.generation_config.eos_token_id = original
    assert generation.finish_reason == "stop" and generation.num_tokens == 1


def test_seeded_sampling_repeats(policy):
    model, tokenizer = policy
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=2)
    config = GenerationConfig(max_new_tokens=12, temperature=1.0, do_sample=True, seed=7)
    first = generator.generate(_conversations(), config)
    again = generator.generate(_conversations(), config)
    other = generator.generate(_conversations(), GenerationConfig(max_new_tokens=12, temperature=1.0,
                                                                  do_sample=True, seed=8))
    assert first == again
    assert first != other
    assert all("<|im_end|>" not in g.text and "<|endoftext|>" not in g.text for g in first)


def test_empty_batch(policy):
    model, tokenizer = policy
    assert make_generator("hf", model=model, tokenizer=tokenizer).generate([], GenerationConfig()) == []


def test_make_generator_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown generation backend 'tgi'"):
        make_generator("tgi")


def test_vllm_backend_says_how_to_install_it():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"install dynamind-lite\[vllm\] on a GPU machine"):
            make_generator("vllm", model="Qwen/Qwen2.5-7B-Instruct")
    else:
        pytest.skip("vllm is installed here")


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"temperature": -1.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"), ({"do_sample": True, "temperature": 0.0}, "temperature > 0"),
])
def test_generation_config_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**kwargs)


def test_generation_record():
    assert Generation("x", 1).finish_reason == "stop"


def test_growing_kv_layer_holds_what_concatenation_holds():
    """GrowingKVLayer against DynamicLayer (torch.cat every step) over a pre-fill and 40 single
    steps: the buffer reallocates twice (to 2 x the length that overflowed) and the views stay equal."""
    from transformers.cache_utils import DynamicLayer

    from dynamind_lite.generation.hf import GrowingKVLayer

    torch.manual_seed(0)
    growing, reference = GrowingKVLayer(), DynamicLayer()
    for length in [5] + [1] * 40:
        keys, values = torch.randn(3, 2, length, 4), torch.randn(3, 2, length, 4)  # [B, H_kv, new, head_dim]
        got, want = growing.update(keys, values), reference.update(keys, values)
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)
        assert growing.get_seq_length() == reference.get_seq_length()
    assert growing._key_buffer.shape[-2] == 46  # twice the length that overflowed: 10, 22, 46


def test_growing_cache_samples_the_tokens_the_default_cache_samples(policy):
    model, tokenizer = policy
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=4)
    assert generator.growing_cache  # Qwen2: full attention in every layer
    config = GenerationConfig(max_new_tokens=120, temperature=1.0, do_sample=True, seed=3)
    growing = generator.generate(_conversations(), config)
    generator.growing_cache = False  # transformers' DynamicCache
    assert generator.generate(_conversations(), config) == growing
