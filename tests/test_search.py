"""RESIM search trees: real transitions, distinct rollouts, values, JSON, policies."""

from __future__ import annotations

import random

import pytest

from dynamind_lite.envs import sokoban
from dynamind_lite.envs.sokoban import SokobanEnv, simulate_actions, solution_length, step_grid
from dynamind_lite.paths import level_file
from dynamind_lite.response import ACTIONS
from dynamind_lite.search import (
    UNSOLVABLE_VALUE,
    ExactValue,
    GeneratorPolicy,
    HeuristicValue,
    IllegalActionError,
    NoisySolverPolicy,
    RandomPolicy,
    ReplayState,
    SearchTree,
    TreeNode,
    build_tree,
    value_from_moves,
)


@pytest.fixture(scope="module")
def id_levels():
    return sokoban.load_levels(level_file("id_test"))[:8]


@pytest.fixture(scope="module")
def ood_levels():
    return sokoban.load_levels(level_file("ood_test"))[:3]


def _env_at(grid: str, max_steps: int = 30) -> SokobanEnv:
    env = SokobanEnv(max_steps=max_steps)
    env.reset(options={"grid": grid})
    return env


class ReplayOnlyEnv:
    """Sokoban seen through reset/step only (like a text game without snapshots)."""

    def __init__(self, max_steps: int = 30):
        self._env = SokobanEnv(max_steps=max_steps)

    def reset(self, **kwargs):
        return self._env.reset(**kwargs)

    def step(self, action):
        return self._env.step(action)


def _naive_rollouts(node, prefix=()):
    """Reference enumeration of root-to-leaf action paths."""
    if not node.children:
        return [list(prefix)] if prefix else []
    return [p for c in node.children for p in _naive_rollouts(c, prefix + (c.action,))]


@pytest.mark.parametrize("b,d", [(1, 1), (2, 3), (4, 2), (3, 5)])
def test_every_node_is_the_real_transition(id_levels, b, d):
    for level in id_levels:
        env = _env_at(level["grid"])
        start = env.snapshot()
        tree = build_tree(env, start, NoisySolverPolicy(0.3), b, d, ExactValue(), random.Random(1))
        assert env.snapshot() == start, "build_tree must leave the env where it was"
        rollouts = tree.rollouts()
        assert len(rollouts) == b
        assert [r.actions for r in rollouts] == _naive_rollouts(tree.root)
        assert len({r.actions[0] for r in rollouts}) == b, "rollouts branch at the root while b <= |A|"
        for rollout in rollouts:
            assert 1 <= len(rollout.actions) <= d
            assert rollout.states == simulate_actions(level["grid"], rollout.actions)
            # reward reference: replay the plan in a fresh env
            ref = _env_at(level["grid"])
            rewards = [ref.step(a)[1] for a in rollout.actions]
            assert rollout.rewards == pytest.approx(rewards)
            ended = rollout.success or len(rollout.actions) == 30
            assert rollout.done == ended
            bootstrap = 0.0 if rollout.done else value_from_moves(solution_length(rollout.states[-1]))
            assert rollout.value == pytest.approx(sum(rewards) + bootstrap)
        assert tree.env_steps == tree.num_nodes() - 1  # one transition per node with snapshots


def test_replay_env_builds_the_same_tree(id_levels):
    grid = id_levels[0]["grid"]
    env = _env_at(grid)
    snap_tree = build_tree(env, env.snapshot(), RandomPolicy(), 3, 3, ExactValue(), random.Random(7))
    replay = ReplayOnlyEnv()
    state = ReplayState({"options": {"grid": grid}})
    replay_tree = build_tree(replay, state, RandomPolicy(), 3, 3, ExactValue(), random.Random(7))
    assert replay_tree.root == snap_tree.root
    assert replay_tree.env_steps > snap_tree.env_steps  # replays cost steps
    with pytest.raises(ValueError, match="ReplayState"):
        build_tree(replay, env.snapshot(), RandomPolicy(), 1, 1, ExactValue())


