"""The Sokoban MDP (S, A, T, R) against the rules written out independently here.

The reference below is a character-grid implementation written from the rules
(``notebooks/01_mdp_sokoban.ipynb``), not from ``dynamind_lite.envs.sokoban``:
it edits a list of character rows in place and never builds sets of cells. The
module under test must agree with it on every transition, reward and flag, over
thousands of random action sequences (shipped levels and generated ones), and
its solver must agree with a breadth-first search over reference transitions.
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from dynamind_lite.envs import sokoban
from dynamind_lite.envs.policies import play_episode, random_policy, returns_of_policy, solver_policy, summarise
from dynamind_lite.envs.sokoban import (
    FAILURE_REWARD,
    STEP_REWARD,
    SUCCESS_REWARD,
    SokobanEnv,
    generate_level,
    is_solved,
    load_levels,
    parse_level,
    render_level,
    simulate_actions,
    solution_length,
    solve,
    step_grid,
)
from dynamind_lite.paths import level_file

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = ("Up", "Down", "Left", "Right")
SPLITS = {"id_train": 2000, "id_val": 100, "id_test": 200, "ood_train": 300, "ood_val": 50, "ood_test": 100}

# =========================================================================== #
# Reference rules: a mutable grid of characters
# =========================================================================== #

REF_DELTA = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
REF_NAME = {"up": "Up", "down": "Down", "left": "Left", "right": "Right"}


def ref_action(action) -> str | None:
    """'up'/'down'/'left'/'right' for a valid action text, else None."""
    if not isinstance(action, str):
        return None
    key = action.strip().lower()
    return key if key in REF_DELTA else None


def ref_step(grid: str, action: str) -> tuple[str, bool, bool]:
    """(next grid, moved, pushed) for a valid action, from the rules:
    the player steps one cell; a wall or the board edge stops it; a box is pushed
    one cell if the cell behind it is inside the board, not a wall and not a box."""
    rows = [list(line) for line in grid.split("\n")]
    height, width = len(rows), len(rows[0])
    pr, pc = next((r, c) for r in range(height) for c in range(width) if rows[r][c] in "PS")
    dr, dc = REF_DELTA[action]

    def at(r, c):
        return rows[r][c] if 0 <= r < height and 0 <= c < width else "#"

    ahead = at(pr + dr, pc + dc)
    if ahead == "#":
        return grid, False, False
    pushed = False
    if ahead in "X√":
        beyond = at(pr + 2 * dr, pc + 2 * dc)
        if beyond not in "_O":
            return grid, False, False
        rows[pr + 2 * dr][pc + 2 * dc] = "√" if beyond == "O" else "X"
        ahead = "O" if ahead == "√" else "_"  # what is left under the box
        pushed = True
    rows[pr + dr][pc + dc] = "S" if ahead == "O" else "P"
    rows[pr][pc] = "O" if rows[pr][pc] == "S" else "_"
    return "\n".join("".join(row) for row in rows), True, pushed


def ref_solved(grid: str) -> bool:
    return "X" not in grid


class RefEnv:
    """The reward and flag rules: -0.1 per step, +10 on the solving step (even the
    last one), 0.0 on the step that spends the budget unsolved."""

    def __init__(self, grid: str, max_steps: int):
        self.grid, self.max_steps, self.steps, self.invalid, self.over = grid, max_steps, 0, 0, False

    def step(self, action):
        assert not self.over
        key = ref_action(action)
        moved = pushed = False
        if key is None:
            self.invalid += 1
        else:
            self.grid, moved, pushed = ref_step(self.grid, key)
        self.steps += 1
        solved = ref_solved(self.grid)
        out_of_steps = self.steps >= self.max_steps
        if solved:
            reward = 10.0
        elif out_of_steps:
            reward = 0.0
        else:
            reward = -0.1
        self.over = solved or out_of_steps
        info = {"action": None if key is None else REF_NAME[key], "invalid_action": key is None, "moved": moved,
                "pushed": pushed, "success": solved, "steps": self.steps, "num_invalid_actions": self.invalid}
        return self.grid, reward, solved, (not solved) and out_of_steps, info


def ref_bfs(grid: str, limit: int = 200_000) -> int | None:
    """Fewest moves to a grid without 'X', by BFS over reference transitions."""
    if ref_solved(grid):
        return 0
    seen, frontier = {grid}, deque([(grid, 0)])
    while frontier:
        state, depth = frontier.popleft()
        for key in REF_DELTA:
            nxt, moved, _ = ref_step(state, key)
            if not moved or nxt in seen:
                continue
            if ref_solved(nxt):
                return depth + 1
            seen.add(nxt)
            assert len(seen) < limit
            frontier.append((nxt, depth + 1))
    return None


def ref_play(grid: str, actions) -> str:
    for action in actions:
        grid = ref_step(grid, ref_action(action))[0]
    return grid


def lines(*rows: str) -> str:
    return "\n".join(rows)


def random_actions(rng: random.Random, n: int, invalid_rate: float = 0.0) -> list:
    junk = ["", "jump", "Up Left", "u", None, 3, "<answer>Up</answer>", "Upp", "noop", "左"]
    spellings = {"Up": ["Up", "up", " UP ", "uP\n"], "Down": ["Down", "down", "\tDOWN"],
                 "Left": ["Left", "left ", "LEFT"], "Right": ["Right", "right", " rIgHt"]}
    out = []
    for _ in range(n):
        if rng.random() < invalid_rate:
            out.append(rng.choice(junk))
        else:
            out.append(rng.choice(spellings[rng.choice(ACTIONS)]))
    return out


@pytest.fixture(scope="module")
def shipped():
    return {split: load_levels(level_file(split)) for split in SPLITS}


# =========================================================================== #
# T: every push / no-push case
# =========================================================================== #

# (before, action, after, moved, pushed)
TRANSITIONS = [
    ("P_XO", "Right", "_PXO", True, False),  # onto floor
    ("#P_XO", "Left", "#P_XO", False, False),  # into a wall
    ("P_XO", "Left", "P_XO", False, False),  # off the board's left edge
    ("P_XO", "Up", "P_XO", False, False),  # off the top edge
    ("P_XO", "Down", "P_XO", False, False),  # off the bottom edge
    ("OXP", "Right", "OXP", False, False),  # off the right edge
    ("PX_O", "Right", "_PXO", True, True),  # push a box onto floor
    ("PXO", "Right", "_P√", True, True),  # push a box onto a target
    ("P√_O", "Right", "_SXO", True, True),  # push a box off a target, player onto it
    ("S√O", "Right", "OS√", True, True),  # player off a target, box target -> target
    ("PX#O", "Right", "PX#O", False, False),  # box against a wall
    ("OPX", "Right", "OPX", False, False),  # box against the board edge
    ("PXX_OO", "Right", "PXX_OO", False, False),  # box against a box
    ("PX√O", "Right", "PX√O", False, False),  # box against a box on target
    ("P√X_O", "Right", "P√X_O", False, False),  # box on target against a box
    ("PO_X", "Right", "_S_X", True, False),  # player onto a target
    ("S_XO", "Right", "OPXO", True, False),  # player off a target
    ("SOX", "Right", "OSX", True, False),  # target to target
    ("O_XP", "Left", "OXP_", True, True),  # push leftwards
    (lines("_", "X", "P", "O"), "Up", lines("X", "P", "_", "O"), True, True),  # push up to the edge row
    (lines("X", "P", "O"), "Up", lines("X", "P", "O"), False, False),  # box at the top edge
    (lines("P", "X", "O"), "Down", lines("_", "P", "√"), True, True),  # push down onto a target
    (lines("P", "√", "#", "O"), "Down", lines("P", "√", "#", "O"), False, False),  # box on target against wall
    (lines("#####", "#_X_#", "#XPX#", "#OX_#", "#OOO#"), "Down",
     lines("#####", "#_X_#", "#X_X#", "#OP_#", "#O√O#"), True, True),
]


@pytest.mark.parametrize("before, action, after, moved, pushed", TRANSITIONS)
def test_every_push_and_no_push_case(before, action, after, moved, pushed):
    assert step_grid(before, action) == after
    assert ref_step(before, action.lower()) == (after, moved, pushed)  # the reference agrees with the table
    env = SokobanEnv(max_steps=10)
    env.reset(options={"grid": before})
    obs, _, _, _, info = env.step(action)
    assert obs == after and env.render() == after
    assert (info["moved"], info["pushed"], info["action"], info["invalid_action"]) == (moved, pushed, action, False)


def test_pushes_in_all_four_directions():
    board = lines("_______", "___X___", "__XPX__", "___X___", "_______", "OOOO___")
    expected = {
        "Up": lines("___X___", "___P___", "__X_X__", "___X___", "_______", "OOOO___"),
        "Down": lines("_______", "___X___", "__X_X__", "___P___", "___X___", "OOOO___"),
        "Left": lines("_______", "___X___", "_XP_X__", "___X___", "_______", "OOOO___"),
        "Right": lines("_______", "___X___", "__X_PX_", "___X___", "_______", "OOOO___"),
    }
    for action, after in expected.items():
        assert step_grid(board, action) == after, action
        assert simulate_actions(board, [action]) == [after]


def test_simulate_actions_returns_every_intermediate_state():
    board = "P_XO_"
    assert simulate_actions(board, ["Right", "left", " RIGHT ", "Right"]) == ["_PXO_", "P_XO_", "_PXO_", "__P√_"]
    assert simulate_actions(board, []) == []
    with pytest.raises(ValueError, match="unknown Sokoban action 'Jump'"):
        simulate_actions(board, ["Right", "Jump"])
    with pytest.raises(ValueError, match="unknown Sokoban action"):
        step_grid(board, "")


def test_is_solved_and_render_roundtrip(shipped):
    assert is_solved("PO√") and not is_solved("PXO")
    assert is_solved("P√O")  # fewer boxes than targets: solved when every box is on a target
    for split, levels in shipped.items():
        for level in levels:
            assert render_level(parse_level(level["grid"])) == level["grid"], level["id"]


# =========================================================================== #
# R, termination, truncation
# =========================================================================== #


def _env(grid: str, max_steps: int = 30) -> SokobanEnv:
    env = SokobanEnv(max_steps=max_steps)
    obs, info = env.reset(options={"grid": grid})
    assert obs == grid and info == {"steps": 0, "num_invalid_actions": 0, "success": False}
    return env


def test_reward_constants_are_the_papers():
    assert (STEP_REWARD, SUCCESS_REWARD, FAILURE_REWARD) == (-0.1, 10.0, 0.0)


def test_step_reward_then_success_reward():
    env = _env("P_XO")
    assert env.step("Right")[1:4] == (-0.1, False, False)
    obs, reward, terminated, truncated, info = env.step("Right")
    assert (obs, reward, terminated, truncated, info["success"]) == ("__P√", 10.0, True, False, True)
    assert env.done


def test_no_op_steps_cost_the_step_reward():
    env = _env("#P_XO")
    obs, reward, terminated, truncated, info = env.step("Left")
    assert (obs, reward, terminated, truncated, info["moved"]) == ("#P_XO", -0.1, False, False, False)


def test_solving_on_the_last_budget_step_is_success_not_truncation():
    env = _env("P_XO", max_steps=2)
    env.step("Right")
    _, reward, terminated, truncated, info = env.step("Right")
    assert (reward, terminated, truncated, info["success"], info["steps"]) == (10.0, True, False, True, 2)


def test_truncation_gives_the_failure_reward_on_the_last_step():
    env = _env("P_XO", max_steps=3)
    outs = [env.step("Left")[1:4] for _ in range(3)]
    assert outs == [(-0.1, False, False), (-0.1, False, False), (0.0, False, True)]
    assert env.done
    one = _env("P_XO", max_steps=1)
    assert one.step("Right")[1:4] == (0.0, False, True)


def test_episode_return_of_an_optimal_solution(shipped):
    for level in shipped["id_test"][:20] + shipped["ood_test"][:10]:
        env = _env(level["grid"])
        rewards = [env.step(a)[1] for a in level["solution"]]
        n = len(level["solution"])
        assert rewards == [-0.1] * (n - 1) + [10.0]
        assert sum(rewards) == pytest.approx(10.0 - 0.1 * (n - 1))


def test_stepping_before_reset_or_after_the_end_raises():
    env = SokobanEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step("Up")
    with pytest.raises(RuntimeError, match="reset"):
        env.render()
    with pytest.raises(RuntimeError, match="reset"):
        env.snapshot()
    assert not env.done
    env.reset(options={"grid": "PXO"})
    env.step("Right")
    with pytest.raises(RuntimeError, match="ended"):
        env.step("Left")
    env.reset(options={"grid": "P_XO"}, seed=1)
    for _ in range(30):
        env.step("Up")
    with pytest.raises(RuntimeError, match="ended"):
        env.step("Up")
    assert env.reset(options={"grid": "P_XO"})[0] == "P_XO"
    assert env.step("Right")[1] == -0.1  # a new episode after reset


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="max_steps"):
        SokobanEnv(max_steps=0)
    with pytest.raises(ValueError, match="render_mode"):
        SokobanEnv(render_mode="human")


# =========================================================================== #
# A: invalid and oddly spelled actions
# =========================================================================== #


@pytest.mark.parametrize("action", ["", "   ", "jump", "Up Left", "u", "Upp", "<answer>Up</answer>", "Up.", None, 3,
                                    ["Up"], "\n"])
def test_invalid_actions_are_counted_no_ops(action):
    env = _env("P_XO")
    obs, reward, terminated, truncated, info = env.step(action)
    assert (obs, reward, terminated, truncated) == ("P_XO", -0.1, False, False)
    assert info["invalid_action"] and info["action"] is None and not info["moved"] and not info["pushed"]
    assert info["num_invalid_actions"] == 1 and info["steps"] == 1
    env.step("Right")
    _, _, _, _, info = env.step(action)
    assert info["num_invalid_actions"] == 2 and info["steps"] == 3


def test_invalid_action_on_the_last_step_truncates():
    env = _env("P_XO", max_steps=2)
    env.step("nope")
    assert env.step("nope")[1:4] == (0.0, False, True)


@pytest.mark.parametrize("spelling, canonical", [("up", "Up"), ("UP", "Up"), (" Down ", "Down"), ("\tleft\n", "Left"),
                                                 ("rIGHT", "Right"), ("  right", "Right")])
def test_valid_actions_are_case_and_whitespace_tolerant(spelling, canonical):
    board = lines("_O_", "_P_", "__X", "_O_")
    env = _env(board)
    obs, reward, _, _, info = env.step(spelling)
    assert (info["action"], info["invalid_action"], info["num_invalid_actions"]) == (canonical, False, 0)
    assert obs == step_grid(board, canonical) == ref_step(board, canonical.lower())[0]
    assert step_grid(board, spelling) == obs


# =========================================================================== #
# Snapshot / restore
# =========================================================================== #


def _play(env: SokobanEnv, actions) -> list:
    out = []
    for action in actions:
        if env.done:
            break
        out.append(env.step(action))
    return out


def test_restore_gives_an_identical_future(shipped):
    rng = random.Random(0)
    for level in shipped["id_test"][:15] + shipped["ood_test"][:15]:
        env = _env(level["grid"])
        _play(env, random_actions(rng, 4, invalid_rate=0.2))
        snap = env.snapshot()
        obs = env.render()
        future = random_actions(rng, 40, invalid_rate=0.2)
        first = _play(env, future)
        assert env.restore(snap) == obs
        assert _play(env, future) == first
        other = SokobanEnv(max_steps=30)  # a fresh env restored to the snapshot behaves the same
        assert other.restore(snap) == obs
        assert _play(other, future) == first


def test_snapshots_are_immutable_and_capture_the_end():
    env = _env("PXO")
    before = env.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.steps = 5
    env.step("Right")
    after = env.snapshot()
    assert (after.steps, after.terminated, before.steps) == (1, True, 0)
    env.restore(before)
    assert not env.done and env.render() == "PXO"
    env.restore(after)
    assert env.done
    with pytest.raises(RuntimeError, match="ended"):
        env.step("Left")
    with pytest.raises(TypeError, match="Snapshot"):
        env.restore("PXO")


def test_snapshot_keeps_invalid_count_and_budget():
    env = _env("P_XO", max_steps=3)
    env.step("bad")
    snap = env.snapshot()
    env.step("Left")
    env.restore(snap)
    _, reward, _, _, info = env.step("Left")
    assert (reward, info["steps"], info["num_invalid_actions"]) == (-0.1, 2, 1)
    assert env.step("Left")[1:4] == (0.0, False, True)


# =========================================================================== #
# Agreement with the reference over thousands of random action sequences
# =========================================================================== #


def _generated_levels() -> list[tuple[str, int]]:
    id_levels = [(generate_level(seed, (6, 6), 1), 30) for seed in range(500_000, 500_030)]
    ood_levels = [(generate_level(seed, (8, 8), 2, max_moves=22), 30) for seed in range(600_000, 600_010)]
    odd = [(generate_level(seed, (5, 7), 1, min_moves=2, max_moves=8), 12) for seed in range(10)]
    return id_levels + ood_levels + odd


def test_env_and_pure_functions_agree_with_the_reference(shipped):
    rng = random.Random(1234)
    pool = [(lv["grid"], 30) for lv in shipped["id_test"] + shipped["ood_test"] + shipped["id_train"][:200]]
    pool += _generated_levels()
    sequences = steps = 0
    for _ in range(3000):
        grid, _ = rng.choice(pool)
        max_steps = rng.choice([1, 3, 10, 30])
        actions = random_actions(rng, rng.randint(1, 40), invalid_rate=rng.choice([0.0, 0.1, 0.5]))
        env, ref = SokobanEnv(max_steps=max_steps), RefEnv(grid, max_steps)
        env.reset(options={"grid": grid})
        for action in actions:
            if ref.over:
                assert env.done
                with pytest.raises(RuntimeError):
                    env.step(action)
                break
            expected = ref.step(action)
            got = env.step(action)
            assert got[0] == expected[0] and got[2:] == expected[2:], (grid, actions)
            assert got[1] == pytest.approx(expected[1])
            steps += 1
        valid = [a for a in actions if ref_action(a) is not None]
        states = simulate_actions(grid, valid)
        walk = grid
        for action, state in zip(valid, states, strict=True):
            walk = step_grid(walk, action)
            assert walk == state
        assert walk == ref_play(grid, valid)
        sequences += 1
    assert sequences == 3000 and steps > 20_000


def test_intermediate_states_agree_with_the_reference(shipped):
    rng = random.Random(7)
    for level in shipped["ood_test"] + shipped["id_test"][:100]:
        actions = random_actions(rng, 25)
        states = simulate_actions(level["grid"], actions)
        grid = level["grid"]
        for action, state in zip(actions, states, strict=True):
            grid = ref_step(grid, ref_action(action))[0]
            assert state == grid


# =========================================================================== #
# Generator
# =========================================================================== #


def test_generator_is_deterministic_and_solvable():
    grids = []
    for seed in range(25):
        grid = generate_level(seed)
        assert grid == generate_level(seed)
        rows = grid.split("\n")
        assert len(rows) == 6 and all(len(r) == 6 for r in rows)
        assert rows[0] == rows[-1] == "######" and all(r[0] == r[-1] == "#" for r in rows)  # walled in
        assert grid.count("X") + grid.count("√") == 1
        plan = solve(grid)
        assert plan is not None and 3 <= len(plan) <= 15
        assert ref_solved(ref_play(grid, plan))
        grids.append(grid)
    assert len(set(grids)) > 20


def test_generator_respects_size_boxes_and_bounds():
    for seed in range(4):
        grid = generate_level(seed, 8, 2, max_moves=22)
        assert grid == generate_level(seed, (8, 8), 2, max_moves=22)
        assert len(grid.split("\n")) == 8 and grid.count("X") + grid.count("√") == 2
        assert 3 <= solution_length(grid) <= 22
        assert ref_bfs(grid) == solution_length(grid)
    for seed in range(8):
        assert 5 <= len(solve(generate_level(seed, (6, 7), 1, min_moves=5, max_moves=6))) <= 6
    assert generate_level(3, (5, 9)).count("\n") == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"size": (2, 6)}, "at least 3x3"),
    ({"num_boxes": 0}, "num_boxes"),
    ({"min_moves": 0}, "min_moves"),
    ({"min_moves": 5, "max_moves": 4}, "min_moves"),
])
def test_generator_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_level(0, **kwargs)


def test_generator_gives_up_with_a_clear_error():
    with pytest.raises(RuntimeError, match="no level of 4x4"):
        generate_level(0, (4, 4), 1, min_moves=30, max_moves=None, max_tries=5)


def test_reset_without_a_grid_generates_a_seeded_level():
    env = SokobanEnv(size=(7, 7), num_boxes=2)
    first = env.reset(seed=11)[0]
    assert first == SokobanEnv(size=7, num_boxes=2).reset(seed=11)[0]
    assert len(first.split("\n")) == 7 and first.count("X") + first.count("√") == 2
    assert solve(first) is not None
    assert SokobanEnv().reset(seed=12)[0] != SokobanEnv().reset(seed=13)[0]


# =========================================================================== #
# Solver: optimal against a brute-force BFS written here
# =========================================================================== #

SMALL_LEVELS = [
    "P_XO",
    "OXP",  # push left
    "PO√",  # already solved
    lines("#####", "#P__#", "#_X_#", "#__O#", "#####"),
    lines("######", "#P___#", "#_XX_#", "#_OO_#", "######"),  # two boxes
    lines("######", "#O__P#", "#_XX_#", "#___O#", "######"),  # two boxes
    lines("#######", "#O___O#", "#_X_X_#", "#__P__#", "#######"),  # two boxes
    lines("P___", "_X__", "__X_", "O__O"),  # two boxes, open edges
    lines("#####", "#PX_#", "#__O#", "#####"),
    lines("X_P", "___", "__O"),  # box in a corner of the board: unsolvable
    lines("####", "#XP#", "#_O#", "####"),  # box in a wall corner: unsolvable
    lines("P_X_O", "#####"),
    lines("_OX", "__P", "___"),
]


@pytest.mark.parametrize("grid", SMALL_LEVELS)
def test_solver_is_optimal_on_small_levels(grid):
    expected = ref_bfs(grid)
    plan = solve(grid)
    if expected is None:
        assert plan is None and solution_length(grid) is None
    else:
        assert len(plan) == expected == solution_length(grid)
        assert ref_solved(ref_play(grid, plan))
        assert all(a in ACTIONS for a in plan)


def test_solver_is_optimal_on_shipped_and_generated_levels(shipped):
    sokoban._cached_solve.cache_clear()
    grids = [lv["grid"] for lv in shipped["id_test"] + shipped["ood_test"][:25]]
    grids += [g for g, _ in _generated_levels()]
    for grid in grids:
        plan = solve(grid)
        assert len(plan) == ref_bfs(grid), grid
        assert ref_solved(ref_play(grid, plan))


def test_solve_returns_a_copy_and_gives_up_on_a_state_limit():
    grid = "P__XO"
    plan = solve(grid)
    plan.append("Up")
    assert solve(grid) == ["Right", "Right", "Right"]
    with pytest.raises(RuntimeError, match="gave up"):
        solve(lines("#######", "#O___O#", "#_X_X_#", "#__P__#", "#######"), max_states=10)


# =========================================================================== #
# Whole episodes of the random and the solver policy
# =========================================================================== #


def test_solver_policy_collects_the_optimal_return(shipped):
    levels = shipped["id_test"][:40] + shipped["ood_test"][:10]
    results = returns_of_policy([lv["grid"] for lv in levels], solver_policy)
    for level, result in zip(levels, results, strict=True):
        n = len(level["solution"])
        assert result.success and result.steps == n
        assert result.episode_return == pytest.approx(10.0 - 0.1 * (n - 1))
        assert ref_solved(ref_play(level["grid"], result.actions))


def test_random_policy_returns_match_the_reference(shipped):
    grids = [lv["grid"] for lv in shipped["id_test"][:30] + shipped["ood_test"][:10]]
    results = returns_of_policy(grids, random_policy, max_steps=20, seed=5)
    assert results == returns_of_policy(grids, random_policy, max_steps=20, seed=5)  # seeded
    assert results[3] == returns_of_policy(grids[3:4], random_policy, max_steps=20, seed=8)[0]  # per-level seeds
    for grid, result in zip(grids, results, strict=True):
        ref = RefEnv(grid, 20)
        rewards = [ref.step(a)[1] for a in result.actions]
        assert ref.over and result.steps == len(rewards) <= 20
        assert result.episode_return == pytest.approx(sum(rewards))
        assert result.success == ref_solved(ref.grid)
        if not result.success:
            assert result.steps == 20 and result.episode_return == pytest.approx(-0.1 * 19)
    assert play_episode("P_XO", solver_policy, max_steps=1).episode_return == 0.0
    summary = summarise(results)
    assert summary["episodes"] == 40
    assert summary["success_rate"] == pytest.approx(sum(r.success for r in results) / 40)
    assert summary["mean_return"] == pytest.approx(sum(r.episode_return for r in results) / 40)
    with pytest.raises(ValueError, match="at least one"):
        summarise([])


# =========================================================================== #
# Bad boards
# =========================================================================== #


@pytest.mark.parametrize("grid, message", [
    ("P_XO\n_a__", r"unknown symbol 'a' at row 1, column 1"),
    ("P X O", r"unknown symbol ' ' at row 0, column 1"),
    ("P_XO\r\n____", r"unknown symbol '\\r' at row 0, column 4"),
    ("__XO", "no player"),
    ("P_XOP", "2 players"),
    ("S_XOP", "2 players"),
    ("P_XXO", r"more boxes \(2\) than targets \(1\)"),
    ("P_X_", r"more boxes \(1\) than targets \(0\)"),
    ("P_O_", "no box"),
    ("P_XO\n___", "ragged Sokoban grid: row 1 has 3 cells, row 0 has 4"),
    ("", "empty"),
    ("\n\n", "empty"),
    (None, "must be text"),
])
def test_bad_boards_are_clear_errors(grid, message):
    with pytest.raises(ValueError, match=message):
        parse_level(grid)
    with pytest.raises(ValueError, match=message):
        step_grid(grid, "Up")
    if grid is not None:  # options={"grid": None} asks reset() to generate a level
        with pytest.raises(ValueError, match=message):
            SokobanEnv().reset(options={"grid": grid})


def test_load_levels_names_file_and_line(tmp_path):
    good = json.dumps({"id": "a", "grid": "P_XO", "solution": ["Right", "Right"]})
    path = tmp_path / "levels.jsonl"
    path.write_text(good + "\n\n" + json.dumps({"id": "b", "grid": "P_XX"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"levels.jsonl, line 3: .*more boxes"):
        load_levels(path)
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_levels(path)
    path.write_text(good + "\n" + json.dumps({"id": "c"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2.*grid"):
        load_levels(path)
    path.write_text(good + "\n", encoding="utf-8")
    assert load_levels(path)[0]["id"] == "a"


# =========================================================================== #
# Shipped level sets
# =========================================================================== #


def test_shipped_level_sets(shipped):
    seen: dict[str, str] = {}
    for split, count in SPLITS.items():
        levels = shipped[split]
        assert len(levels) == count, split
        family = split.split("_")[0]
        size, boxes = ((6, 6), 1) if family == "id" else ((8, 8), 2)
        for i, level in enumerate(levels):
            assert level["id"] == f"{split}_{i:04d}"
            assert level["size"] == list(size) and level["num_boxes"] == boxes
            rows = level["grid"].split("\n")
            assert (len(rows), len(rows[0])) == size
            assert level["grid"].count("X") + level["grid"].count("√") == boxes
            assert level["grid"] not in seen, f"{level['id']} repeats {seen.get(level['grid'])}"
            seen[level["grid"]] = level["id"]
            assert all(a in ACTIONS for a in level["solution"])
            assert ref_solved(ref_play(level["grid"], level["solution"])), level["id"]  # the solution solves
            assert not ref_solved(level["grid"])


def test_shipped_solutions_are_optimal(shipped):
    """Optimal: exactly as long as the reference BFS's shortest solution, on every shipped level
    of the original splits and on every tenth level of the generated-style splits."""
    for split in SPLITS:
        for level in shipped[split]:
            assert len(level["solution"]) == ref_bfs(level["grid"]), level["id"]
    for split in ("mix_train", "mix_val", "style_test_room_carving", "style_test_random_placement"):
        for level in load_levels(level_file(split))[::10]:
            assert len(level["solution"]) == ref_bfs(level["grid"]), level["id"]
            assert ref_solved(ref_play(level["grid"], level["solution"])) and not ref_solved(level["grid"])


def test_level_script_reproduces_the_files_byte_identically():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sokoban_levels.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("identical") == len(list((ROOT / "data" / "sokoban").glob("*.jsonl")))


@pytest.mark.parametrize("flag", ["--extra-id", "--extra-spread"])
def test_extra_levels_are_new_optimal_and_repeatable(tmp_path, flag):
    """``--extra-id`` and ``--extra-spread``: 6x6 one-box levels of the ID generator with optimal
    solutions, none a shipped grid, the same bytes twice; ``--extra-spread`` evenly over 4..8 moves."""
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sokoban_levels.py"),
                                 flag, "30", "--extra-out", str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
    assert paths[0].read_bytes() == paths[1].read_bytes()
    levels = load_levels(paths[0])
    shipped_grids = {level["grid"] for path in (ROOT / "data" / "sokoban").glob("*.jsonl")
                     for level in load_levels(path)}
    assert len(levels) == 30 and len({level["grid"] for level in levels}) == 30
    for level in levels:
        assert level["grid"] not in shipped_grids and level["size"] == [6, 6] and level["num_boxes"] == 1
        assert len(level["solution"]) == ref_bfs(level["grid"]), level["id"]
        assert ref_solved(ref_play(level["grid"], level["solution"]))
    if flag == "--extra-spread":
        assert sorted(len(level["solution"]) for level in levels) == sorted(list(range(4, 9)) * 6)
