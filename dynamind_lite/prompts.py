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

ALFWORLD_SYSTEM_PROMPT = (
    "You are a household agent in a text world. Complete the task.\n"
    "Each turn, play one of the admissible actions.\n"
    "Think first, then answer as <think>...</think><answer>ACTION</answer>."
)
"""The system message of text worlds (ALFWorld, ``notebooks/08_alfworld.ipynb``); the task
and the admissible actions are in each user message (``build_messages``)."""


def build_messages(
    observation: str,
    history: Sequence[tuple[str, str]] = (),
    history_len: int = 1,
    system_prompt: str = SYSTEM_PROMPT,
    task: str | None = None,
    legal_actions: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one decision.

    Args:
        observation: the current state s_t as the env renders it.
        history: every earlier ``(state, action)`` pair of the episode, oldest first.
        history_len: h, how many of the most recent pairs to show (0 shows none).
        system_prompt: the system message.
        task: the episode's goal in words, shown first (text worlds: ALFWorld's
            "put a clean egg in fridge"); None for Sokoban, whose goal never changes.
        legal_actions: A(s_t), shown last (ALFWorld's admissible commands); None
            when the action set is fixed and in the system prompt (Sokoban).

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}]``; append the assistant
        message to make an SFT example.
    """
    if history_len < 0:
        raise ValueError(f"history_len must be >= 0, got {history_len}")
    recent = list(history)[-history_len:] if history_len else []
    parts = [] if task is None else [f"Task: {task}"]
    for state, action in recent:
        parts.append(f"Previous state:\n{state.strip()}\nAction: {action}")
    parts.append(f"Current state:\n{observation.strip()}")
    if legal_actions is not None:
        parts.append(f"Admissible actions: {'; '.join(legal_actions)}")
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": "\n".join(parts)},
    ]


REFINE_INSTRUCTION = "Refine your response with the real states above."
"""The last line of a SimRollout refine prompt (``build_refine_messages``)."""


def build_refine_messages(
    observation: str,
    history: Sequence[tuple[str, str]],
    history_len: int,
    response: str,
    futures: Sequence[tuple[str, str]],
    system_prompt: str = SYSTEM_PROMPT,
    task: str | None = None,
    legal_actions: Sequence[str] | None = None,
) -> list[dict[str, str]]:
    """s_t^refine = s_t + a + [a^_1, s'_{t+1}, a^_2, s'_{t+2}, ...] (paper Sec. 3.2, SimRollout).

    Introduced in ``notebooks/05_simrollout.ipynb``. The refine prompt is the
    ordinary prompt of ``build_messages`` (same system message, same history
    window, same current state) followed by the policy's first response ``a``
    and the real future states of its plan, written in the a^ReSim grammar the
    policy already speaks (``After ACTION:`` + the grid)::

        Previous state: ... Action: ...        (the last h steps, as usual)
        Current state:
        <s_t>
        Your response:
        <a>
        Real states of your plan:
        After Up:
        <s'_{t+1}>
        After Left:
        <s'_{t+2}>
        Refine your response with the real states above.

    Args:
        observation, history, history_len: as in ``build_messages``.
        response: a, the first response sampled at s_t (text as generated).
        futures: ``(a^_k, s'_{t+k})`` pairs from ``simrollout.execute_plan``, k = 1..d.
        task, legal_actions: as in ``build_messages`` (text worlds).
    """
    if not futures:
        raise ValueError("a refine prompt needs at least one real future state (the plan was empty)")
    messages = build_messages(observation, history, history_len, system_prompt, task, legal_actions)
    parts = [messages[1]["content"], f"Your response:\n{response.strip()}", "Real states of your plan:"]
    for action, state in futures:
        parts.append(f"After {action}:\n{state.strip()}")
    parts.append(REFINE_INSTRUCTION)
    messages[1]["content"] = "\n".join(parts)
    return messages