def test_rollouts_stay_distinct_beyond_the_action_count(id_levels):
    env = _env_at(id_levels[1]["grid"])
    tree = build_tree(env, env.snapshot(), RandomPolicy(), 9, 2, ExactValue(), random.Random(3))
    plans = [tuple(r.actions) for r in tree.rollouts()]
    assert len(plans) == 9 and len(set(plans)) == 9
    # 4 * 4 = 16 paths of depth 2 exist: asking for more gives all of them, no duplicate
    tree = build_tree(env, env.snapshot(), RandomPolicy(), 40, 2, ExactValue(), random.Random(3))
    assert sorted(tuple(r.actions) for r in tree.rollouts()) == sorted((a, c) for a in ACTIONS for c in ACTIONS)


def test_episode_end_inside_the_tree_is_a_leaf():
    grid = "#####\n#PXO#\n#####"  # one push from solved
    env = _env_at(grid)
    tree = build_tree(env, env.snapshot(), NoisySolverPolicy(0.0), 2, 3, ExactValue(), random.Random(0))
    first, second = tree.rollouts()
    assert first.actions == ["Right"] and first.done and first.success and first.value == pytest.approx(10.0)
    assert second.actions == ["Up", "Right"] and second.success  # bump into the wall, then solve
    assert second.rewards == pytest.approx([-0.1, 10.0]) and second.value == pytest.approx(9.9)
    env = _env_at(grid, max_steps=1)  # budget of one step: a wasted move ends the episode unsolved
    _, second = build_tree(env, env.snapshot(), NoisySolverPolicy(0.0), 2, 3, ExactValue()).rollouts()
    assert second.actions == ["Up"] and second.done and not second.success
    assert second.rewards == [0.0] and second.value == 0.0


def test_action_order_sorts_every_node_and_keeps_the_tree(id_levels):
    for level in id_levels:
        env = _env_at(level["grid"])
        tree = build_tree(env, env.snapshot(), NoisySolverPolicy(0.2), 3, 2, ExactValue(), random.Random(4))
        before = tree.to_json()
        ordered = tree.in_action_order()
        assert tree.to_json() == before, "the original tree is not changed"
        plans = [r.actions for r in ordered.rollouts()]
        assert plans == sorted(plans, key=lambda p: [ACTIONS.index(a) for a in p])  # naive reference order
        by_plan = {tuple(r.actions): r for r in tree.rollouts()}
        assert sorted(by_plan) == sorted(tuple(p) for p in plans)
        for rollout in ordered.rollouts():  # states, rewards and values travel with their rollout
            assert rollout == by_plan[tuple(rollout.actions)]
    commands = SearchTree(root=TreeNode(action=None, observation="s", children=[
        TreeNode(action="open drawer 1", observation="a"), TreeNode(action="Up", observation="b"),
        TreeNode(action="go to desk 1", observation="c")]), b=3, d=1)
    assert [r.actions[0] for r in commands.in_action_order().rollouts()] == ["Up", "go to desk 1", "open drawer 1"]


def test_tree_json_round_trip(ood_levels):
    env = _env_at(ood_levels[0]["grid"])
    tree = build_tree(env, env.snapshot(), NoisySolverPolicy(0.5), 3, 3, HeuristicValue(), random.Random(2))
    again = SearchTree.from_json(tree.to_json())
    assert again == tree
    assert again.to_json() == tree.to_json()
    assert "√" in tree.to_json() or "X" in tree.to_json()


def test_bad_sizes_and_illegal_policies_are_clear_errors(id_levels):
    env = _env_at(id_levels[0]["grid"])
    for b, d in [(0, 2), (2, 0), (-1, 1), (2.5, 2), (True, 2)]:
        with pytest.raises(ValueError, match="must be an integer >= 1"):
            build_tree(env, env.snapshot(), RandomPolicy(), b, d, ExactValue())

    def jumper(observation, rng, exclude=()):
        return "Jump"

    with pytest.raises(IllegalActionError, match="'Jump'"):
        build_tree(env, env.snapshot(), jumper, 2, 2, ExactValue())

    def stubborn(observation, rng, exclude=()):
        return "Up"  # ignores exclude: the second rollout would repeat the first

    with pytest.raises(IllegalActionError, match="'Up'"):
        build_tree(env, env.snapshot(), stubborn, 2, 2, ExactValue())


