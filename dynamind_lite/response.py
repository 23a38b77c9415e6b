"""The project's single response format and the one parser that reads it back.

Introduced in ``notebooks/03_resim_aggregation.ipynb``; used by every later
notebook (the agent loop parses answers, SimRollout executes the chosen plan,
the evaluation scores simulated states).

Every model response, from the tiny base model to a^ReSim, has the shape::

    <think>REASONING</think><answer>ACTION</answer>

A RESIM response (a^ReSim, paper Sec. 3.1) writes its simulations inside the
``<think>`` block in a fixed, line-oriented grammar, so that the plan and the
simulated future states can be recovered from the text alone::

    Rollout 1: Up Left Left          <- the rollout's action plan (a_1 .. a_d)
    After Up:                        <- one block per action of the plan:
    ######                              the state the env reaches, rendered
    #_P__#                              exactly as the env renders it
    ...
    After Left:
    ...
    Value: 9.6                       <- V of the rollout (see dynamind_lite.search)
    Rollout 2: Down Right
    ...
    Best: Rollout 1.                 <- the comparison (the rollout of highest value)
    Plan: Up Left Left               <- the chosen plan; its first action is the answer

A state block is every following line made only of Sokoban grid symbols. Text
outside the grammar (free reasoning of an LLM aggregator or of a base model) is
allowed and ignored by the parsers.

Text worlds (ALFWorld, ``notebooks/08_alfworld.ipynb``) use the same grammar with
``commands=True``: an action is a free-text command (``go to fridge 1``, read
lower-cased with single spaces), a plan separates commands with
``COMMAND_SEPARATOR`` (``Plan: go to fridge 1, open fridge 1``), and a state block
is every following line up to the next grammar line (``Rollout``, ``After``,
``Value:``, ``Best:``, ``Plan:``)::

    Rollout 1: go to fridge 1, open fridge 1
    After go to fridge 1:
    You arrive at fridge 1. The fridge 1 is closed.
    After open fridge 1:
    You open the fridge 1. The fridge 1 is open. In it, you see a egg 2.
    Value: 9.8
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ACTIONS: tuple[str, ...] = ("Up", "Down", "Left", "Right")
"""The Sokoban action set A, in canonical spelling."""

GRID_SYMBOLS = "#_OX√PS"
"""Wall, floor, target, box, box on target, player, player on target."""

COMMAND_SEPARATOR = ", "
"""Between the commands of a text world's plan (no ALFWorld command holds a comma)."""

_ACTION_BY_LOWER = {a.lower(): a for a in ACTIONS}
_RESPONSE_RE = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)
_ROLLOUT_RE = re.compile(r"^Rollout (\d+):(.*)$")
_AFTER_RE = re.compile(r"^After (\w+):\s*$")
_VALUE_RE = re.compile(r"^Value:\s*(-?\d+(?:\.\d+)?)\s*$")
_PLAN_RE = re.compile(r"^Plan:(.*)$")
_GRID_LINE_RE = re.compile(f"^[{re.escape(GRID_SYMBOLS)}]+$")
_TEXT_AFTER_RE = re.compile(r"^After (.+?):\s*$")
_GRAMMAR_LINE_RE = re.compile(r"^(Rollout \d+:|After .+:\s*$|Value:|Best:|Plan:)")


def canonical_action(text: str) -> str | None:
    """Return the canonical action for ``text`` (case-insensitive, whitespace
    ignored), or ``None`` when it names no action."""
    if not isinstance(text, str):
        return None
    return _ACTION_BY_LOWER.get(text.strip().lower())


def canonical_command(text: str) -> str | None:
    """A text world's command as the env reads it: lower case, single spaces;
    ``None`` for an empty command or one that spans lines or holds a tag."""
    if not isinstance(text, str) or "\n" in text.strip() or "<" in text or ">" in text:
        return None
    command = " ".join(text.strip().lower().split())
    return command or None


def _canonical(commands: bool):
    return canonical_command if commands else canonical_action


@dataclass
class ParsedResponse:
    """A response split into its parts.

    ``think`` is the reasoning text, ``answer`` the canonical action, or ``None``
    when the response is malformed (no tags, text around them, unknown action):
    the agent loop counts that as an invalid action.
    """

    think: str | None
    answer: str | None

    @property
    def valid(self) -> bool:
        return self.answer is not None


def parse_response(text: str, commands: bool = False) -> ParsedResponse:
    """Split ``<think>...</think><answer>ACTION</answer>``; never raises.
    ``commands``: the answer is a text world's command (``canonical_command``)."""
    if not isinstance(text, str):
        return ParsedResponse(None, None)
    match = _RESPONSE_RE.match(text)
    if match is None:
        return ParsedResponse(None, None)
    think, answer = match.group(1), match.group(2)
    if "<think>" in think or "<answer>" in think:
        return ParsedResponse(None, None)
    return ParsedResponse(think, _canonical(commands)(answer))


def parse_answer(text: str, commands: bool = False) -> str | None:
    """The canonical answer action (or command) of a well-formed response, else ``None``."""
    return parse_response(text, commands).answer


