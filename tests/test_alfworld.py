"""ALFWorld through TextWorld: mini-ALFWorld games generated offline, played to a win
by the planner's solution, invalid commands at -0.1, and the real-data path's error."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys

import pytest

from dynamind_lite.envs.mini_alfworld import (OOD_OBJECT_TYPES, TASK_TYPES, held_out_pair, make_game, make_split,
                                              tw_pddl)
from dynamind_lite.envs.sokoban import STEP_REWARD, SUCCESS_REWARD
from dynamind_lite.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(importlib.util.find_spec("textworld") is None,
                                reason="the alfworld extra is not installed (bash scripts/setup.sh --dev installs it)")
DATA = REPO_ROOT / "data" / "alfworld"


@pytest.fixture(scope="module")
def env():
    from dynamind_lite.envs.alfworld import AlfWorldEnv

    return AlfWorldEnv(expert=True)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_generated_game_is_won_by_the_planner_with_the_papers_reward(env, task_type):
    from dynamind_lite.envs.alfworld import play

    spec = make_game(task_type, random.Random(f"test/{task_type}"))
    game = tw_pddl(spec)
    observation, info = env.reset(game)
    assert info["task"] == spec["task"] and "Welcome to TextWorld" not in observation
    plan = info["expert_plan"]
    assert 2 <= len(plan) <= 12 and plan[0] in env.admissible_commands
    total, won, invalid = play(env, game, plan)
    assert won and invalid == 0
    assert total == pytest.approx(STEP_REWARD * (len(plan) - 1) + SUCCESS_REWARD)  # -0.1 per step, +10 at the end


def test_invalid_commands_cost_a_step_and_change_nothing(env):
    game = tw_pddl(make_game("pick_clean_then_place_in_recep", random.Random("invalid")))
    _, info = env.reset(game)
    admissible, plan = env.admissible_commands, info["expert_plan"]
    take_too_early = next(c for c in plan if c.startswith("take "))  # before walking there
    for command in ("fly to the moon", None, take_too_early, ""):
        observation, reward, terminated, truncated, step_info = env.step(command)
        assert step_info["invalid"] and observation == "Nothing happens."
        assert reward == STEP_REWARD and not terminated and not truncated
        assert env.admissible_commands == admissible and step_info["expert_plan"] == plan
    assert env.snapshot().commands == ("fly to the moon", None, take_too_early, "")


def test_an_off_path_command_is_admissible_or_the_last_command_repeated_in_vain(env):
    from dynamind_lite.worlds import ALFWORLD

    game = tw_pddl(make_game("pick_and_place_simple", random.Random("off-path")))
    _, info = env.reset(game)
    rng = random.Random(0)
    assert all(ALFWORLD.random_action(env, rng) in env.admissible_commands for _ in range(20))  # nothing played yet
    first = info["expert_plan"][0]
    env.step(first)  # `go to X`: where the agent now stands, so not admissible again
    drawn = [ALFWORLD.random_action(env, rng) for _ in range(40)]
    repeated = [c for c in drawn if c == first]
    assert 10 <= len(repeated) <= 30 and first not in env.admissible_commands
    assert all(c in env.admissible_commands for c in drawn if c != first)
    assert env.step(first)[4]["invalid"]  # the repeat is ALFWorld's "Nothing happens."


def test_budget_ends_an_unsolved_episode_with_zero_reward():
    from dynamind_lite.envs.alfworld import AlfWorldEnv

    env = AlfWorldEnv(max_steps=3)
    env.reset(tw_pddl(make_game("pick_and_place_simple", random.Random("budget"))))
    rewards = [env.step("look")[1] for _ in range(3)]
    assert rewards == [STEP_REWARD, STEP_REWARD, 0.0] and env.done
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("look")


def test_snapshot_restore_replays_to_the_same_state(env):
    game = tw_pddl(make_game("pick_heat_then_place_in_recep", random.Random("replay")))
    _, info = env.reset(game)
    for command in info["expert_plan"][:2]:
        env.step(command)
    snapshot, observation, admissible = env.snapshot(), env.observation, env.admissible_commands
    env.step(env.admissible_commands[0])
    assert env.restore(snapshot) == observation and env.admissible_commands == admissible


def test_shipped_level_files_are_byte_identical_to_the_script():
    spec = importlib.util.spec_from_file_location("make_mini_alfworld", REPO_ROOT / "scripts" / "make_mini_alfworld.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for split in module.GAMES_PER_TYPE:
        assert (DATA / f"{split}.jsonl").read_text() == module.split_text(split), f"{split}: remake it"


def _games(*splits: str) -> list[dict]:
    return [json.loads(line) for split in splits for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def _pair(game: dict) -> tuple[str, str]:
    targets = game["targets"]
    return targets["object"], targets["receptacle"] or targets["toggle"]


def test_ood_games_ask_for_combinations_no_id_game_asks_for():
    """ood_test (as valid_unseen): object types the ID tasks ask for, in (object, destination)
    pairs no ID task asks for; every pair of it is held out (held_out_pair), none of ID's is."""
    id_games, ood = _games("id_train", "id_test"), _games("ood_test")
    assert not any(held_out_pair(*_pair(game)) for game in id_games)
    assert all(held_out_pair(*_pair(game)) for game in ood)
    assert {g["task_type"] for g in ood} == set(TASK_TYPES)
    training = make_split("id_train", 60)  # notebook 08's 360 training games
    assert not {_pair(g) for g in training} & {_pair(g) for g in ood}
    assert {g["targets"]["object"] for g in ood} <= {g["targets"]["object"] for g in training}


def test_ood_types_games_ask_for_objects_no_id_game_asks_for():
    id_games = _games("id_train", "id_test")
    assert not {game["targets"]["object"] for game in id_games} & OOD_OBJECT_TYPES
    # ... but ID scenes hold them as distractors, so the agent has read their words
    for object_type in OOD_OBJECT_TYPES:
        assert any(f"{object_type}Type" in game["pddl_problem"] for game in id_games), object_type
    ood_types = _games("ood_types_test")
    assert {game["targets"]["object"] for game in ood_types} <= OOD_OBJECT_TYPES
    assert {game["task_type"] for game in ood_types} == set(TASK_TYPES)
    assert make_split("ood_types_test", 1) == make_split("ood_types_test", 1) != \
        make_split("ood_types_test", 1, seed=1)


def test_real_alfworld_without_its_data_fails_with_a_clear_message(monkeypatch, tmp_path):
    from dynamind_lite.envs.alfworld import real_game_files

    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"ALFWORLD_DATA is not set.*alfworld-download"):
        real_game_files("id")
    with pytest.raises(FileNotFoundError, match=r"no ALFWorld games under .*valid_unseen"):
        real_game_files("ood", tmp_path)
    code = ("from dynamind_lite.envs.alfworld import real_game_files\n"
            "try:\n    real_game_files('id')\nexcept FileNotFoundError as err:\n    print(err)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in __import__("os").environ.items() if k != "ALFWORLD_DATA"})
    assert done.returncode == 0 and "Traceback" not in done.stderr and "alfworld-download" in done.stdout