def test_noisy_solver_without_noise_is_optimal(id_levels, ood_levels):
    policy = NoisySolverPolicy(0.0)
    rng = random.Random(0)
    for level in id_levels + ood_levels:
        grid, n = level["grid"], len(level["solution"])
        assert solution_length(grid) == n
        action = policy(grid, rng)
        assert solution_length(step_grid(grid, action)) == n - 1
        second = policy(grid, rng, exclude={action})
        assert second != action
        # the second choice is the best of the rest
        rest = [solution_length(step_grid(grid, a)) for a in ACTIONS if a != action]
        assert solution_length(step_grid(grid, second)) == min(x for x in rest if x is not None)
    with pytest.raises(ValueError, match="epsilon"):
        NoisySolverPolicy(1.5)


def test_random_policy_covers_the_allowed_actions():
    rng = random.Random(0)
    seen = {RandomPolicy()("", rng, exclude={"Up"}) for _ in range(200)}
    assert seen == {"Down", "Left", "Right"}


def test_values_have_the_documented_range(id_levels, ood_levels):
    exact, heuristic = ExactValue(), HeuristicValue()
    for level in id_levels + ood_levels:
        grid, n = level["grid"], len(level["solution"])
        assert exact(grid) == pytest.approx(10.0 - 0.1 * (n - 1))
        # the heuristic underestimates moves: it is optimistic for every solvable state
        for state in simulate_actions(grid, level["solution"])[:-1] + [grid]:
            assert heuristic(state) >= exact(state) - 1e-9
            assert 7.0 < heuristic(state) <= 10.0
    dead = "#####\n#X__#\n#_P_#\n#__O#\n#####"  # box in a corner, off target
    assert exact(dead) == UNSOLVABLE_VALUE == heuristic(dead)
    solved = "#####\n#√P_#\n#####"
    assert exact(solved) == 0.0 == heuristic(solved)


def test_generator_policy_rejects_malformed_llm_output(tiny_checkpoint, id_levels):
    """A random tiny model answers garbage: counted rejections, then a clear error."""
    from dynamind_lite.generation import GenerationConfig, make_generator
    from dynamind_lite.models import load_policy

    model, tokenizer = load_policy(tiny_checkpoint)
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=1)
    config = GenerationConfig(max_new_tokens=8, temperature=1.0, do_sample=True, seed=0)
    policy = GeneratorPolicy(generator, config, max_attempts=2)
    env = _env_at(id_levels[0]["grid"])
    with pytest.raises(IllegalActionError, match="no valid action in 2 attempts"):
        build_tree(env, env.snapshot(), policy, 2, 2, ExactValue())
    assert policy.rejections == 2 and policy.calls == 1


def test_generator_policy_over_a_server(id_levels):
    """An LLM served over HTTP: valid answers are used, repeats of tried moves replaced."""
    from dynamind_lite.generation import GenerationConfig
    from dynamind_lite.generation.openai_compat import OpenAIGenerator
    from dynamind_lite.llm import ChatClient
    from tests.openai_server import ScriptedChatServer

    with ScriptedChatServer(lambda body: "<think>go up</think><answer>Up</answer>") as server:
        generator = OpenAIGenerator(ChatClient(server.base_url, "scripted", max_retries=0))
        policy = GeneratorPolicy(generator, GenerationConfig(max_new_tokens=16))
        env = _env_at(id_levels[0]["grid"])
        tree = build_tree(env, env.snapshot(), policy, 3, 2, ExactValue(), random.Random(0))
    plans = [r.actions for r in tree.rollouts()]
    assert plans[0] == ["Up", "Up"]
    assert len({p[0] for p in plans}) == 3 and policy.repeats == 2 and policy.rejections == 0
    assert len(server.requests) == policy.calls == 6