@dataclass
class SimulatedRollout:
    """One rollout as written in a response.

    ``actions``: the plan a_1..a_k written after ``Rollout i:`` (canonical names;
    an unknown word becomes ``None`` so that positions stay aligned).
    ``states``: ``(action, state_text)`` for every ``After ACTION:`` block, in
    order; ``state_text`` is the grid as written ('\\n'-joined rows, possibly
    empty when the model wrote no grid).
    ``value``: the number after ``Value:``, if written.
    """

    index: int
    actions: list[str | None] = field(default_factory=list)
    states: list[tuple[str | None, str]] = field(default_factory=list)
    value: float | None = None


def _actions_from_words(words: str, commands: bool = False) -> list[str | None]:
    if commands:
        return [canonical_command(c) for c in words.split(COMMAND_SEPARATOR.strip())] if words.strip() else []
    return [canonical_action(w) for w in words.replace(",", " ").split()]


def parse_rollouts(text: str, commands: bool = False) -> list[SimulatedRollout]:
    """Every ``Rollout i:`` block of a response, in order; never raises.

    Works on the whole response or on the think text alone. ``commands``: a
    text world's grammar (module docstring).
    """
    if not isinstance(text, str):
        return []
    rollouts: list[SimulatedRollout] = []
    lines = text.replace("<think>", "\n").replace("</think>", "\n").splitlines()
    current: SimulatedRollout | None = None
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if m := _ROLLOUT_RE.match(line):
            current = SimulatedRollout(index=int(m.group(1)), actions=_actions_from_words(m.group(2), commands))
            rollouts.append(current)
            continue
        if current is None:
            continue
        if commands and (m := _TEXT_AFTER_RE.match(line)):
            rows = []
            while i < len(lines) and not _GRAMMAR_LINE_RE.match(lines[i].strip()):
                rows.append(lines[i].strip())
                i += 1
            current.states.append((canonical_command(m.group(1)), "\n".join(rows).strip()))
        elif not commands and (m := _AFTER_RE.match(line)):
            rows = []
            while i < len(lines) and _GRID_LINE_RE.match(lines[i].strip()):
                rows.append(lines[i].strip())
                i += 1
            current.states.append((canonical_action(m.group(1)), "\n".join(rows)))
        elif m := _VALUE_RE.match(line):
            current.value = float(m.group(1))
        elif _PLAN_RE.match(line) or line.startswith("Best:"):
            current = None
    return rollouts


def parse_plan_words(text: str, commands: bool = False) -> list[str | None] | None:
    """The words of the chosen plan (the last ``Plan:`` line) as canonical actions,
    ``None`` for a word that is not an action; ``None`` when there is no ``Plan:``
    line. Never raises. SimRollout reads plans with it (``simrollout.extract_plan``)."""
    if not isinstance(text, str):
        return None
    plan = None
    for line in text.replace("</think>", "\n").splitlines():
        if m := _PLAN_RE.match(line.strip()):
            plan = _actions_from_words(m.group(1), commands)
    return plan


def parse_plan(text: str, commands: bool = False) -> list[str] | None:
    """The chosen plan (the last ``Plan:`` line), or ``None`` when absent, empty, or
    when it contains a word that is not an action (or an empty command)."""
    plan = parse_plan_words(text, commands)
    if not plan or any(a is None for a in plan):
        return None
    return plan  # type: ignore[return-value]


# --------------------------------------------------------------------------- #
# Writing the grammar (used by the template aggregator and by tests)
# --------------------------------------------------------------------------- #


def same_state(written: str, real: str, commands: bool = False) -> bool:
    """A state as a response wrote it (``parse_rollouts``) equals the env's ``real``
    render: grids exactly; text line by line, surrounding spaces ignored."""
    if commands:
        return written.split("\n") == [line.strip() for line in real.strip().splitlines()]
    return written == real.strip("\n")


def format_value(value: float) -> str:
    """Values are written with one decimal, e.g. ``9.6`` or ``-0.3``."""
    return f"{value:.1f}"


def format_plan(actions: list[str], commands: bool = False) -> str:
    """A plan as written after ``Rollout i:`` and ``Plan:``."""
    return (COMMAND_SEPARATOR if commands else " ").join(actions)


def format_rollout(index: int, actions: list[str], states: list[str], value: float, commands: bool = False) -> str:
    """One ``Rollout i:`` block; ``states[k]`` is the env's render after ``actions[k]``."""
    if len(actions) != len(states):
        raise ValueError(f"rollout {index}: {len(actions)} actions but {len(states)} states")
    lines = [f"Rollout {index}: {format_plan(actions, commands)}"]
    for action, state in zip(actions, states):
        lines.append(f"After {action}:")
        lines.append(state.strip("\n"))
    lines.append(f"Value: {format_value(value)}")
    return "\n".join(lines)


def format_response(think: str, answer: str) -> str:
    """``<think>think</think><answer>answer</answer>``."""
    return f"<think>{think}</think><answer>{answer}</answer>"
