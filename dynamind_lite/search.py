"""RESIM's search: b rollouts of depth <= d, expanded depth-first in the real env.

Introduced in ``notebooks/02_dfs_search_tree.ipynb``; ``dynamind_lite.resim``
compresses the tree into one a^ReSim response (notebook 03).

From the current state s (paper Sec. 3.1)::

    for i in 1..b:                                 one rollout at a time (depth first)
        walk down from s, branching at the first node that has an untried action
        a_k ~ pi(. | s_{k-1})                      the rollout policy
        s_k, r_k = T(s_{k-1}, a_k), R(...)         executed in the REAL environment
        stop at depth d or when the episode ends
    value(rollout) = sum_k r_k + V(s_leaf)         V(s_leaf) = 0 when the rollout ended

Every node holds the real next observation, reward and done flag of the action
that led to it, so the future states written in a^ReSim are real ones (the
paper's Sim Score 1.00 for RESIM).

Three small interfaces, so that each piece can be swapped:

- a rollout policy ``policy(observation, rng, exclude=()) -> action``
  (``RandomPolicy``, ``NoisySolverPolicy``, ``GeneratorPolicy`` for any LLM);
- a value function ``value_fn(observation) -> float``, V(s) in reward units
  (``ExactValue``, ``HeuristicValue``, ``LLMValueFunction``);
- the environment: snapshot/restore when it has them (Sokoban, ALFWorld),
  otherwise reset-and-replay from a ``ReplayState``. An env with
  ``legal_actions()`` (ALFWorld's admissible commands) gives each node its own
  action set A(s); otherwise A is fixed (Sokoban's four moves).

A policy or value function that reads the env itself rather than the observation
text (``reads_env = True``: ``NoisyExpertPolicy``, ``ExpertPlanValue`` on ALFWorld,
where the text does not determine the state) is called with the env in the
node's state.

Where we depart from the paper, and why:

- The paper's DFS is not specified beyond "b partial rollouts of depth d". Ours
  makes rollouts distinct: a new rollout branches off at the shallowest node
  that still has an untried action (the root, while b <= |A|), then follows the
  policy freely. With b <= 4 in Sokoban every rollout starts with a different
  action, so the aggregated response compares different first moves.
- Sokoban's value function is the exact solver distance (``ExactValue``), not a
  learned or prompted V: it is cheap, exact, and makes the RESIM agent a true
  upper bound. ``HeuristicValue`` shows what a cheap approximation does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import permutations
from typing import Any, Protocol, runtime_checkable

from dynamind_lite.envs import sokoban
from dynamind_lite.generation import GenerationConfig, Generator
from dynamind_lite.llm import ChatClient, LLMError, fill_template, load_template, parse_number, shorten
from dynamind_lite.prompts import ALFWORLD_SYSTEM_PROMPT, SYSTEM_PROMPT, build_messages
from dynamind_lite.response import ACTIONS, parse_answer

UNSOLVABLE_VALUE = -1.0
"""V of a state from which the puzzle can no longer be solved (a box stuck in a
corner): the episode will end unsolved (0.0) after some -0.1 steps; -1.0 is
about ten wasted steps, below every solvable state's value."""


# =========================================================================== #
# The tree (a plain dataclass that serialises to JSON and back)
# =========================================================================== #


@dataclass
class TreeNode:
    """One node of the search tree: the real outcome of one action.

    action: the action that led here (None at the root).
    observation: the env's render after that action (at the root: s itself).
    reward: r of that transition (-0.1, 0.0 or 10.0 in Sokoban; 0.0 at the root).
    done: the episode ended with this transition (solved or out of steps).
    success: it ended solved.
    children: the nodes reached from here, in the order they were expanded.
    value: V(observation) from the value function, set on rollout leaves that
        did not end (the bootstrap term of the rollout value); None elsewhere.
    """

    action: str | None
    observation: str
    reward: float = 0.0
    done: bool = False
    success: bool = False
    children: list[TreeNode] = field(default_factory=list)
    value: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeNode:
        children = [cls.from_dict(child) for child in data.get("children", [])]
        return cls(action=data["action"], observation=data["observation"], reward=float(data["reward"]),
                   done=bool(data["done"]), success=bool(data["success"]), children=children,
                   value=None if data.get("value") is None else float(data["value"]))

    def count(self) -> int:
        """Nodes in this subtree, this one included."""
        return 1 + sum(child.count() for child in self.children)


