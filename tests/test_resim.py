"""a^ReSim: the template aggregator's text is faithful to the real env, parseable,
compact, and the validator catches every kind of wrong answer."""

from __future__ import annotations

import random
import re

import pytest

from dynamind_lite.envs import sokoban
from dynamind_lite.envs.sokoban import SokobanEnv, simulate_actions
from dynamind_lite.paths import level_file
from dynamind_lite.resim import AggregationRejected, TemplateAggregator, best_rollout_index, validate_resim_response
from dynamind_lite.response import format_value, parse_answer, parse_plan, parse_response, parse_rollouts
from dynamind_lite.search import ExactValue, HeuristicValue, NoisySolverPolicy, RandomPolicy, Rollout, build_tree


def replay_in_env(grid: str, actions: list[str]) -> list[str]:
    """Reference: the observations a fresh real env returns for the action prefix."""
    env = SokobanEnv(max_steps=100)
    env.reset(options={"grid": grid})
    return [env.step(action)[0] for action in actions]


def _tree(grid: str, b: int = 2, d: int = 3, policy=None, value_fn=None, seed: int = 0):
    env = SokobanEnv(max_steps=30)
    env.reset(options={"grid": grid})
    return build_tree(env, env.snapshot(), policy or NoisySolverPolicy(0.2), b, d, value_fn or ExactValue(),
                      random.Random(seed))


@pytest.fixture(scope="module")
def cases():
    levels = sokoban.load_levels(level_file("id_test"))[:6] + sokoban.load_levels(level_file("ood_test"))[:2]
    out = []
    for i, level in enumerate(levels):
        for b, d, policy in [(2, 3, NoisySolverPolicy(0.2)), (4, 2, RandomPolicy()), (3, 5, NoisySolverPolicy(0.5))]:
            tree = _tree(level["grid"], b, d, policy, seed=i)
            out.append((level["grid"], tree, TemplateAggregator().aggregate(level["grid"], [], tree)))
    return out


def test_written_states_are_what_the_env_gives(cases):
    """Parse the plans back out of the text and re-execute them in the env."""
    for grid, tree, text in cases:
        written = parse_rollouts(text)
        assert len(written) == tree.b
        for sim in written:
            assert None not in sim.actions
            real_states = replay_in_env(grid, sim.actions)
            assert real_states == simulate_actions(grid, sim.actions)
            assert [a for a, _ in sim.states] == sim.actions
            assert [g for _, g in sim.states] == real_states
        plan = parse_plan(text)
        assert plan in [w.actions for w in written]
        assert parse_answer(text) == plan[0]


def test_template_chooses_the_best_value(cases):
    for _, tree, text in cases:
        rollouts = tree.rollouts()
        values = [float(format_value(r.value)) for r in rollouts]
        plan = parse_plan(text)
        chosen = [r.actions for r in rollouts].index(plan)
        assert values[chosen] == max(values) and chosen == values.index(max(values))
        assert [w.value for w in parse_rollouts(text)] == values
        validate_resim_response(text, tree)


def test_template_is_compact(cases):
    """Only grammar lines: rollout headers, After lines, grids, values, Best, Plan."""
    allowed = re.compile(r"^(Rollout \d+:( (Up|Down|Left|Right))+|After (Up|Down|Left|Right):|[#_OX√PS]+|"
                         r"Value: -?\d+\.\d|Best: Rollout \d+\.|Plan:( (Up|Down|Left|Right))+)$")
    for _, _, text in cases:
        think = parse_response(text).think
        for line in think.splitlines():
            assert allowed.match(line), line
        assert text.startswith("<think>Rollout 1:") and re.search(r"</think><answer>\w+</answer>$", text)


def test_exact_template_example():
    grid = "#####\n#PXO#\n#####"
    tree = _tree(grid, b=2, d=2, policy=NoisySolverPolicy(0.0))
    text = TemplateAggregator().aggregate(grid, [], tree)
    assert text == (
        "<think>Rollout 1: Right\nAfter Right:\n#####\n#_P√#\n#####\nValue: 10.0\n"
        "Rollout 2: Up Right\nAfter Up:\n#####\n#PXO#\n#####\nAfter Right:\n#####\n#_P√#\n#####\nValue: 9.9\n"
        "Best: Rollout 1.\nPlan: Right</think><answer>Right</answer>")


def test_best_rollout_ties_go_to_the_first():
    def r(value):
        return Rollout(["Up"], ["#"], [-0.1], False, False, value)

    assert best_rollout_index([r(9.6), r(9.64), r(9.58)]) == 0  # all written 9.6
    assert best_rollout_index([r(9.5), r(9.7), r(9.7)]) == 1
    with pytest.raises(ValueError):
        best_rollout_index([])


@pytest.mark.parametrize("corrupt,reason", [
    (lambda t: "Up", "format"),
    (lambda t: re.sub(r"<answer>\w+</answer>", "<answer>Jump</answer>", t), "format"),
    (lambda t: t.replace("_", "#", 1), "differs from the real one"),
    (lambda t: re.sub(r"Value: (-?\d+\.\d)", "Value: 1.0", t, count=1), "value"),
    (lambda t: t[:t.index("Rollout 2:")] + t[t.index("Best:"):], "rollout blocks"),
    (lambda t: t.replace("Plan: ", "Plan: Up ", 1), "not a rollout"),
    (lambda t: re.sub(r"Best: [^\n]*\n", "", t), "Best"),
    (lambda t: re.sub(r"<answer>\w+</answer>", "<answer>" + ("Left" if "<answer>Up<" in t else "Up") + "</answer>", t),
     "first action"),
])
def test_validator_names_the_problem(cases, corrupt, reason):
    _, tree, text = cases[0]
    validate_resim_response(text, tree)
    with pytest.raises(AggregationRejected, match=reason):
        validate_resim_response(corrupt(text), tree)


def test_validator_rejects_a_worse_plan():
    grid = "#####\n#PXO#\n#####"
    tree = _tree(grid, b=2, d=2, policy=NoisySolverPolicy(0.0))
    text = TemplateAggregator().aggregate(grid, [], tree)
    worse = text.replace("Best: Rollout 1.\nPlan: Right</think><answer>Right",
                         "Best: Rollout 2.\nPlan: Up Right</think><answer>Up")
    with pytest.raises(AggregationRejected, match="higher value"):
        validate_resim_response(worse, tree)


def test_heuristic_tree_aggregates_too():
    level = sokoban.load_levels(level_file("ood_test"))[0]
    tree = _tree(level["grid"], 3, 3, RandomPolicy(), HeuristicValue())
    validate_resim_response(TemplateAggregator().aggregate(level["grid"], [], tree), tree)
