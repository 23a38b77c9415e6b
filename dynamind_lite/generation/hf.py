"""The ``"hf"`` backend: batched ``transformers`` generation in this process.

Introduced in ``notebooks/04_resim_sft.ipynb`` (the tiny and small presets
evaluate with it). Many conversations are decoded together: prompts are
left-padded into one batch, the KV cache is reused across decoding steps, and a
row stops at the end of the assistant turn (``<|im_end|>``).

The KV cache is ``growing_kv_cache()``: each layer writes its keys and values
into buffers that grow geometrically (``GrowingKVLayer``), where transformers'
default ``DynamicCache`` concatenates the whole cache at every step. Same
tokens, 1.3x the rollout tokens/s of the tiny model on CPU
(``benchmarks/bench_rl.py``; the concatenations were 38% of decoding time).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import transformers
from transformers.cache_utils import Cache, DynamicLayer

from dynamind_lite.generation import Generation, GenerationConfig

CACHE_ARGUMENT = "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"
"""``generate``'s name for a cache object (transformers 5 renamed ``past_key_values``)."""


class GrowingKVLayer(DynamicLayer):
    """One attention layer's KV cache in buffers that grow geometrically.

    ``keys``/``values`` are views ``[B, kv_heads, length, head_dim]`` of buffers
    ``[B, kv_heads, capacity, head_dim]``; an update writes its new positions in
    place and reallocates (doubling) only when the capacity runs out, so decoding
    n tokens copies O(n) cache entries instead of DynamicLayer's O(n^2).
    """

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2]:
            capacity = 2 * end  # twice the length that overflowed: O(log n) reallocations
            batch, heads, _, head_dim = key_states.shape
            keys = key_states.new_empty(batch, heads, capacity, head_dim)  # [B, H_kv, capacity, head_dim]
            values = value_states.new_empty(batch, value_states.shape[1], capacity, value_states.shape[-1])
            if self.length:
                keys[:, :, :self.length] = self.keys
                values[:, :, :self.length] = self.values
            self._key_buffer, self._value_buffer = keys, values
        self._key_buffer[:, :, self.length:end] = key_states
        self._value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("GrowingKVLayer is for plain decoding (no assisted generation)")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("GrowingKVLayer is for plain decoding (one sequence per prompt)")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("GrowingKVLayer is for plain decoding (no contrastive search)")


def growing_kv_cache() -> Cache:
    """A cache of ``GrowingKVLayer`` (one per attention layer, made on first use) for ``generate``."""
    return Cache(layer_class_to_replicate=GrowingKVLayer)


def full_attention_only(model) -> bool:
    """True when every layer of ``model`` attends to the whole context (no sliding window,
    no linear attention): the layers ``GrowingKVLayer`` can stand in for."""
    config = model.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in layer_types) and not getattr(config, "use_sliding_window", False)


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's eos, ``<|im_end|>``
    when the vocabulary has it, and the model's own ``generation_config`` eos."""
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


class HFGenerator:
    """The Generator protocol over a ``transformers`` causal LM.

    Args:
        model: a causal LM (plain or PEFT-wrapped), e.g. from ``load_policy``.
        tokenizer: its tokenizer with a chat template; padding is set to the left.
        batch_size: conversations decoded together, >= 1 (typical 16-256 on CPU
            for the tiny model, 8-64 on a GPU for 7B).
    """

    def __init__(self, model, tokenizer, batch_size: int = 32):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template; the HF backend renders chats with it")
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.growing_cache = full_attention_only(model)

    def __repr__(self) -> str:
        return f"HFGenerator(model={type(self.model).__name__}, batch_size={self.batch_size})"

    def render(self, conversation: list[dict]) -> str:
        """The prompt text: chat template with the assistant turn opened."""
        return self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def generate(self, conversations: Sequence[list[dict]], config: GenerationConfig) -> list[Generation]:
        """One Generation per conversation, in order; ``batch_size`` at a time.

        With sampling, chunk k of the batch is sampled under seed ``config.seed + k``
        (global RNG state is restored afterwards), so results repeat exactly.
        """
        texts = [self.render(c) for c in conversations]
        # Longest prompts first: rows of one chunk have similar lengths (less padding).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        results: list[Generation | None] = [None] * len(texts)
        for chunk_index, start in enumerate(range(0, len(order), self.batch_size)):
            rows = order[start:start + self.batch_size]
            seed = None if config.seed is None else config.seed + chunk_index
            for row, generation in zip(rows, self._generate_chunk([texts[i] for i in rows], config, seed)):
                results[row] = generation
        return results  # type: ignore[return-value]

    def _generate_chunk(self, texts: list[str], config: GenerationConfig, seed: int | None) -> list[Generation]:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        prompt_len = batch["input_ids"].shape[1]  # batch["input_ids"]: [B, prompt_len], left-padded
        sampling = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p} \
            if not config.greedy else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            if seed is not None:
                torch.manual_seed(seed)
            sequences = self.model.generate(
                **batch,
                max_new_tokens=config.max_new_tokens,
                eos_token_id=self.stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=True,
                **({CACHE_ARGUMENT: growing_kv_cache()} if self.growing_cache else {}),
                **sampling,
            )
        new_tokens = sequences[:, prompt_len:].tolist()  # [B, <= max_new_tokens]
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()  # [B], padding excluded
        return [self._to_generation(tokens, n) for tokens, n in zip(new_tokens, prompt_tokens)]

    def _to_generation(self, tokens: list[int], prompt_tokens: int) -> Generation:
        stops = [k for k, token in enumerate(tokens) if token in self.stop_ids]
        if stops:
            tokens, reason = tokens[:stops[0] + 1], "stop"
        else:
            reason = "length"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Generation(text=text, num_tokens=len(tokens), finish_reason=reason, prompt_tokens=int(prompt_tokens))