@dataclass
class Rollout:
    """One root-to-leaf path of the tree: a partial rollout of depth <= d.

    actions: a_1..a_k, k <= d.
    states: states[j] = the real observation after actions[j].
    rewards: rewards[j] = r after actions[j].
    done, success: whether the rollout ended the episode, and solved it.
    value: sum(rewards) + (0 if done else V(states[-1])), in reward units:
        about 10 - 0.1 * (moves to solve the level along this rollout) when it
        leads to a solution, <= 0 when it cannot.
    """

    actions: list[str]
    states: list[str]
    rewards: list[float]
    done: bool
    success: bool
    value: float


@dataclass
class SearchTree:
    """The search tree of one decision (``notebooks/02_dfs_search_tree.ipynb``).

    root: the node of the current state s (``root.observation``).
    b: rollouts asked for; d: their maximum depth.
    env_steps: environment transitions executed to build it (the search cost,
        replays included), typically b * d.
    policy, value_fn: names of the rollout policy and value function used.
    """

    root: TreeNode
    b: int
    d: int
    env_steps: int = 0
    policy: str = ""
    value_fn: str = ""

    def rollouts(self) -> list[Rollout]:
        """Every root-to-leaf path, in depth-first order (the order they were built
        when rollouts branch at the root)."""
        found: list[Rollout] = []

        def walk(node: TreeNode, path: list[TreeNode]) -> None:
            if not node.children and path:
                leaf = path[-1]
                rewards = [n.reward for n in path]
                bootstrap = 0.0 if leaf.done else float(leaf.value if leaf.value is not None else 0.0)
                found.append(Rollout(actions=[n.action for n in path], states=[n.observation for n in path],
                                     rewards=rewards, done=leaf.done, success=leaf.success,
                                     value=sum(rewards) + bootstrap))  # sum_k r_k + V(s_leaf)
            for child in node.children:
                walk(child, path + [child])

        walk(self.root, [])
        return found

    def in_action_order(self, actions: Sequence[str] = ACTIONS) -> SearchTree:
        """The same tree with every node's children sorted by action: the order of
        ``actions`` first, then any other action alphabetically (a text world's
        commands). ``rollouts()`` then lists them in that order, so a rollout's
        position says nothing about how the policy ranked it (``ResimConfig.rollout_order``)."""
        rank = {action: i for i, action in enumerate(actions)}

        def sorted_node(node: TreeNode) -> TreeNode:
            children = sorted((sorted_node(c) for c in node.children),
                              key=lambda c: (rank.get(c.action, len(rank)), c.action))
            return replace(node, children=children)

        return replace(self, root=sorted_node(self.root))

    def num_nodes(self) -> int:
        """Nodes in the tree, the root included."""
        return self.root.count()

    def to_json(self) -> str:
        """The tree as a JSON string (``from_json`` reads it back)."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> SearchTree:
        data = json.loads(text)
        return cls(root=TreeNode.from_dict(data["root"]), b=int(data["b"]), d=int(data["d"]),
                   env_steps=int(data.get("env_steps", 0)), policy=data.get("policy", ""),
                   value_fn=data.get("value_fn", ""))


# =========================================================================== #
# Rollout policies: policy(observation, rng, exclude=()) -> action
# =========================================================================== #


@runtime_checkable
class RolloutPolicy(Protocol):
    """pi(a | s) for the search: an action for ``observation`` that is not in
    ``exclude`` (the actions already tried at that node). Randomness comes only
    from ``rng``, so a seeded rng gives the same tree."""

    def __call__(self, observation: str, rng: random.Random, exclude: Collection[str] = ()) -> str: ...


class IllegalActionError(ValueError):
    """A rollout policy answered something that is not an allowed action."""


def _allowed(actions: Sequence[str], exclude: Collection[str]) -> list[str]:
    allowed = [a for a in actions if a not in exclude]
    if not allowed:
        raise ValueError(f"no action left to choose: all of {list(actions)} are excluded")
    return allowed


class RandomPolicy:
    """Uniformly random among the allowed actions (``notebooks/02_dfs_search_tree.ipynb``).

    actions: the action set A (default: Sokoban's four moves).
    """

    name = "random"

    def __init__(self, actions: Sequence[str] = ACTIONS):
        self.actions = tuple(actions)

    def __repr__(self) -> str:
        return "RandomPolicy()"

    def __call__(self, observation: str, rng: random.Random, exclude: Collection[str] = ()) -> str:
        return rng.choice(_allowed(self.actions, exclude))


class NoisySolverPolicy:
    """The optimal move with probability 1 - epsilon, a random allowed move otherwise
    (``notebooks/02_dfs_search_tree.ipynb``; Sokoban only).

    "Optimal" ranks the allowed moves by the solver's exact distance to the goal
    from the state each one leads to (ties: order of ``ACTIONS``); a move into a
    dead end ranks last. With ``exclude`` the best move left is taken, so a
    second rollout tries the second-best first move.

    epsilon: exploration rate in [0, 1]; 0 = always optimal, 1 = uniform random.
    """

    name = "noisy_solver"

    def __init__(self, epsilon: float = 0.1):
        if not isinstance(epsilon, (int, float)) or not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be a probability in [0, 1], got {epsilon!r}")
        self.epsilon = float(epsilon)

    def __repr__(self) -> str:
        return f"NoisySolverPolicy(epsilon={self.epsilon})"

    def __call__(self, observation: str, rng: random.Random, exclude: Collection[str] = ()) -> str:
        allowed = _allowed(ACTIONS, exclude)
        explore = rng.random() < self.epsilon  # always drawn: the rng stream does not depend on the state
        if explore:
            return rng.choice(allowed)

        def moves_to_goal(action: str) -> float:
            remaining = sokoban.solution_length(sokoban.step_grid(observation, action))
            return float("inf") if remaining is None else remaining

        return min(allowed, key=moves_to_goal)  # min() keeps the first of equals: ACTIONS order


class NoisyExpertPolicy:
    """The planner's next command with probability 1 - epsilon, a random admissible
    command otherwise (``notebooks/08_alfworld.ipynb``; text worlds whose env knows
    its ``expert_plan``, e.g. ``AlfWorldEnv(expert=True)``).

    With ``exclude`` holding the planner's command (a second rollout), a random
    admissible command is taken, so rollouts compare the plan with an alternative.

    env: the env the search runs in (read at the node being expanded: ``reads_env``).
    epsilon: exploration rate in [0, 1].
    """

    name = "noisy_expert"
    reads_env = True

    def __init__(self, env: Any, epsilon: float = 0.1):
        if not isinstance(epsilon, (int, float)) or not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be a probability in [0, 1], got {epsilon!r}")
        self.env, self.epsilon = env, float(epsilon)

    def __repr__(self) -> str:
        return f"NoisyExpertPolicy(epsilon={self.epsilon})"

    def __call__(self, observation: str, rng: random.Random, exclude: Collection[str] = ()) -> str:
        allowed = _allowed(self.env.legal_actions(), exclude)
        explore = rng.random() < self.epsilon  # always drawn: the rng stream does not depend on the state
        plan = self.env.expert_plan
        if explore or not plan or plan[0] not in allowed:
            return rng.choice(allowed)
        return plan[0]


class GeneratorPolicy:
    """An LLM as rollout policy, over any generation backend (hf, vllm, openai)
    (``notebooks/02_dfs_search_tree.ipynb``).

    Each call sends the agent prompt (``prompts.build_messages``, no history) and
    reads the answer with ``response.parse_answer``. A malformed answer (no
    tags, no action) is a counted rejection and is sampled again with another
    seed; after ``max_attempts`` rejections ``IllegalActionError`` is raised,
    naming the last answer. An answer in ``exclude`` (the model repeats a move
    already tried at this node) is counted in ``repeats`` and replaced by a
    random allowed move, so rollouts stay distinct.

    Args:
        generator: a ``dynamind_lite.generation.Generator``.
        config: its ``GenerationConfig``; ``seed`` is replaced per call by one
            drawn from the search rng (sampling stays repeatable).
        max_attempts: samples per call before giving up, >= 1.

    Counters: ``calls``, ``rejections`` (malformed answers), ``repeats``.
    """

    name = "llm"

    def __init__(self, generator: Generator, config: GenerationConfig | None = None, max_attempts: int = 3):
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        self.generator = generator
        self.config = config if config is not None else GenerationConfig(
            max_new_tokens=512, temperature=1.0, top_p=1.0, do_sample=True, seed=0)
        self.max_attempts = max_attempts
        self.calls = self.rejections = self.repeats = 0

    def __repr__(self) -> str:
        return f"GeneratorPolicy(generator={self.generator!r}, max_attempts={self.max_attempts})"

    def __call__(self, observation: str, rng: random.Random, exclude: Collection[str] = ()) -> str:
        allowed = _allowed(ACTIONS, exclude)
        self.calls += 1
        conversation = build_messages(observation, (), history_len=0)
        text = ""
        for _ in range(self.max_attempts):
            config = replace(self.config, seed=rng.randrange(2**31))
            text = self.generator.generate([conversation], config)[0].text
            action = parse_answer(text)
            if action is None:
                self.rejections += 1
                continue
            if action in exclude:
                self.repeats += 1
                return rng.choice(allowed)
            return action
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise IllegalActionError(f"LLM rollout policy gave no valid action in {self.max_attempts} attempts "
                                 f"(last answer: {shown!r})")


# =========================================================================== #
# Value functions: value_fn(observation) -> V(s)
# =========================================================================== #


@runtime_checkable
class ValueFunction(Protocol):
    """V(s): the return still to collect from ``observation``, in reward units.

    Sokoban: a state that needs n >= 1 more moves is worth 10.0 - 0.1 * (n - 1)
    (n - 1 step penalties, then the +10.0 of the solving step), so values of
    solvable states lie in about (7, 10]; an unsolvable state is worth
    ``UNSOLVABLE_VALUE`` (-1.0); a solved (terminal) state is worth 0.0.
    """

    def __call__(self, observation: str) -> float: ...


def value_from_moves(moves: float | None) -> float:
    """V = 10 - 0.1 (n - 1) for a state n >= 1 moves from solved; 0 when solved;
    ``UNSOLVABLE_VALUE`` when n is None (no solution)."""
    if moves is None:
        return UNSOLVABLE_VALUE
    if moves <= 0:
        return 0.0
    return sokoban.SUCCESS_REWARD + sokoban.STEP_REWARD * (moves - 1)  # 10 - 0.1 (n - 1)


class ExactValue:
    """V(s) from the solver's exact remaining distance (Sokoban only;
    ``notebooks/02_dfs_search_tree.ipynb``). Ignores the step budget."""

    name = "exact"

    def __repr__(self) -> str:
        return "ExactValue()"

    def __call__(self, observation: str) -> float:
        return value_from_moves(sokoban.solution_length(observation))


class ExpertPlanValue:
    """V(s) from the planner's remaining plan length n: ``value_from_moves(n)``, the
    exact value of a mini-game, as the solver gives Sokoban's
    (``notebooks/08_alfworld.ipynb``; an env with ``expert_plan``). No plan left in
    an unfinished game: unsolvable (``UNSOLVABLE_VALUE``).

    env: the env the search runs in (read at the leaf: ``reads_env``).
    """

    name = "expert_plan"
    reads_env = True

    def __init__(self, env: Any):
        self.env = env

    def __repr__(self) -> str:
        return "ExpertPlanValue()"

    def __call__(self, observation: str) -> float:
        if self.env.won:
            return 0.0
        plan = self.env.expert_plan
        return value_from_moves(len(plan) if plan else None)


class HeuristicValue:
    """V(s) from box-to-target distances, no search (``notebooks/02_dfs_search_tree.ipynb``).

    Estimated moves n^ = (cheapest assignment of boxes to targets, Manhattan
    distance; boxes already placed cost 0) + (player's Manhattan distance to the
    nearest unplaced box - 1). A box off target in a corner of two walls can
    never move again: the state is unsolvable. Then V = value_from_moves(n^).
    Optimistic (n^ <= true n in open rooms); walls are ignored in distances.
    """

    name = "heuristic"

    def __repr__(self) -> str:
        return "HeuristicValue()"

    def __call__(self, observation: str) -> float:
        rows = observation.split("\n")
        cells = {(r, c): ch for r, row in enumerate(rows) for c, ch in enumerate(row)}
        boxes = [p for p, ch in cells.items() if ch == "X"]  # boxes off target
        targets = [p for p, ch in cells.items() if ch in "OS"]  # free targets
        player = next(p for p, ch in cells.items() if ch in "PS")
        if not boxes:
            return value_from_moves(0)

        def wall(r: int, c: int) -> bool:
            return cells.get((r, c), "#") == "#"

        for r, c in boxes:
            if (wall(r - 1, c) or wall(r + 1, c)) and (wall(r, c - 1) or wall(r, c + 1)):
                return value_from_moves(None)  # cornered box: dead

        def manhattan(p: tuple[int, int], q: tuple[int, int]) -> int:
            return abs(p[0] - q[0]) + abs(p[1] - q[1])

        pushes = min(sum(manhattan(b, t) for b, t in zip(boxes, chosen))
                     for chosen in permutations(targets, len(boxes)))
        walk = min(manhattan(player, b) for b in boxes) - 1
        return value_from_moves(pushes + walk)


# --------------------------------------------------------------------------- #
# A prompted value function V(s) (the paper's choice for AndroidWorld)
# --------------------------------------------------------------------------- #


class LLMValueFunction:
    """V(s) asked from an LLM: the return still to collect from ``observation``.

    Introduced in ``notebooks/03_resim_aggregation.ipynb``. Same units as the
    value-function protocol of ``dynamind_lite.search`` (and the scale the prompt
    explains): 10.0 - 0.1 * (n - 1) for a state n >= 1 moves from solved, so
    solvable states lie in about (7, 10]; -1.0 for an unsolvable state; 0.0 when
    solved. Answers outside ``value_range`` are rejected, not clipped.

    Args:
        client: the ChatClient of the model asked for V.
        template: prompt template text with ``{task}`` and ``{state}``;
            default ``templates/value_estimate.txt``.
        value_range: (low, high) accepted values.
        max_tokens: room for the answer (more for models that reason first).
        text_env: a text world's env (ALFWorld, ``notebooks/08_alfworld.ipynb``):
            the prompt then names its task, with ``templates/value_estimate_text.txt``;
            it is read at the leaf (``reads_env``). None for Sokoban.

    Raises LLMError when the answer holds no unambiguous number in range.
    """

    name = "llm"

    def __init__(self, client: ChatClient, template: str | None = None,
                 value_range: tuple[float, float] = (-10.0, 10.0), max_tokens: int = 256, text_env: Any = None):
        low, high = value_range
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
        self.client = client
        self.text_env = text_env
        self.reads_env = text_env is not None
        default = "value_estimate" if text_env is None else "value_estimate_text"
        self.template = load_template(default) if template is None else template
        self.value_range = (float(low), float(high))
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"LLMValueFunction(client={self.client!r}, value_range={self.value_range!r})"

    def __call__(self, observation: str) -> float:
        if not isinstance(observation, str) or not observation.strip():
            raise ValueError("observation must be a non-empty grid text")
        task = SYSTEM_PROMPT if self.text_env is None else f"{ALFWORLD_SYSTEM_PROMPT}\nTask: {self.text_env.task}"
        prompt = fill_template(self.template, task=task, state=observation.strip("\n"))
        text = self.client.chat([{"role": "user", "content": prompt}], max_tokens=self.max_tokens).text
        value = parse_number(text, "Value")
        low, high = self.value_range
        if value is None:
            raise LLMError(f"value function: no unambiguous number in the answer of {self.client.model!r}: "
                           f"{shorten(repr(text))}")
        if not low <= value <= high:
            raise LLMError(f"value function: {value} is outside the accepted range [{low}, {high}] "
                           f"(answer of {self.client.model!r}: {shorten(repr(text))})")
        return value


# =========================================================================== #
# Moving the environment to a node (plumbing): snapshot/restore or replay
# =========================================================================== #


@dataclass(frozen=True)
class ReplayState:
    """A state of an env without snapshots: how to reach it from a reset.

    reset_kwargs: arguments of ``env.reset`` (e.g. ``{"options": {"grid": ...}}``).
    actions: the actions to replay after the reset.
    """

    reset_kwargs: dict
    actions: tuple[str, ...] = ()


class _Transitions:
    """Executes one real transition from a stored state, counting env steps."""

    def __init__(self, env: Any):
        self.env = env
        self.snapshots = callable(getattr(env, "snapshot", None)) and callable(getattr(env, "restore", None))
        self.env_steps = 0

    def observe(self, state: Any) -> str:
        """Put the env in ``state`` and return its observation."""
        if self.snapshots:
            observation = self.env.restore(state)  # Sokoban's restore returns the board text
            return observation if isinstance(observation, str) else self.env.render()
        if not isinstance(state, ReplayState):
            raise ValueError(f"{type(self.env).__name__} has no snapshot()/restore(): pass a ReplayState, "
                             f"got {type(state).__name__}")
        observation, _ = self.env.reset(**state.reset_kwargs)
        for action in state.actions:
            observation, *_ = self.env.step(action)
            self.env_steps += 1
        return observation

    def step(self, state: Any, action: str) -> tuple[Any, str, float, bool, bool]:
        """(next state, observation, reward, done, success) of ``action`` from ``state``."""
        self.observe(state)
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.env_steps += 1
        if self.snapshots:
            next_state = self.env.snapshot()
        else:
            next_state = ReplayState(state.reset_kwargs, state.actions + (action,))
        return next_state, observation, float(reward), bool(terminated or truncated), bool(info.get("success"))


# =========================================================================== #
# Building the tree (the algorithm)
# =========================================================================== #


def _check_size(name: str, value: Any, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} ({meaning}) must be an integer >= 1, got {value!r}")


def build_tree(env: Any, state: Any, policy: RolloutPolicy, b: int, d: int, value_fn: ValueFunction,
               rng: random.Random | None = None, actions: Sequence[str] = ACTIONS) -> SearchTree:
    """Expand ``b`` distinct partial rollouts of depth <= ``d`` from ``state`` by DFS,
    executing every transition in ``env`` (``notebooks/02_dfs_search_tree.ipynb``).

    Args:
        env: the real environment. With ``snapshot()``/``restore()`` (Sokoban)
            ``state`` is a snapshot; otherwise ``state`` is a ``ReplayState`` and
            every transition is reached by reset-and-replay.
        state: s, the state to search from (the env is put back into it at the end).
        policy: the rollout policy pi (see ``RolloutPolicy``).
        b: number of rollouts, >= 1 (typically 2-4). Fewer are built only when
            the tree has no untried action left (tiny action space or every
            branch ended).
        d: maximum rollout depth, >= 1 (typically 2-5; the paper caps it at 5).
        value_fn: V(s) for the leaves of rollouts that did not end.
        rng: randomness of the policy (default ``random.Random(0)``).
        actions: the action set A, when ``env`` has no ``legal_actions()``.

    Raises:
        ValueError: b or d < 1; ``IllegalActionError`` (a ValueError) when the
        policy returns something outside the allowed actions.
    """
    _check_size("b", b, "number of rollouts")
    _check_size("d", d, "maximum rollout depth")
    rng = random.Random(0) if rng is None else rng
    fixed_actions = tuple(actions)
    per_state = callable(getattr(env, "legal_actions", None))  # A(s) changes with s (text worlds)
    transitions = _Transitions(env)
    root = TreeNode(action=None, observation=transitions.observe(state))
    depth: dict[int, int] = {id(root): 0}  # node -> depth
    env_state: dict[int, Any] = {id(root): state}  # node -> env state after it
    node_actions: dict[int, tuple[str, ...]] = {}  # node -> A(s), read with the env in that state
    node_actions[id(root)] = tuple(env.legal_actions()) if per_state else fixed_actions

    def choose(node: TreeNode, exclude: Collection[str]) -> str:
        if getattr(policy, "reads_env", False):
            transitions.observe(env_state[id(node)])
        action = policy(node.observation, rng, exclude)
        if action not in node_actions[id(node)] or action in exclude:
            allowed = [a for a in node_actions[id(node)] if a not in exclude]
            raise IllegalActionError(f"rollout policy {policy!r} returned {action!r}, which is not one of the "
                                     f"allowed actions {allowed}")
        return action

    def open_for_new_rollout(node: TreeNode) -> bool:
        """A new, distinct rollout can pass through ``node``."""
        if node.done or depth[id(node)] >= d:
            return False
        tried = {child.action for child in node.children}
        return len(tried) < len(node_actions[id(node)]) or any(open_for_new_rollout(c) for c in node.children)

    for _ in range(b):
        if not open_for_new_rollout(root):
            break
        node, branched = root, False
        while not node.done and depth[id(node)] < d:
            tried = {child.action: child for child in node.children}
            if branched or len(tried) < len(node_actions[id(node)]):
                action = choose(node, () if branched else tried.keys())  # a_k ~ pi(. | s_{k-1})
                next_state, observation, reward, done, success = transitions.step(env_state[id(node)], action)
                child = TreeNode(action=action, observation=observation, reward=reward, done=done, success=success)
                node.children.append(child)
                depth[id(child)], env_state[id(child)] = depth[id(node)] + 1, next_state
                node_actions[id(child)] = tuple(env.legal_actions()) if per_state else fixed_actions
                node, branched = child, True
            else:  # every action tried here: follow the policy into a subtree that can still branch
                closed = [a for a, c in tried.items() if not open_for_new_rollout(c)]
                node = tried[choose(node, closed)]
        if not node.done and getattr(value_fn, "reads_env", False):
            transitions.observe(env_state[id(node)])
        node.value = None if node.done else float(value_fn(node.observation))  # V(s_leaf)

    transitions.observe(state)  # leave the env where the caller had it
    return SearchTree(root=root, b=b, d=d, env_steps=transitions.env_steps,
                      policy=getattr(policy, "name", type(policy).__name__),
                      value_fn=getattr(value_fn, "name", type(value_fn).__name__))
