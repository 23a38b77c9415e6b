"""Generation backends behind one interface: a batch of chats in, one response each out.

Introduced in ``notebooks/04_resim_sft.ipynb``. The agent loop
(``dynamind_lite.rollout``) only calls ``generator.generate(conversations,
config)``; which engine answers is a preset choice:

* ``"hf"``: ``transformers`` ``generate`` in this process (tiny and small presets);
* ``"vllm"``: vLLM in this process (full preset; GPU only, optional extra);
* ``"openai"``: any OpenAI-compatible server (``transformers serve``, vLLM's
  server, a hosted API) through ``dynamind_lite.llm.ChatClient``.

Every backend renders a conversation with the model's chat template and
``add_generation_prompt=True`` (the server does it for ``"openai"``), stops at
the end of the assistant turn, and returns the text without special tokens.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings shared by all backends (introduced in ``notebooks/04_resim_sft.ipynb``)."""

    max_new_tokens: int = 512
    """Cap on generated tokens per response; a response cut there has finish_reason "length"."""
    temperature: float = 0.0
    """Sampling temperature (> 0 with ``do_sample``); 0 or ``do_sample=False`` means greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]."""
    do_sample: bool = False
    """Sample (True) or decode greedily (False, the evaluation default)."""
    seed: int | None = 0
    """Seed of the sampler: the same seed, batch and inputs give the same samples."""

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.do_sample and self.temperature == 0:
            raise ValueError("do_sample=True needs temperature > 0 (use do_sample=False for greedy decoding)")

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax."""
        return not self.do_sample or self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """One response.

    text: the assistant's reply, special tokens removed.
    num_tokens: tokens generated (including the end-of-turn token when emitted);
        Gen.Token averages these.
    finish_reason: ``"stop"`` (end of turn) or ``"length"`` (hit max_new_tokens).
    prompt_tokens: tokens of the rendered prompt (chat template included), or
        None when the backend does not report it (``"openai"``).
    """

    text: str
    num_tokens: int
    finish_reason: Literal["stop", "length"] | str = "stop"
    prompt_tokens: int | None = None


@runtime_checkable
class Generator(Protocol):
    """Anything that answers a batch of chat conversations."""

    def generate(self, conversations: Sequence[list[dict]], config: GenerationConfig) -> list[Generation]:
        """One Generation per conversation, in order."""
        ...


_BACKENDS = {
    "hf": ("dynamind_lite.generation.hf", "HFGenerator"),
    "vllm": ("dynamind_lite.generation.vllm", "VLLMGenerator"),
    "openai": ("dynamind_lite.generation.openai_compat", "OpenAIGenerator"),
}


def make_generator(backend: str, **kwargs) -> Generator:
    """Build a generator by backend name; its module is imported only now.

    ``make_generator("hf", model=model, tokenizer=tokenizer, batch_size=64)``,
    ``make_generator("vllm", model="Qwen/Qwen2.5-7B-Instruct")``,
    ``make_generator("openai", client=ChatClient(...))``.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; choose one of {sorted(_BACKENDS)}")
    module_name, class_name = _BACKENDS[backend]
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


__all__ = ["Generation", "GenerationConfig", "Generator", "make_generator"]
