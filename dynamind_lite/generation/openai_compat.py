"""Generation through an OpenAI-compatible server (vLLM, ``transformers serve``, a hosted API).

Introduced in ``notebooks/04_resim_sft.ipynb`` as the ``"openai"`` backend of
``make_generator``: the policy runs in a server, the agent loop stays the same.

Departure from the in-process backends: the server applies the model's chat
template itself, so ``conversations`` are sent as messages, not rendered here;
the seed of conversation i is ``config.seed + i`` (per-request seeds, honoured by
vLLM and transformers serve; hosted APIs treat seeds as best effort).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dynamind_lite.generation import Generation, GenerationConfig

if TYPE_CHECKING:  # llm imports the RESIM stack; the generator only needs the client object
    from dynamind_lite.llm import ChatClient


class OpenAIGenerator:
    """The Generator protocol over a ``ChatClient``: one chat request per
    conversation, ``max_workers`` in flight at once.

    An empty answer is returned as an empty Generation (the agent loop counts it
    as an invalid action); server failures raise ``LLMError``.

    Args:
        client: the ChatClient of the policy model.
        max_workers: concurrent requests, >= 1 (servers batch them).
    """

    def __init__(self, client: ChatClient, max_workers: int = 4):
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        self.client = client
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return f"OpenAIGenerator(client={self.client!r}, max_workers={self.max_workers})"

    def generate(self, conversations: Sequence[list[dict]], config: GenerationConfig) -> list[Generation]:
        """One Generation per conversation, in order."""
        def one(index: int) -> Generation:
            result = self.client.chat(
                conversations[index],
                temperature=0.0 if config.greedy else config.temperature,
                max_tokens=config.max_new_tokens,
                seed=None if config.seed is None else config.seed + index,
                top_p=None if config.greedy else config.top_p,
                allow_empty=True,
            )
            return Generation(text=result.text, num_tokens=result.completion_tokens,
                              finish_reason=result.finish_reason)

        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations))) as pool:
            return list(pool.map(one, range(len(conversations))))
