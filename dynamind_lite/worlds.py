"""Worlds: what the agent code needs to know about one family of environments.

Introduced in ``notebooks/08_alfworld.ipynb``. Search (``search.build_tree``),
RESIM (``collect.run_resim_episode``), the agent loop (``rollout.run_episodes``),
SimRollout and the evaluation take an env and a ``World``, not Sokoban:

========================  ==============================  ====================================
                          ``SOKOBAN``                     ``ALFWORLD``
========================  ==============================  ====================================
level (a row of a file)   ``{"id", "grid"}``              ``{"id", "task", "pddl_problem", ...}``
env                       ``SokobanEnv``                  ``AlfWorldEnv`` (TextWorld)
A(s)                      Up, Down, Left, Right           the admissible commands of s
prompt                    board (+ last h steps)          task, last h steps, observation,
                                                          admissible commands
answer, plan              ``Up``; ``Plan: Up Left``       ``go to fridge 1``;
                                                          ``Plan: go to fridge 1, open fridge 1``
RESIM rollout policy      noisy solver                    noisy planner (``NoisyExpertPolicy``)
RESIM value V(s)          solver distance                 planner's plan length (``ExpertPlanValue``)
optimal length            the level's ``solution_length`` the planner's plan length at reset
step budget               30                              50
========================  ==============================  ====================================

Every env shares one protocol: ``reset`` (through ``World.start``), ``step(action)
-> (observation, reward, terminated, truncated, info)`` with ``info["success"]``
and ``info["invalid"]``, ``snapshot()``/``restore()``, and the paper's reward
(-0.1 per step, +10 on success, 0 when the budget ends the episode).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynamind_lite.envs import alfworld, sokoban
from dynamind_lite.prompts import ALFWORLD_SYSTEM_PROMPT, SYSTEM_PROMPT, build_messages, build_refine_messages
from dynamind_lite.response import ACTIONS, parse_answer


class SokobanWorld:
    """Sokoban (``envs.sokoban``): the project's first world; notebooks 01-07."""

    name = "sokoban"
    commands = False  # answers and plans are the four move names
    system_prompt = SYSTEM_PROMPT
    default_max_steps = 30

    def load_levels(self, path: str | os.PathLike, canvas: int = 0) -> list[dict]:
        """A level file of ``data/sokoban/``, boards on a fixed ``canvas`` when > 0."""
        return sokoban.load_levels(path, canvas=canvas)

    def check_installed(self) -> None:
        """Nothing to check: Sokoban is pure Python."""

    def check_level(self, level: Any, index: int) -> tuple[Any, str]:
        """(what ``start`` needs, level id); ValueError naming entry ``index`` when it is not a level."""
        if isinstance(level, str):
            grid, level_id = level, str(index)
        elif isinstance(level, dict) and isinstance(level.get("grid"), str):
            grid, level_id = level["grid"], str(level.get("id", index))
        else:
            raise ValueError(f"level {index} must be a grid string or a dict with a 'grid' string, "
                             f"got {type(level).__name__}")
        try:
            sokoban.parse_level(grid)
        except ValueError as err:
            raise ValueError(f"level {index} (id {level_id}): {err}") from None
        return grid, level_id

    def make_env(self, max_steps: int, expert: bool = False) -> sokoban.SokobanEnv:
        return sokoban.SokobanEnv(max_steps=max_steps)

    def start(self, env: sokoban.SokobanEnv, level: Any) -> str:
        """Reset ``env`` on ``level`` (the first item of ``check_level``); the first observation."""
        return env.reset(options={"grid": level})[0]

    def parse_answer(self, text: str) -> str | None:
        return parse_answer(text)

    def random_action(self, env: sokoban.SokobanEnv, rng: random.Random) -> str:
        return rng.choice(ACTIONS)

    def messages(self, env: Any, observation: str, history: Sequence[tuple[str, str]],
                 history_len: int) -> list[dict[str, str]]:
        return build_messages(observation, history, history_len)

    def refine_messages(self, env: Any, observation: str, history: Sequence[tuple[str, str]], history_len: int,
                        response: str, futures: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return build_refine_messages(observation, history, history_len, response, futures)


class AlfWorldWorld:
    """ALFWorld text games (``envs.alfworld``): mini-games generated offline or the real data."""

    name = "alfworld"
    commands = True  # answers and plans are free-text commands (``response.canonical_command``)
    system_prompt = ALFWORLD_SYSTEM_PROMPT
    default_max_steps = alfworld.MAX_STEPS

    def load_levels(self, path: str | os.PathLike, canvas: int = 0) -> list[dict]:
        """A mini-ALFWorld level file (JSONL), or a folder of real games
        (``<task>/trial_*/game.tw-pddl``, e.g. ``$ALFWORLD_DATA/json_2.1.1/valid_seen``)."""
        if canvas:
            raise ValueError(f"canvas applies to Sokoban boards only, not to {self.name} games")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no ALFWorld level file or games folder at {path}: for the real games, "
                                    f"{alfworld.HOW_TO_GET_THE_DATA}")
        if path.is_dir():
            files = sorted(path.glob("*/trial_*/game.tw-pddl"))
            if not files:
                raise FileNotFoundError(f"no ALFWorld games under {path} (expected <task>/trial_*/game.tw-pddl); "
                                        f"for the real games, {alfworld.HOW_TO_GET_THE_DATA}")
            return [{"id": f"{file.parent.parent.name}/{file.parent.name}", "game_file": str(file)} for file in files]
        return alfworld.load_mini_games(path)

    def check_installed(self) -> None:
        """ImportError saying how to install the alfworld extra when it is missing."""
        alfworld.require_textworld()

    def check_level(self, level: Any, index: int) -> tuple[Any, str]:
        if not isinstance(level, dict) or not ("pddl_problem" in level or "game_file" in level):
            raise ValueError(f"level {index} must be a mini-ALFWorld game (a dict with 'pddl_problem') or "
                             f"{{'game_file': ...}}, got {type(level).__name__}")
        return level, str(level.get("id", index))

    def make_env(self, max_steps: int, expert: bool = False) -> alfworld.AlfWorldEnv:
        return alfworld.AlfWorldEnv(max_steps=max_steps, expert=expert)

    def start(self, env: alfworld.AlfWorldEnv, level: dict) -> str:
        if "game_file" in level:
            return env.reset(alfworld.load_real_game(level["game_file"]))[0]
        from dynamind_lite.envs.mini_alfworld import tw_pddl

        return env.reset(tw_pddl(level))[0]

    def parse_answer(self, text: str) -> str | None:
        return parse_answer(text, commands=True)

    def random_action(self, env: alfworld.AlfWorldEnv, rng: random.Random) -> str:
        """An off-path command (``ResimConfig.explore``): half the time the last command again when the game
        no longer admits it (`go to X` where the agent stands, `take A from X` twice: the slip a policy makes,
        and ALFWorld's "Nothing happens.", like Sokoban's blocked move); otherwise a random admissible one."""
        admissible = env.legal_actions()
        last = env.commands[-1] if env.commands else None
        if rng.random() < 0.5 and last is not None and last not in admissible:
            return last
        return rng.choice(admissible)

    def messages(self, env: alfworld.AlfWorldEnv, observation: str, history: Sequence[tuple[str, str]],
                 history_len: int) -> list[dict[str, str]]:
        return build_messages(observation, history, history_len, self.system_prompt, task=env.task,
                              legal_actions=env.legal_actions())

    def refine_messages(self, env: alfworld.AlfWorldEnv, observation: str, history: Sequence[tuple[str, str]],
                        history_len: int, response: str,
                        futures: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return build_refine_messages(observation, history, history_len, response, futures, self.system_prompt,
                                     task=env.task, legal_actions=env.legal_actions())


SOKOBAN = SokobanWorld()
ALFWORLD = AlfWorldWorld()
WORLDS = {world.name: world for world in (SOKOBAN, ALFWORLD)}
"""Worlds by the name the command lines take (``--env``)."""


def get_world(name: str):
    """The world called ``name``; ValueError naming the choices otherwise."""
    if name not in WORLDS:
        raise ValueError(f"unknown env {name!r}; choose one of {sorted(WORLDS)}")
    return WORLDS[name]
