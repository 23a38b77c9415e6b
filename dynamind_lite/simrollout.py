"""SimRollout: execute the policy's own plan in the real env and let it refine (paper Sec. 3.2).

Introduced in ``notebooks/05_simrollout.ipynb``; the simulation-improvement
phase of Dyna-GRPO (``dynamind_lite.dyna_grpo``) plays its SimRollout episodes
with it, through the agent loop (``rollout.run_episodes(..., simrollout=...)``).

One SimRollout decision at state s_t::

    a            ~ pi_theta(. | s_t)                         the first response
    a^_1 .. a^_d = extract_plan(a),  d <= 5                  its chosen plan (``Plan:`` line)
    s'_{t+1..t+d} = execute_plan(env, a^_1 .. a^_d)         real states, from a snapshot:
                                                             the episode does not advance
    s_t^refine   = s_t + a + [a^_1, s'_{t+1}, a^_2, s'_{t+2}, ...]   (prompts.build_refine_messages)
    a^refine     ~ pi_theta(. | s_t^refine)                  the refined response
    play the first action of a^refine (its <answer>)

Where we depart from the paper, or choose where it is silent, and why:

- The plan is the response's ``Plan:`` line (the a^ReSim grammar of
  ``dynamind_lite.response``); d is its length, capped at ``MAX_PLAN_DEPTH`` = 5
  as in the paper.
- A plan word that is not an action ends the plan there (status ``"partial"``):
  the known prefix is still executed. No ``Plan:`` line, or an unknown first
  word, is status ``"missing"``: nothing is executed and the first response is
  played as in a standard step (an invalid action when it is malformed). Every
  status is counted in the records, never a crash.
- The plan stops early when the env ends part-way (the level is solved, or the
  step budget runs out): only states the env really reached are shown.
- Sokoban has no illegal moves: a move into a wall is legal and leaves the
  state unchanged, and the real state shows exactly that. In a text world a
  command that is not admissible is played too, and its real state is the
  env's "Nothing happens.".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from typing import Any

from dynamind_lite.response import parse_plan_words

MAX_PLAN_DEPTH = 5
"""d is read from each response and capped at 5 (paper: for training stability)."""

PLAN_STATUSES = ("ok", "capped", "partial", "missing")
"""How a plan was read: as written; cut to MAX_PLAN_DEPTH; cut at an unknown word; none usable."""


@dataclass(frozen=True)
class Plan:
    """The plan a^_1 .. a^_d read from one response.

    actions: canonical action names, 0 <= len <= MAX_PLAN_DEPTH (empty when missing).
    status: one of PLAN_STATUSES.
    """

    actions: tuple[str, ...]
    status: str


def extract_plan(response: str, max_depth: int = MAX_PLAN_DEPTH, commands: bool = False) -> Plan:
    """a^_1 .. a^_d from ``response``'s ``Plan:`` line; never raises (fuzz-tested).
    ``commands``: a text world's plan (``response.COMMAND_SEPARATOR`` between commands)."""
    if not isinstance(max_depth, int) or max_depth < 1:
        raise ValueError(f"max_depth must be an integer >= 1, got {max_depth!r}")
    words = parse_plan_words(response, commands)
    if not words or words[0] is None:
        return Plan((), "missing")
    known = next((k for k, action in enumerate(words) if action is None), len(words))
    actions = tuple(words[:min(known, max_depth)])
    if known < min(len(words), max_depth):
        status = "partial"  # an unknown word within the first max_depth
    elif len(words) > max_depth:
        status = "capped"
    else:
        status = "ok"
    return Plan(actions, status)  # type: ignore[arg-type]


def execute_plan(env: Any, actions: Sequence[str]) -> list[tuple[str, str]]:
    """s'_{t+1..t+d}: play ``actions`` in ``env`` from its current state, then put
    the state back (``snapshot``/``restore``), so the episode does not advance.

    Returns ``(a^_k, s'_{t+k})`` pairs, one per action the env really played:
    fewer than ``len(actions)`` when the env ends part-way.
    """
    snapshot = env.snapshot()
    futures = []
    try:
        for action in actions:
            if env.done:
                break
            state, *_ = env.step(action)
            futures.append((action, state))
    finally:
        env.restore(snapshot)
    return futures


@dataclass
class Refinement:
    """What SimRollout did at one step (stored on ``rollout.StepRecord.refinement``).

    first_response: a, the response sampled at s_t.
    first_num_tokens: its generated tokens.
    plan: the plan read from it.
    futures: ``(a^_k, s'_{t+k})``, the real states of the plan (empty when nothing ran).
    messages: s_t^refine as chat messages, or None when the plan was missing
        (then the step played ``first_response`` itself).
    """

    first_response: str
    first_num_tokens: int
    plan: Plan
    futures: list[tuple[str, str]] = field(default_factory=list)
    messages: list[dict[str, str]] | None = None

    @property
    def refined(self) -> bool:
        """True when a refined response was sampled (and played)."""
        return self.messages is not None
