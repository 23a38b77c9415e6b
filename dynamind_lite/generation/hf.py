"""The ``"hf"`` backend: batched ``transformers`` generation in this process.

Introduced in ``notebooks/04_resim_sft.ipynb`` (the tiny and small presets
evaluate with it). Many conversations are decoded together: prompts are
left-padded into one batch, the KV cache is reused across decoding steps, and a
row stops at the end of the assistant turn (``<|im_end|>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dynamind_lite.generation import Generation, GenerationConfig


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
