"""Aggregation: one search tree -> one a^ReSim response (paper Sec. 3.1, RESIM).

Introduced in ``notebooks/03_resim_aggregation.ipynb``. The response is the SFT
target of ``notebooks/04_resim_sft.ipynb``: the policy learns to write the
search tree (plans, real future states, values) and its decision itself.

For state s with tree T (b rollouts, ``dynamind_lite.search``)::

    for i in 1..b:   "Rollout i: a_1 .. a_k", "After a_j:" + s_j (real), "Value: v_i"
    k* = argmax_i v_i                      (first of equals)
    "Best: Rollout k*."                    (its value is written above: not repeated)
    "Plan: plan of rollout k*"             -> answer = its first action

in the grammar of ``dynamind_lite.response`` (``format_rollout``,
``format_response``), so ``response.parse_plan`` and ``response.parse_rollouts``
recover the plan and every simulated state from the text alone.

Where we depart from the paper, and why:

- The paper aggregates with a general LLM (free-form summaries). The tiny
  preset uses ``TemplateAggregator``: deterministic, offline, and compact (no
  prose per rollout) because a ~5M-parameter model has to learn to write it.
  ``LLMAggregator`` (below) is the paper's way, behind the same
  ``Aggregator`` protocol, and every LLM answer is checked by
  ``validate_resim_response`` against the real tree.
- Values are compared as written (one decimal), so the written comparison is
  always consistent with the written values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from dynamind_lite.envs.alfworld import INVALID_FEEDBACK
from dynamind_lite.envs.sokoban import step_grid
from dynamind_lite.llm import ChatClient, LLMError, fill_template, load_template
from dynamind_lite.prompts import ALFWORLD_SYSTEM_PROMPT, SYSTEM_PROMPT, build_messages
from dynamind_lite.response import (
    ACTIONS,
    format_plan,
    format_response,
    format_rollout,
    format_value,
    parse_plan,
    parse_response,
    parse_rollouts,
    same_state,
)

if TYPE_CHECKING:
    from dynamind_lite.search import Rollout, SearchTree

_BEST_RE = re.compile(r"^Best: Rollout (\d+)(?: with value -?\d+(?:\.\d+)?)?\.?\s*$")  # value optional


class AggregationRejected(ValueError):
    """No valid a^ReSim for this tree: the message names what is wrong."""


@runtime_checkable
class Aggregator(Protocol):
    """Turns (s, short history, search tree) into a^ReSim.

    ``history`` holds the episode's earlier ``(state, action)`` pairs, oldest
    first. Returns a response in the ``dynamind_lite.response`` grammar that
    passes ``validate_resim_response``; raises ``AggregationRejected`` when it
    cannot produce one."""

    def aggregate(self, observation: str, history: Sequence[tuple[str, str]], tree: SearchTree) -> str: ...


def best_rollout_index(rollouts: Sequence[Rollout]) -> int:
    """0-based index of the rollout with the highest value as written (one decimal);
    the first of equals. ``rollouts`` must not be empty."""
    if not rollouts:
        raise ValueError("no rollouts to choose from")
    written = [float(format_value(r.value)) for r in rollouts]
    return written.index(max(written))


class TemplateAggregator:
    """Deterministic, offline a^ReSim writer (``notebooks/03_resim_aggregation.ipynb``).

    Output (b = 2, d = 2; grids abbreviated)::

        <think>Rollout 1: Up Left
        After Up:
        ######
        ...
        After Left:
        ...
        Value: 9.7
        Rollout 2: Down Down
        ...
        Value: 9.5
        Best: Rollout 1.
        Plan: Up Left</think><answer>Up</answer>

    Observation and history are not used: the prompt already shows them.
    Rollouts are written in the tree's order (``SearchTree.rollouts``): the search's
    by default, by action after ``SearchTree.in_action_order``
    (``collect.ResimConfig.rollout_order``).
    ``commands``: a text world's grammar (``response`` module docstring).
    """

    name = "template"

    def __init__(self, commands: bool = False):
        self.commands = commands

    def __repr__(self) -> str:
        return f"TemplateAggregator(commands={self.commands})" if self.commands else "TemplateAggregator()"

    def aggregate(self, observation: str, history: Sequence[tuple[str, str]], tree: SearchTree) -> str:
        rollouts = tree.rollouts()
        if not rollouts:
            raise AggregationRejected("the search tree has no rollouts to aggregate")
        blocks = [format_rollout(i, r.actions, r.states, r.value, self.commands) for i, r in enumerate(rollouts, 1)]
        best = best_rollout_index(rollouts)  # k* = argmax_i v_i
        chosen = rollouts[best]
        blocks.append(f"Best: Rollout {best + 1}.")  # its value is two lines up: no token repeats it
        blocks.append(f"Plan: {format_plan(chosen.actions, self.commands)}")
        return format_response("\n".join(blocks), chosen.actions[0])


def validate_resim_response(text: str, tree: SearchTree, commands: bool = False) -> None:
    """Check a^ReSim against the real tree it should summarise.

    Passes silently, or raises ``AggregationRejected`` naming the first problem:
    format (not ``<think>...</think><answer>ACTION</answer>``); a missing,
    extra or reordered rollout block; a rollout plan, written state or value that
    differs from the real one; no ``Best:`` line, or one that names another
    rollout; a plan that is not a rollout of the tree, or not one of highest
    value; an answer that is not the plan's first action. ``commands``: a text
    world's grammar.
    """
    parsed = parse_response(text, commands)
    if parsed.think is None:
        raise AggregationRejected("format: the response is not <think>...</think><answer>ACTION</answer>")
    if parsed.answer is None:
        raise AggregationRejected("format: the answer is not one of the actions")
    rollouts = tree.rollouts()
    if not rollouts:
        raise AggregationRejected("the search tree has no rollouts")

    written = parse_rollouts(text, commands)
    if [w.index for w in written] != list(range(1, len(rollouts) + 1)):
        raise AggregationRejected(f"expected rollout blocks 1..{len(rollouts)} in order, found "
                                  f"{[w.index for w in written]}")
    for real, sim in zip(rollouts, written):
        if sim.actions != real.actions:
            raise AggregationRejected(f"Rollout {sim.index}: plan {sim.actions} differs from the real "
                                      f"rollout's {real.actions}")
        if [a for a, _ in sim.states] != real.actions:
            raise AggregationRejected(f"Rollout {sim.index}: 'After ACTION:' blocks "
                                      f"{[a for a, _ in sim.states]} do not follow the plan {real.actions}")
        for step, ((action, grid), state) in enumerate(zip(sim.states, real.states), 1):
            if not same_state(grid, state, commands):
                raise AggregationRejected(f"Rollout {sim.index}: the state after action {step} ({action}) "
                                          "differs from the real one")
        if sim.value is None or format_value(sim.value) != format_value(real.value):
            raise AggregationRejected(f"Rollout {sim.index}: value {sim.value} differs from the real value "
                                      f"{format_value(real.value)}")

    plan = parse_plan(text, commands)
    if plan is None:
        raise AggregationRejected("no 'Plan:' line made only of actions")
    plans = [r.actions for r in rollouts]
    if plan not in plans:
        raise AggregationRejected(f"plan {plan} is not a rollout of the tree")
    chosen = plans.index(plan)
    best = best_rollout_index(rollouts)
    if format_value(rollouts[chosen].value) != format_value(rollouts[best].value):
        raise AggregationRejected(f"plan is Rollout {chosen + 1} (value {format_value(rollouts[chosen].value)}) "
                                  f"but Rollout {best + 1} has the higher value {format_value(rollouts[best].value)}")
    best_lines = [m for line in parsed.think.splitlines() if (m := _BEST_RE.match(line.strip()))]
    if not best_lines:
        raise AggregationRejected("no 'Best: Rollout K.' line")
    if int(best_lines[-1].group(1)) != chosen + 1:
        raise AggregationRejected(f"'Best:' names Rollout {best_lines[-1].group(1)} but the plan is "
                                  f"Rollout {chosen + 1}")
    if parsed.answer != plan[0]:
        raise AggregationRejected(f"answer {parsed.answer} is not the plan's first action {plan[0]}")


def draft_response(tree: SearchTree, rng, wrong_state_prob: float = 0.5,
                   commands: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """A flawed first response for one tree, and the real futures of its plan: the
    input half of a refine SFT example (``collect.ResimConfig.refine``).

    Introduced in ``notebooks/05_simrollout.ipynb``. The draft has the a^ReSim
    grammar but makes the mistakes a young policy makes: each simulated state is,
    with probability ``wrong_state_prob``, replaced by a wrong one (the state a
    different move would reach, or the previous state unchanged), and the chosen
    rollout is drawn at random instead of by value. Its futures are the chosen
    rollout's real states, exactly what ``simrollout.execute_plan`` returns for
    that plan. Paired with the true a^ReSim as the target, the example teaches the
    format of s^refine: a response, then what really happens, then the fix.

    Args:
        tree: the search tree of s_t (``search.build_tree``), at least one rollout.
        rng: a ``random.Random``; the draft is a function of its state.
        wrong_state_prob: chance that each simulated state is wrong, in [0, 1].
        commands: a text world (no grid to move in): a wrong state is the previous
            observation (the command "forgotten") or "Nothing happens.".

    Returns:
        ``(draft_text, [(a^_k, s'_{t+k}), ...])``.
    """
    rollouts = tree.rollouts()
    if not rollouts:
        raise AggregationRejected("the search tree has no rollouts to draft from")
    blocks = []
    for i, rollout in enumerate(rollouts, 1):
        states, previous = [], tree.root.observation
        for action, real in zip(rollout.actions, rollout.states):
            written = real
            if rng.random() < wrong_state_prob:
                if commands:
                    written = rng.choice([previous, INVALID_FEEDBACK])
                else:
                    wrong = step_grid(previous, rng.choice([a for a in ACTIONS if a != action]))
                    written = wrong if wrong != real else previous  # the move is "forgotten" instead
            states.append(written)
            previous = real
        blocks.append(format_rollout(i, rollout.actions, states, rollout.value, commands))
    chosen = rng.randrange(len(rollouts))
    blocks.append(f"Best: Rollout {chosen + 1}.")
    blocks.append(f"Plan: {format_plan(rollouts[chosen].actions, commands)}")
    draft = format_response("\n".join(blocks), rollouts[chosen].actions[0])
    return draft, list(zip(rollouts[chosen].actions, rollouts[chosen].states))


# --------------------------------------------------------------------------- #
# The RESIM aggregator (paper Sec. 3.1): search tree -> one a^ReSim response
# --------------------------------------------------------------------------- #


def aggregation_prompt(observation: str, history: Sequence[tuple[str, str]], tree, template: str | None = None,
                       history_len: int = 1, text_env: Any = None) -> str:
    """The aggregation prompt the LLM aggregator sends for ``tree``
    (``notebooks/03_resim_aggregation.ipynb`` prints one).

    ``template`` (default ``templates/resim_aggregate.txt``) gets the task (the
    agent's system prompt), the situation (current state with the last
    ``history_len`` steps, as in ``prompts.build_messages``), and every rollout
    block of the tree with its real future states and value, in the grammar the
    answer must copy (``response.format_rollout``). ``text_env``: a text world's
    env in the state of ``observation`` (ALFWorld, ``notebooks/08_alfworld.ipynb``):
    the situation then shows its task and admissible commands, and the default
    template is ``templates/resim_aggregate_text.txt``.
    """
    rollouts = tree.rollouts()
    if not rollouts:
        raise AggregationRejected("the search tree has no rollouts to aggregate")
    commands = text_env is not None
    if commands:
        situation = build_messages(observation, history, history_len, ALFWORLD_SYSTEM_PROMPT, task=text_env.task,
                                   legal_actions=text_env.legal_actions())[1]["content"]
    else:
        situation = build_messages(observation, history, history_len)[1]["content"]
    blocks = "\n".join(format_rollout(i, r.actions, r.states, r.value, commands) for i, r in enumerate(rollouts, 1))
    default = "resim_aggregate_text" if commands else "resim_aggregate"
    return fill_template(load_template(default) if template is None else template,
                         task=ALFWORLD_SYSTEM_PROMPT if commands else SYSTEM_PROMPT,
                         situation=situation, num_rollouts=str(len(rollouts)), rollouts=blocks)


class LLMAggregator:
    """Writes a^ReSim for one state with an LLM, and keeps only correct answers.

    Introduced in ``notebooks/03_resim_aggregation.ipynb``. Implements the
    Aggregator protocol of ``dynamind_lite.resim``.

    Each attempt sends the filled ``resim_aggregate.txt`` prompt (task, current
    state with the last ``history_len`` steps, every rollout of the tree with its
    real future states and value), then checks the answer with
    ``validate_resim_response`` (format, answer is a tree action, plan is a
    rollout, every written state is the real one). A rejected answer is sent back
    with the reason, and the model tries again; after ``max_attempts`` rejections
    ``AggregationRejected`` is raised with every reason. A server failure
    (``LLMError``) counts as a rejected attempt.

    Counters (for collection reports; cumulative over calls):
        calls, accepted, failed: aggregate() calls, and how they ended.
        attempts: requests sent; rejections: attempts that did not pass
        (server_errors of them were LLMErrors); completion_tokens: tokens generated.

    Args:
        client: the ChatClient of the aggregator model.
        max_attempts: tries per state, >= 1.
        template: prompt template text; default ``templates/resim_aggregate.txt``.
        history_len: h, past steps shown (as in ``prompts.build_messages``).
        temperature, max_tokens, seed: sampling settings of each request
            (attempt k uses seed + k when a seed is given).
        text_env: a text world's env (ALFWorld), in the state being aggregated at
            each call: the prompt shows its task and admissible commands, and
            answers are read and checked in the command grammar; None for Sokoban.
    """

    name = "llm"

    def __init__(self, client: ChatClient, max_attempts: int = 3, template: str | None = None,
                 history_len: int = 1, temperature: float = 0.0, max_tokens: int = 2048, seed: int | None = None,
                 text_env: Any = None):
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if history_len < 0:
            raise ValueError(f"history_len must be >= 0, got {history_len}")
        self.client = client
        self.max_attempts = max_attempts
        self.text_env = text_env
        default = "resim_aggregate" if text_env is None else "resim_aggregate_text"
        self.template = load_template(default) if template is None else template
        self.history_len = history_len
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.calls = self.accepted = self.failed = 0
        self.attempts = self.rejections = self.server_errors = self.completion_tokens = 0

    def __repr__(self) -> str:
        return f"LLMAggregator(client={self.client!r}, max_attempts={self.max_attempts})"

    def stats(self) -> dict[str, int]:
        """The counters as a dict (JSON-ready)."""
        return {"calls": self.calls, "accepted": self.accepted, "failed": self.failed,
                "attempts": self.attempts, "rejections": self.rejections,
                "server_errors": self.server_errors, "completion_tokens": self.completion_tokens}

    def build_prompt(self, observation: str, history: Sequence[tuple[str, str]], tree) -> str:
        """The filled aggregation prompt for ``tree`` (the first user message)."""
        return aggregation_prompt(observation, history, tree, self.template, self.history_len, self.text_env)

    def aggregate(self, observation: str, history: Sequence[tuple[str, str]], tree) -> str:
        """a^ReSim for ``observation``: a validated ``<think>...</think><answer>A</answer>``.

        Raises AggregationRejected (with the reason of every attempt) when no
        attempt passes validation."""
        messages = [{"role": "user", "content": self.build_prompt(observation, history, tree)}]
        self.calls += 1
        reasons = []
        for attempt in range(self.max_attempts):
            self.attempts += 1
            seed = None if self.seed is None else self.seed + attempt
            try:
                result = self.client.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                          seed=seed)
                self.completion_tokens += result.completion_tokens
                validate_resim_response(result.text, tree, commands=self.text_env is not None)
            except LLMError as err:
                self.rejections += 1
                self.server_errors += 1
                reasons.append(f"attempt {attempt + 1}: server error: {err}")
                continue
            except AggregationRejected as err:
                self.rejections += 1
                reasons.append(f"attempt {attempt + 1}: {err}")
                # Show the model its answer and what was wrong with it.
                messages = messages[:1] + [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": f"That answer was rejected: {err}. Write the whole answer "
                                                "again, copying every rollout block exactly and following "
                                                "the format exactly."},
                ]
                continue
            self.accepted += 1
            return result.text
        self.failed += 1
        raise AggregationRejected(f"LLM aggregator gave no valid a^ReSim in {self.max_attempts} attempts: "
                                  + "; ".join(reasons))
