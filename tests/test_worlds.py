"""One agent code path, two worlds: Sokoban's results pinned across the env refactor,
and search, RESIM, the agent loop and the exact Sim Score on ALFWorld text games."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import subprocess
import sys

import pytest

from dynamind_lite.paths import REPO_ROOT, tiny_base_dir
from dynamind_lite.response import parse_plan, parse_response, parse_rollouts
from dynamind_lite.simrollout import extract_plan

needs_textworld = pytest.mark.skipif(importlib.util.find_spec("textworld") is None,
                                     reason="the alfworld extra is not installed (bash scripts/setup.sh --dev)")
ALFWORLD_DATA = REPO_ROOT / "data" / "alfworld"


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynamind_lite", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=timeout)


# --------------------------------------------------------------------------- #
# Sokoban: the numbers the code gave before worlds existed
# --------------------------------------------------------------------------- #

SOKOBAN_RESIM_SHA256 = "26f9429ca071b017b1cbe45b2d0840b947fffb9305030ffd0291630f17e1b08f"
"""sha256 of the SFT file of the command below, made by the code before the env refactor (commit 3dcb741)."""

SOKOBAN_BASE_EVAL = {"num_successes": 0, "num_steps": 24, "mean_gen_tokens": 15.333333333333334,
                     "invalid_action_rate": 0.0, "truncated_response_rate": 0.0}
"""The tiny base model's sampled play of 8 id_test levels (3 steps, T=1, seed 0), made by the code before
the refactor (commit 3dcb741, in a git worktree) with the shipped 2-layer base (the 4-layer base gave 15.58)."""


def test_sokoban_resim_data_is_byte_identical_to_before_the_env_refactor(tmp_path):
    out = tmp_path / "resim.jsonl"
    result = _run("resim", "--levels", "data/sokoban/id_test.jsonl", "--out", str(out), "--limit", "24",
                  "--b", "2", "--d", "2", "--explore", "0.1", "--refine", "0.2", "--workers", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["num_successes"], summary["num_examples"], summary["num_decisions"]) == (24, 168, 139)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == SOKOBAN_RESIM_SHA256


def test_sokoban_agent_loop_metrics_are_unchanged_by_the_env_refactor(tmp_path):
    out = tmp_path / "eval.json"
    result = _run("evaluate", "--model", str(tiny_base_dir()), "--levels", "data/sokoban/id_test.jsonl",
                  "--out", str(out), "--preset", "tiny", "--limit", "8", "--max-steps", "3",
                  "--temperature", "1.0", "--max-new-tokens", "160")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert {key: metrics[key] for key in SOKOBAN_BASE_EVAL} == SOKOBAN_BASE_EVAL
    assert metrics["env"] == "sokoban"


# --------------------------------------------------------------------------- #
# The text-command grammar
# --------------------------------------------------------------------------- #

TEXT_RESPONSE = (
    "<think>Rollout 1: go to fridge 1, open fridge 1\n"
    "After go to fridge 1:\nYou arrive at fridge 1. The fridge 1 is closed.\n"
    "After open fridge 1:\nYou open the fridge 1. The fridge 1 is open.\nIn it, you see a egg 2.\n"
    "Value: 9.8\n"
    "Rollout 2: look\nAfter look:\nYou are facing the fridge 1.\nValue: 9.5\n"
    "Best: Rollout 1.\nPlan: go to fridge 1, open fridge 1</think><answer>Go to  fridge 1</answer>"
)


def test_text_grammar_reads_commands_plans_and_multi_line_states():
    assert parse_response(TEXT_RESPONSE, commands=True).answer == "go to fridge 1"
    assert parse_plan(TEXT_RESPONSE, commands=True) == ["go to fridge 1", "open fridge 1"]
    rollouts = parse_rollouts(TEXT_RESPONSE, commands=True)
    assert [r.actions for r in rollouts] == [["go to fridge 1", "open fridge 1"], ["look"]]
    assert rollouts[0].states[1] == ("open fridge 1", "You open the fridge 1. The fridge 1 is open.\n"
                                                      "In it, you see a egg 2.")
    assert [r.value for r in rollouts] == [9.8, 9.5]
    assert extract_plan(TEXT_RESPONSE, max_depth=1, commands=True).actions == ("go to fridge 1",)
    # Sokoban's reading of the same text finds no move
    assert parse_response(TEXT_RESPONSE).answer is None and parse_plan(TEXT_RESPONSE) is None


@pytest.mark.parametrize("answer", ["", "go to\nfridge 1", "<b>look</b>", "   "])
def test_text_answers_that_are_no_command_are_malformed(answer):
    assert parse_response(f"<think>x</think><answer>{answer}</answer>", commands=True).answer is None


# --------------------------------------------------------------------------- #
# ALFWorld: env memory, search, RESIM, the agent loop, Sim Score
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def games():
    from dynamind_lite.envs.alfworld import load_mini_games

    specs = load_mini_games(ALFWORLD_DATA / "id_test.jsonl")
    return [specs[i] for i in range(0, len(specs), 10)]  # one game per task type


@needs_textworld
def test_remembered_transitions_equal_a_fresh_textworld_replay(games):
    from dynamind_lite.envs.alfworld import AlfWorldEnv
    from dynamind_lite.envs.mini_alfworld import tw_pddl

    game, rng = tw_pddl(games[2]), random.Random(0)
    env = AlfWorldEnv(expert=True)
    env.reset(game)
    visited = []
    for _ in range(12):  # a random walk with jumps back to states seen before
        if visited and rng.random() < 0.3:
            env.restore(rng.choice(visited))
        visited.append(env.snapshot())
        env.step(rng.choice(env.admissible_commands + ["fly away"]))
    fresh = AlfWorldEnv(expert=True)
    for snapshot in visited:
        fresh.reset(game)  # a new game load: nothing remembered
        for command in snapshot.commands:
            observation, *_ = fresh.step(command)
        assert env.restore(snapshot) == fresh.observation
        assert env.admissible_commands == fresh.admissible_commands and env.expert_plan == fresh.expert_plan
    assert env.textworld_resets < len(visited)  # restores did not reset TextWorld each time


@needs_textworld
def test_search_tree_over_admissible_commands_with_the_planners_value(games):
    from dynamind_lite.envs.alfworld import AlfWorldEnv
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.search import ExpertPlanValue, NoisyExpertPolicy, build_tree, value_from_moves

    env = AlfWorldEnv(expert=True)
    env.reset(tw_pddl(games[1]))
    plan = env.expert_plan
    tree = build_tree(env, env.snapshot(), NoisyExpertPolicy(env, epsilon=0.0), b=3, d=2,
                      value_fn=ExpertPlanValue(env), rng=random.Random(0))
    rollouts = tree.rollouts()
    assert len(rollouts) == 3 and len({r.actions[0] for r in rollouts}) == 3  # distinct first commands
    assert rollouts[0].actions == plan[:2]  # epsilon 0: the planner's plan
    assert rollouts[0].value == pytest.approx(-0.2 + value_from_moves(len(plan) - 2))
    assert all(r.value < rollouts[0].value for r in rollouts[1:])  # detours are worth less
    assert env.snapshot().commands == () and env.expert_plan == plan  # the env is back at s


@needs_textworld
def test_resim_agent_solves_every_task_type_with_real_futures(games, tmp_path):
    from dynamind_lite.collect import ResimConfig, run_resim_episode
    from dynamind_lite.envs.alfworld import AlfWorldEnv
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.evaluate import compare_simulated_texts

    config = ResimConfig(env="alfworld", b=2, d=3, max_steps=50, refine=0.5)
    env = AlfWorldEnv(expert=True)
    for game in games:
        episode = run_resim_episode(game, config)
        assert episode.success and episode.optimal_length <= len(episode.steps) <= 50
        env.reset(tw_pddl(game))
        for step in episode.steps:  # every simulated future in a^ReSim is the real one
            states = compare_simulated_texts(env, step.response)
            assert states and all(s.exact == 1.0 for s in states)
            env.step(step.action)
        rows = episode.sft_examples(history_len=1)
        assert rows[0]["messages"][1]["content"].startswith(f"Task: {game['task']}")
        assert "Admissible actions: " in rows[0]["messages"][1]["content"]
    corrupted = episode.steps[0].response.replace("You arrive at", "You fly to", 1)
    env.reset(tw_pddl(game))
    assert min(s.exact for s in compare_simulated_texts(env, corrupted)) == 0.0


@needs_textworld
def test_resim_and_evaluate_commands_take_env_alfworld(tmp_path):
    levels = tmp_path / "games.jsonl"
    lines = (ALFWORLD_DATA / "ood_test.jsonl").read_text().splitlines()
    levels.write_text("\n".join(lines[::20]) + "\n")  # 3 OOD games
    result = _run("resim", "--env", "alfworld", "--levels", str(levels), "--out", str(tmp_path / "sft.jsonl"),
                  "--workers", "1", "--no-progress")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["success_rate"] == 1.0 and summary["config"]["max_steps"] == 50
    assert sum(n for _, n in summary["successes_by_optimal_length"].values()) == 3

    out = tmp_path / "eval.json"
    result = _run("evaluate", "--env", "alfworld", "--model", str(tiny_base_dir()), "--levels", str(levels),
                  "--out", str(out), "--limit", "2", "--max-steps", "2", "--max-new-tokens", "24")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["env"] == "alfworld" and metrics["num_steps"] == 4
    assert metrics["invalid_action_rate"] == 1.0  # the Sokoban base model writes no ALFWorld command
    assert metrics["mean_return"] == pytest.approx(-0.1)  # -0.1, then 0 when the budget ends it


@needs_textworld
@pytest.mark.parametrize("command,message", [
    (["resim", "--env", "alfworld", "--levels", "no/such/folder", "--out", "x.jsonl"], "alfworld-download"),
    (["evaluate", "--env", "alfworld", "--model", "m", "--levels", "no/such/valid_seen", "--out", "x.json"],
     "export ALFWORLD_DATA"),
    (["evaluate", "--env", "alfworld", "--model", "m", "--levels", "data", "--out", "x.json"],
     "no ALFWorld games under data"),
    (["resim", "--env", "alfworld", "--levels", "data/alfworld/id_test.jsonl", "--out", "x.jsonl",
      "--value", "heuristic"], "the heuristic value function is Sokoban's"),
])
def test_bad_alfworld_input_gets_a_clear_error(command, message):
    if command[0] == "evaluate":
        command[command.index("--model") + 1] = str(tiny_base_dir())
    result = _run(*command)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@needs_textworld
def test_alfworld_tokenizer_keeps_words_whole_and_round_trips():
    from dynamind_lite.models import build_tokenizer

    tokenizer = build_tokenizer("alfworld")
    text = "You arrive at countertop 1. On it, you see a winebottle 2.\nheat egg 1 with microwave 1"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert {"Ġcountertop", "Ġwinebottle", "Ġmicrowave", "heat"} <= set(pieces)  # one token per word
    assert len(ids) <= len(text.split()) * 2
    assert build_tokenizer("alfworld").get_vocab() == tokenizer.get_vocab()  # deterministic
    with pytest.raises(ValueError, match="unknown world"):
        build_tokenizer("chess")


@needs_textworld
def test_text_game_player_plays_the_chosen_command(games):
    from dynamind_lite.envs.alfworld import AlfWorldEnv
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.viz import TextGamePlayer

    env = AlfWorldEnv(expert=True)
    env.reset(tw_pddl(games[0]))
    plan = env.expert_plan
    player = TextGamePlayer(env)
    assert set(player.commands.options) == set(env.legal_actions()) and "playing" in player.status.value
    for command in plan:
        player.commands.value = command
        player.buttons["Play"].click()
    assert player.info["success"] and "done!" in player.status.value and len(player.rewards) == len(plan)
    player.buttons["Reset"].click()
    assert player.rewards == [] and env.commands == []


@needs_textworld
def test_llm_aggregator_and_value_function_speak_the_text_grammar(games):
    from dynamind_lite.envs.alfworld import AlfWorldEnv
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.llm import ChatClient
    from dynamind_lite.resim import AggregationRejected, LLMAggregator, TemplateAggregator
    from dynamind_lite.search import ExpertPlanValue, LLMValueFunction, NoisyExpertPolicy, build_tree
    from tests.openai_server import ScriptedChatServer

    env = AlfWorldEnv(expert=True)
    env.reset(tw_pddl(games[3]))
    tree = build_tree(env, env.snapshot(), NoisyExpertPolicy(env, 0.0), b=2, d=2, value_fn=ExpertPlanValue(env),
                      rng=random.Random(0))
    right = TemplateAggregator(commands=True).aggregate(env.observation, [], tree)
    wrong = right.replace("You arrive at", "You fly to", 1)
    answers = iter([wrong, right])
    with ScriptedChatServer(lambda body: next(answers)) as server:
        client = ChatClient(server.base_url, "scripted-model", max_retries=0, timeout=10.0)
        aggregator = LLMAggregator(client, max_attempts=2, text_env=env)
        assert aggregator.aggregate(env.observation, [], tree) == right
        prompt = server.requests[0]["body"]["messages"][0]["content"]
        assert f"Task: {env.task}" in prompt and "Admissible actions: " in prompt and "household" in prompt
        assert "differs from the real one" in server.requests[1]["body"]["messages"][2]["content"]
    with ScriptedChatServer(lambda body: "<think>x</think><answer>look</answer>") as server:
        client = ChatClient(server.base_url, "scripted-model", max_retries=0, timeout=10.0)
        with pytest.raises(AggregationRejected):
            LLMAggregator(client, max_attempts=1, text_env=env).aggregate(env.observation, [], tree)
    with ScriptedChatServer(lambda body: "Value: 9.4") as server:
        client = ChatClient(server.base_url, "scripted-model", max_retries=0, timeout=10.0)
        value_fn = LLMValueFunction(client, text_env=env)
        assert value_fn.reads_env and value_fn(env.observation) == 9.4
        assert f"Task: {env.task}" in server.requests[0]["body"]["messages"][0]["content"]


@needs_textworld
def test_dyna_grpo_trains_on_alfworld_games(games, tmp_path):
    import torch

    from dynamind_lite.dyna_grpo import train_rl
    from dynamind_lite.models import load_policy
    from dynamind_lite.paths import tiny_alfworld_base_dir
    from dynamind_lite.worlds import ALFWORLD

    result = train_rl("dyna-grpo", tiny_alfworld_base_dir(), tmp_path / "rl", preset="tiny", iterations=2,
                      progress=False, world=ALFWORLD, levels=games[:2], rl_tasks=2, rl_group_size=2,
                      rl_max_steps=3, max_new_tokens=48, rl_learning_rate=1e-3, history_len=5)
    assert [row["phase"] for row in result.metrics] == ["simulation", "policy"]
    assert all(row["env_steps"] >= 4 for row in result.metrics)  # 2 tasks x 2 episodes, >= 1 step each
    trained, _ = load_policy(tmp_path / "rl", device="cpu", dtype="float32")
    base, _ = load_policy(tiny_alfworld_base_dir(), device="cpu", dtype="float32")
    changed = any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
    assert changed == any(row["samples"] for row in result.metrics)


PLAIN_TEXTWORLD = """
import json, sys
import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
from textworld.envs.pddl import PddlEnv
game, commands = json.loads(sys.stdin.read())
env = AlfredInfos(AlfredDemangler(PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True))))
env.load(game)
states = [env.reset()]
for command in commands:
    states.append(env.step(command)[0])
