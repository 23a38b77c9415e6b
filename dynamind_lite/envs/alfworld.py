"""ALFWorld as the paper's MDP: a household text game, played through TextWorld.

Beyond Sokoban (issue "Beyond Sokoban: ALFWorld"): the same reward and the same
step interface as ``envs.sokoban.SokobanEnv``, on ALFWorld's text games, real
(``$ALFWORLD_DATA``) or generated offline (``envs.mini_alfworld``). Needs the
optional extra: ``pip install -e ".[alfworld]"`` (alfworld, textworld).

The MDP (S, A, T, R):

- s_t: the text the game printed (``observation``: the TextWorld banner and the
  "Your task is to: ..." line are stripped; the task is in ``info["task"]``),
  with the admissible commands in ``info["admissible_commands"]``;
- a_t: one command, e.g. ``go to sinkbasin 1``; a command that is not admissible
  (or unparseable, ``None``) is an *invalid action*: the game does not change,
  the observation is ``Nothing happens.``, and the step counts;
- R exactly as in Sokoban: ``STEP_REWARD = -0.1`` per non-terminal step,
  ``SUCCESS_REWARD = +10`` on the step that completes the task,
  ``FAILURE_REWARD = 0`` on the step that spends the budget (``truncated``);
- T: TextWorld's PDDL engine with ALFWorld's domain; the budget is
  ``MAX_STEPS = 50``, as ALFWorld's peers use.

Snapshots are the commands played since reset (``ReplaySnapshot``), and every
transition TextWorld executes is remembered, keyed by the valid commands that
lead to it (an invalid command never changes the game). ``restore`` and a step
already seen are therefore dictionary look-ups; only a transition never seen
before runs TextWorld, after a reset-and-replay when TextWorld is elsewhere;
that replay re-applies the recorded PDDL operators without deriving any text
(``_replay``), a fraction of a step each. A search tree of b rollouts of depth
d costs about b * d real transitions, not b * (t + d) replayed steps. Two more
things make TextWorld fast enough for RESIM:

- TextWorld translates the PDDL problem to SAS at *every* reset (0.45 s of a
  0.49 s reset on mini-games), and parses its text templates and logic queries
  with tatsu at every step (most of a step); all are pure functions of their
  input, so they are memoised (``_MemoisedDownward``, ``_memoise_template_parsing``).
  ``benchmarks/bench_alfworld.py``: a reset 0.33 -> 0.035 s, a step 0.037 -> 0.0096 s.
- ``info["expert_plan"]`` (``expert=True``) holds the planner's remaining
  commands: RESIM's exact value function and noisy-expert rollout policy on
  mini-games (``search.ExpertPlanValue``, ``search.NoisyExpertPolicy``).

``legal_actions()`` is the admissible-command list of the current state: the
search tree's action set A(s), which changes with the state in ALFWorld.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamind_lite.envs.sokoban import FAILURE_REWARD, STEP_REWARD, SUCCESS_REWARD

MAX_STEPS = 50
"""Step budget T of an ALFWorld episode (ALFWorld's peers: 50)."""
INVALID_FEEDBACK = "Nothing happens."
"""What the game prints for a command it cannot play (TextWorld's own words)."""
REAL_SPLITS = {"train": "train", "id": "valid_seen", "ood": "valid_unseen"}
"""ALFWorld's training split and the paper's test splits under ``$ALFWORLD_DATA/json_2.1.1/``."""

_BANNER = "-= Welcome to TextWorld, ALFRED! =-"
_TASK_PREFIX = "Your task is to: "


def require_textworld():
    """The TextWorld/ALFWorld pieces the env plays with; ImportError saying how to install them."""
    try:
        import textworld
        import textworld.envs.pddl.logic as pddl_logic
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
        from textworld.envs.pddl import PddlEnv
    except ImportError:
        raise ImportError("the ALFWorld env needs the alfworld and textworld packages: "
                          "pip install -e \".[alfworld]\"") from None
    _memoise_translation(pddl_logic)
    _memoise_template_parsing()
    return textworld, PddlEnv, AlfredDemangler, AlfredInfos


class _MemoisedDownward:
    """``fast_downward`` as TextWorld's PDDL logic sees it, with ``pddl2sas`` cached:
    the PDDL -> SAS translation is a pure function of (domain, problem, options),
    and TextWorld repeats it at every reset. Everything else is the real module."""

    def __init__(self, module):
        self._module = module
        self.pddl2sas = functools.lru_cache(maxsize=64)(module.pddl2sas)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _memoise_translation(pddl_logic) -> None:
    if not isinstance(pddl_logic.fast_downward, _MemoisedDownward):
        pddl_logic.fast_downward = _MemoisedDownward(pddl_logic.fast_downward)


def _memoise_template_parsing() -> None:
    """TextWorld parses every command and feedback template, and the logic queries in
    them, with tatsu at every step (most of a step's time); a parse is a pure
    function of its text, so it is kept, and each call gets its own deep copy
    (TextWorld mutates what it gets)."""
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as logic

    for module in (textgen, logic):
        if getattr(module._parse_and_convert, "memoised", False):
            continue
        module._parse_and_convert = _memoised(module._parse_and_convert)


def _memoised(parse):
    parsed = {}

    def memoised(text, **options):
        key = (text, tuple(sorted(options.items())))
        if key not in parsed:
            parsed[key] = parse(text, **options)
        return copy.deepcopy(parsed[key])

    memoised.memoised = True
    return memoised


def clean_observation(text: str) -> tuple[str, str | None]:
    """(observation, task): the game's text without the banner and the task line,
    and the task text (``None`` when the text has no task line)."""
    lines, task = [], None
    for line in text.replace(_BANNER, "").strip().splitlines():
        if line.startswith(_TASK_PREFIX):
            task = line[len(_TASK_PREFIX):].strip().rstrip(".")
        else:
            lines.append(line)
    return "\n".join(lines).strip(), task


@dataclass(frozen=True)
class ReplaySnapshot:
    """A state of the env as the commands that lead to it from reset."""

    commands: tuple[str | None, ...]


@dataclass(frozen=True)
class _GameState:
    """What TextWorld reported on arriving in one game state."""

    observation: str
    admissible: tuple[str, ...]
    won: bool
    expert_plan: tuple[str, ...] | None


class AlfWorldEnv:
    """One ALFWorld game at a time (real or mini), with the paper's reward.

    Introduced in ``notebooks/08_alfworld.ipynb``.

    Args:
        max_steps: budget T, >= 1 (ALFWorld: 50).
        expert: also report the planner's remaining plan (``info["expert_plan"]``);
            it replans at every new transition (a few ms on mini-games, more on real ones).

    Counters: ``textworld_steps`` (transitions TextWorld executed with their
    text), ``textworld_resets``, and ``replayed_operators`` (PDDL operators
    re-applied to bring TextWorld back to a state, ``_replay``).
    """

    def __init__(self, max_steps: int = MAX_STEPS, expert: bool = False):
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        self.max_steps, self.expert = max_steps, expert
        textworld, pddl_env, demangler, infos = require_textworld()
        request = textworld.EnvInfos(admissible_commands=True, won=True, policy_commands=expert)
        self._env = infos(demangler(pddl_env(request)))
        self._game: dict | None = None
        self._known: dict[tuple[str, ...], _GameState] = {}  # valid commands from reset -> state reached
        self._operators: dict[tuple[str, ...], tuple] = {}  # the same key -> the PDDL operator of its last command
        self._textworld_at: tuple[str, ...] | None = None  # where TextWorld itself is
        self._key: tuple[str, ...] = ()  # where the episode is: the valid commands played
        self.commands: list[str | None] = []
        self.task: str | None = None
        self.observation = ""
        self.textworld_steps = self.textworld_resets = self.replayed_operators = 0

    # ---- the MDP ------------------------------------------------------------ #

    def reset(self, game: dict | str | os.PathLike | None = None) -> tuple[str, dict[str, Any]]:
        """Start ``game`` (a ``.tw-pddl`` dict or file; ``None``: the current game again).
        Returns ``(observation, info)``."""
        if game is not None:
            self._game = json.loads(Path(game).read_text()) if isinstance(game, (str, os.PathLike)) else game
            self._env.load(self._game)
            self._known, self._operators, self._textworld_at = {}, {}, None
            self._textworld_reset()
        if self._game is None:
            raise RuntimeError("reset() needs a game the first time")
        self._key, self.commands = (), []
        self.observation = self._known[()].observation
        return self.observation, self._info(invalid=False)

    def step(self, command: str | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Play ``command``: ``(observation, reward, terminated, truncated, info)``;
        ``info["invalid"]`` is True for a command that is not admissible."""
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("the episode is over: call reset()")
        command = None if command is None else " ".join(command.strip().lower().split())
        invalid = command not in self.admissible_commands
        if invalid:
            self.observation = INVALID_FEEDBACK  # the game state does not change
        else:
            key = self._key + (command,)
            if key not in self._known:
                self._execute(self._key, command)
            self._key = key
            self.observation = self._known[key].observation
        self.commands.append(command)
        terminated = self.won
        truncated = not terminated and len(self.commands) >= self.max_steps
        reward = SUCCESS_REWARD if terminated else FAILURE_REWARD if truncated else STEP_REWARD
        return self.observation, reward, terminated, truncated, self._info(invalid=invalid)

    # ---- state ---------------------------------------------------------------- #

    @property
    def admissible_commands(self) -> list[str]:
        return list(self._known[self._key].admissible) if self._game is not None else []

    def legal_actions(self) -> list[str]:
        """A(s): the admissible commands of the current state (the search's action set)."""
        return self.admissible_commands

    @property
    def expert_plan(self) -> list[str]:
        """The planner's remaining commands from the current state (needs ``expert=True``)."""
        if not self.expert:
            raise RuntimeError("expert_plan needs AlfWorldEnv(expert=True)")
        return list(self._known[self._key].expert_plan or ())

    @property
    def won(self) -> bool:
        return bool(self._game is not None and self._known[self._key].won)

    @property
    def done(self) -> bool:
        return self.won or len(self.commands) >= self.max_steps

    def _info(self, invalid: bool) -> dict[str, Any]:
        info = {"task": self.task, "admissible_commands": self.admissible_commands, "invalid": invalid,
                "success": self.won, "steps": len(self.commands)}
        if self.expert:
            info["expert_plan"] = self.expert_plan
        return info

    def snapshot(self) -> ReplaySnapshot:
        """The current state as the commands played since reset."""
        return ReplaySnapshot(tuple(self.commands))

    def restore(self, snapshot: ReplaySnapshot) -> str:
        """Go back to ``snapshot`` (reset and replay its commands; TextWorld runs only
        for transitions never seen before). Returns the observation there."""
        self.reset()
        for command in snapshot.commands:
            self.step(command)
        return self.observation

    # ---- TextWorld itself (plumbing) ------------------------------------------ #

    def _record(self, key: tuple[str, ...], state) -> None:
        observation, task = clean_observation(state["feedback"])
        if not key:
            self.task = task
        plan = tuple(state.get("policy_commands") or ()) if self.expert else None
        self._known[key] = _GameState(observation, tuple(state["admissible_commands"]), bool(state["won"]), plan)
        self._textworld_at = key

    def _textworld_reset(self) -> None:
        self._record((), self._env.reset())
        self.textworld_resets += 1

    def _execute(self, key: tuple[str, ...], command: str) -> None:
        """Run the transition (key, command) in TextWorld, replaying to ``key`` first."""
        if self._textworld_at != key:
            self._replay(key)
        state, _, _ = self._env.step(command)
        self.textworld_steps += 1
        self._operators[key + (command,)] = _signature(self._env.unwrapped._last_action)
        self._record(key + (command,), state)

    def _replay(self, key: tuple[str, ...]) -> None:
        """Put TextWorld at ``key`` (every transition on the way was executed before):
        a fresh PDDL state (what ``PddlEnv.reset`` builds, without deriving the intro
        text and the plan of s_0), the recorded PDDL operators re-applied directly,
        without deriving the text of every step (the text is known), and the state's
        commands derived once at the end, without a plan (known too), so that the
        next ``step`` finds them."""
        import textworld.envs.pddl.logic as pddl_logic
        from textworld.core import GameState

        inner = self._env.unwrapped  # TextWorld's PddlEnv under the ALFWorld wrappers
        inner._pddl_state = pddl_logic.PddlState(inner.downward_lib, inner._game_data["pddl_problem"], inner._logic)
        self.textworld_resets += 1
        for i in range(len(key)):
            wanted = self._operators[key[:i + 1]]
            action = next(a for a in inner._pddl_state.all_applicable_actions() if _signature(a) == wanted)
            inner._pddl_state.apply(action)
            self.replayed_operators += 1
        inner.state, inner.prev_state, inner._last_action, inner._moves = GameState(), None, None, len(key)
        wants_plan, inner.request_infos.policy_commands = inner.request_infos.policy_commands, False
        try:
            inner._gather_infos()
        finally:
            inner.request_infos.policy_commands = wants_plan
        self._textworld_at = key


def _signature(action) -> tuple:
    """A PDDL action as its operator name and arguments (what re-applies it)."""
    return action.name, tuple(sorted((placeholder.name, variable.name) for placeholder, variable in action.mapping.items()))


# --------------------------------------------------------------------------- #
# Game files: mini-ALFWorld level files and the real ALFWorld data
# --------------------------------------------------------------------------- #


def load_mini_games(path: str | os.PathLike) -> list[dict]:
    """The game specs of a mini-ALFWorld level file (JSONL, ``data/alfworld/``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no mini-ALFWorld level file at {path}: remake it with "
                                "python scripts/make_mini_alfworld.py")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


HOW_TO_GET_THE_DATA = ("download it once on a machine with internet: pip install alfworld && alfworld-download "
                       "(about 2 GB), then export ALFWORLD_DATA=<that folder>; or play the offline mini-ALFWorld "
                       "games of data/alfworld/")
"""What the errors of the real-data path tell a user who does not have it."""


def real_game_files(distribution: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The ``game.tw-pddl`` files of the real ALFWorld split ``"train"``, ``"id"``
    (valid_seen) or ``"ood"`` (valid_unseen), under ``data_dir`` or ``$ALFWORLD_DATA``.
    FileNotFoundError saying how to get the data when it is not there."""
    if distribution not in REAL_SPLITS:
        raise ValueError(f"distribution must be one of {sorted(REAL_SPLITS)}, got {distribution!r}")
    root = data_dir or os.environ.get("ALFWORLD_DATA")
    how = HOW_TO_GET_THE_DATA
    if not root:
        raise FileNotFoundError(f"the real ALFWorld data is not configured: $ALFWORLD_DATA is not set; {how}")
    split_dir = Path(root) / "json_2.1.1" / REAL_SPLITS[distribution]
    files = sorted(split_dir.glob("*/trial_*/game.tw-pddl"))
    if not files:
        raise FileNotFoundError(f"no ALFWorld games under {split_dir} (expected <task>/trial_*/game.tw-pddl); "
                                f"{how}")
    return files


def load_real_game(path: str | os.PathLike) -> dict:
    """A real ALFWorld ``game.tw-pddl``; where its grammar still has ALFWorld's
    placeholder goal, the task text of the ``traj_data.json`` beside it is filled
    in (ALFWorld's ``add_task_to_grammar``)."""
    path = Path(path)
    game = json.loads(path.read_text())
    trajectory = path.parent / "traj_data.json"
    if "UNKNOWN GOAL" in game.get("grammar", "") and trajectory.is_file():
        from alfworld.agents.utils.misc import add_task_to_grammar

        game["grammar"] = add_task_to_grammar(game["grammar"], json.loads(trajectory.read_text()))
    return game


def play(env: AlfWorldEnv, game: dict, commands: Sequence[str | None]) -> tuple[float, bool, int]:
    """Play ``commands`` from the start of ``game`` (stopping when the episode ends):
    ``(return, success, invalid steps)``."""
    env.reset(game)
    total, invalid = 0.0, 0
    for command in commands:
        _, reward, terminated, truncated, info = env.step(command)
        total += reward
        invalid += info["invalid"]
        if terminated or truncated:
            break
    return total, env.won, invalid
