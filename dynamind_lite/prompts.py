"""The policy's prompt: system instructions + recent history (h steps) + current state.

Introduced in ``notebooks/03_resim_aggregation.ipynb`` (the SFT data) and used,
unchanged, by the agent loop in ``notebooks/04_resim_sft.ipynb``: the data the
policy is trained on and the prompts it is evaluated on come from this one
function, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

SYSTEM_PROMPT = (
    "You are a Sokoban agent. Push every box onto a target.\n"
    "Symbols: # wall, _ floor, O target, X box, √ box on target, P player, S player on target.\n"
    "Actions: Up, Down, Left, Right.\n"
    "Think first, then answer as <think>...</think><answer>ACTION</answer>."
)
"""The system message shared by SFT data and evaluation."""


def build_messages(
    observation: str,
    history: Sequence[tuple[str, str]] = (),
    history_len: int = 1,
    system_prompt: str = SYSTEM_PROMPT,
) -> list[dict[str, str]]:
    """Chat messages for one decision.

    Args:
        observation: the current state s_t as the env renders it.
        history: every earlier ``(state, action)`` pair of the episode, oldest first.
        history_len: h, how many of the most recent pairs to show (0 shows none).
        system_prompt: the system message.

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``; append the assistant
        message to make an SFT example.
    """
    if history_len < 0:
        raise ValueError(f"history_len must be >= 0, got {history_len}")
    recent = list(history)[-history_len:] if history_len else []
    parts = []
    for state, action in recent:
        parts.append(f"Previous state:\n{state.strip()}\nAction: {action}")
    parts.append(f"Current state:\n{observation.strip()}")
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": "\n".join(parts)},
    ]