print(json.dumps([[s["feedback"], sorted(s["admissible_commands"]), bool(s["won"])] for s in states]))
"""


@needs_textworld
def test_memoised_textworld_plays_exactly_like_plain_textworld(games):
    """The env memoises TextWorld's PDDL translation and template parsing: a plain
    TextWorld in another process, without either, must print the same game."""
    from dynamind_lite.envs.alfworld import AlfWorldEnv, clean_observation
    from dynamind_lite.envs.mini_alfworld import tw_pddl

    game = tw_pddl(games[4])
    env = AlfWorldEnv(expert=True)
    env.reset(game)
    commands = env.expert_plan
    ours = [(env.observation, env.admissible_commands, env.won)]
    for command in commands:
        here = env.snapshot()
        detour = next(c for c in env.admissible_commands if c != command)
        env.step(detour)  # a side branch: TextWorld leaves the solution's path ...
        env.restore(here)  # ... so the next new step replays the recorded operators first
        env.step(command)
        ours.append((env.observation, env.admissible_commands, env.won))
    assert env.replayed_operators > 0
    plain = subprocess.run([sys.executable, "-c", PLAIN_TEXTWORLD], input=json.dumps([game, commands]),
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    theirs = [(clean_observation(text)[0], admissible, won) for text, admissible, won in json.loads(plain.stdout)]
    assert ours == theirs and ours[-1][2]


@needs_textworld
def test_a_folder_in_the_real_data_layout_plays_and_gets_its_task_from_traj_data(games, tmp_path):
    """``$ALFWORLD_DATA/json_2.1.1/valid_seen/<task>/trial_*/game.tw-pddl`` (+ traj_data.json): a
    game whose grammar still has ALFWorld's placeholder goal gets the task of its traj_data."""
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.worlds import ALFWORLD

    trial = tmp_path / "valid_seen" / "pick_and_place_simple-Vase-None-DiningTable-1" / "trial_T0"
    trial.mkdir(parents=True)
    game = tw_pddl(games[0])
    game["grammar"] = game["grammar"].replace(games[0]["task"], "UNKNOWN GOAL")
    (trial / "game.tw-pddl").write_text(json.dumps(game))
    (trial / "traj_data.json").write_text(json.dumps({"task_type": "pick_and_place_simple", "pddl_params": {
        "object_sliced": False, "object_target": "Vase", "parent_target": "DiningTable", "toggle_target": "",
        "mrecep_target": ""}}))
    levels = ALFWORLD.load_levels(tmp_path / "valid_seen")
    assert [level["id"] for level in levels] == ["pick_and_place_simple-Vase-None-DiningTable-1/trial_T0"]
    env = ALFWORLD.make_env(50, expert=True)
    ALFWORLD.start(env, levels[0])
    assert "vase" in env.task and "diningtable" in env.task and "UNKNOWN" not in env.task
    assert env.expert_plan  # the planner solves it as a mini-game
