"""SimRollout: plan extraction (fuzzed), plan execution from a snapshot, refine prompts
whose states are the real env states, and the refine SFT examples of Stage 1."""

from __future__ import annotations

import random
import re

import pytest

from dynamind_lite.collect import ResimConfig, run_resim_episode
from dynamind_lite.envs.sokoban import SokobanEnv, load_levels, simulate_actions, step_grid
from dynamind_lite.generation import Generation, GenerationConfig
from dynamind_lite.paths import level_file
from dynamind_lite.prompts import REFINE_INSTRUCTION, build_refine_messages
from dynamind_lite.response import ACTIONS, format_response, format_rollout, parse_answer
from dynamind_lite.rollout import run_episodes
from dynamind_lite.simrollout import MAX_PLAN_DEPTH, PLAN_STATUSES, execute_plan, extract_plan


@pytest.mark.parametrize("plan_line,actions,status", [
    ("Plan: Up Left", ("Up", "Left"), "ok"),
    ("Plan: up,  LEFT", ("Up", "Left"), "ok"),
    ("Plan: Up Up Left Left Down Down Right", ("Up", "Up", "Left", "Left", "Down"), "capped"),
    ("Plan: Up Jump Left", ("Up",), "partial"),
    ("Plan: Up Up Left Left Down Jump", ("Up", "Up", "Left", "Left", "Down"), "capped"),
    ("Plan: Jump Up", (), "missing"),
    ("Plan:", (), "missing"),
    ("no plan line at all", (), "missing"),
])
def test_extract_plan(plan_line, actions, status):
    plan = extract_plan(f"<think>Rollout 1: Up\n{plan_line}</think><answer>Up</answer>")
    assert (plan.actions, plan.status) == (actions, status)


def test_plan_extraction_never_raises_on_fuzzed_text():
    rng = random.Random(0)
    pieces = ["Plan:", " Up", " Left", " down", " Jump", ",", "\n", "</think>", "<answer>", "Rollout 1:", "√", " "]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 30)))
        plan = extract_plan(text, max_depth=rng.randrange(1, 7))
        assert plan.status in PLAN_STATUSES
        assert all(a in ACTIONS for a in plan.actions) and len(plan.actions) <= MAX_PLAN_DEPTH
        assert (plan.status == "missing") == (not plan.actions)
    for bad in (None, 3, b"Plan: Up"):
        assert extract_plan(bad).status == "missing"
    with pytest.raises(ValueError, match="max_depth"):
        extract_plan("Plan: Up", max_depth=0)


def test_execute_plan_returns_real_states_and_leaves_the_episode_where_it_was():
    grid = load_levels(level_file("id_test"))[0]["grid"]
    env = SokobanEnv(max_steps=30)
    env.reset(options={"grid": grid})
    env.step("Up")
    before = env.snapshot()
    plan = ["Left", "Left", "Down", "Right", "Up"]
    futures = execute_plan(env, plan)
    assert [a for a, _ in futures] == plan
    assert [s for _, s in futures] == simulate_actions(env.render_text(), plan)
    assert env.snapshot() == before  # not advanced: same state, step count, flags


def test_execute_plan_stops_where_the_env_ends():
    env = SokobanEnv(max_steps=30)
    env.reset(options={"grid": "#####\n#PXO#\n#####"})
    assert [a for a, _ in execute_plan(env, ["Right", "Left", "Left"])] == ["Right"]  # solved after one move
    env = SokobanEnv(max_steps=2)
    env.reset(options={"grid": "######\n#P_XO#\n######"})
    env.step("Up")
    assert len(execute_plan(env, ["Up", "Up", "Up"])) == 1  # the step budget ends it


class PlanWriter:
    """A scripted policy speaking the a^ReSim grammar: from the prompt's current state it
    writes one rollout of a random plan (1-7 moves, sometimes with a bad word or without
    a Plan line) with deliberately wrong simulated states, so that every plan status
    appears and refined prompts can be checked against the env."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def generate(self, conversations, config):
        out = []
        for messages in conversations:
            state = re.search(r"Current state:\n([^\n]*(?:\n[#_OX√PS]+)*)", messages[-1]["content"]).group(1)
            plan = [self.rng.choice(ACTIONS) for _ in range(self.rng.randint(1, 7))]
            think = format_rollout(1, plan, [state] * len(plan), 0.0)  # states "unchanged": wrong
            roll = self.rng.random()
            words = plan if roll < 0.7 else plan[:1] + ["Jump"] + plan[1:] if roll < 0.85 else None
            if words is not None:
                think += f"\nPlan: {' '.join(words)}"
            text = format_response(think, plan[0])
            out.append(Generation(text=text, num_tokens=len(text.split()), finish_reason="stop"))
        return out


def _futures_in_prompt(content: str) -> list[tuple[str, str]]:
    tail = content.split("Real states of your plan:\n", 1)[1].removesuffix(REFINE_INSTRUCTION)
    return [(m.group(1), m.group(2)) for m in re.finditer(r"After (\w+):\n((?:[#_OX√PS]+\n?)+)", tail)]


def test_every_state_in_a_refine_prompt_is_the_real_env_state():
    levels = load_levels(level_file("id_test"))[:12]
    records = run_episodes(PlanWriter(), levels, max_steps=8, history_len=1, simrollout=True, batch_size=5,
                           generation_config=GenerationConfig(max_new_tokens=64))
    statuses = set()
    for record in records:
        for step in record.steps:
            refinement = step.refinement
            assert refinement is not None
            statuses.add(refinement.plan.status)
            if not refinement.refined:
                assert refinement.plan.status == "missing" and step.response == refinement.first_response
                continue
            real = simulate_actions(step.observation, list(refinement.plan.actions))
            in_prompt = _futures_in_prompt(refinement.messages[-1]["content"])
            assert [(a, s.strip()) for a, s in in_prompt] == [(a, s) for a, s in refinement.futures]
            assert [s for _, s in refinement.futures] == real[:len(refinement.futures)]
            assert refinement.messages[-1]["content"].startswith(step.messages[-1]["content"])  # s_t + ...
            # the plan ran from a snapshot: the episode advanced by the played action only
            expected_next = step_grid(step.observation, step.action) if step.action else step.observation
            assert step.next_observation == expected_next
        assert record.num_steps <= 8
    assert {"ok", "capped", "partial", "missing"} <= statuses


def test_refine_prompt_needs_a_future():
    with pytest.raises(ValueError, match="future"):
        build_refine_messages("#P#", [], 1, "<think></think><answer>Up</answer>", [])


def test_refine_sft_examples_pair_a_draft_and_its_real_futures_with_the_true_response():
    level = load_levels(level_file("id_train"))[3]
    episode = run_resim_episode(level, ResimConfig(b=2, d=2, refine=1.0, seed=1))
    rows = episode.sft_examples(history_len=1)
    assert len(rows) == 2 * len(episode.steps)
    for t, step in enumerate(episode.steps):
        draft, futures = step.draft
        plan = extract_plan(draft)
        assert futures == list(zip(plan.actions, simulate_actions(step.observation, list(plan.actions))))
        refine_row = rows[2 * t + 1]["messages"]
        assert refine_row[-1]["content"] == step.response  # the target is the true a^ReSim
        assert refine_row[:2] == build_refine_messages(step.observation, episode.history(t), 1, draft, futures)
        assert parse_answer(draft) == plan.actions[0]
    # refine=0 keeps the data as before: no draft, one row per step
    plain = run_resim_episode(level, ResimConfig(b=2, d=2, seed=1))
    assert all(step.draft is None for step in plain.steps) and len(plain.sft_examples(1)) == len(plain.steps)


def test_refinement_effects_count_what_refinement_changed():
    from dynamind_lite.envs.sokoban import solve
    from dynamind_lite.evaluate import refinement_effects, step_is_optimal

    grid = load_levels(level_file("id_test"))[0]["grid"]
    first = solve(grid)[0]
    assert step_is_optimal(grid, first) and not step_is_optimal(grid, None)
    assert not all(step_is_optimal(grid, a) for a in ACTIONS)  # some move is not on an optimal path

    records = run_episodes(PlanWriter(seed=3), load_levels(level_file("id_test"))[:6], max_steps=5,
                           simrollout=True, generation_config=GenerationConfig(max_new_tokens=64))
    effects = refinement_effects(records)
    refined = [s for r in records for s in r.steps if s.refinement.refined]
    assert effects["refined_steps"] == len(refined) > 0
    assert sum(effects["plan_statuses"].values()) == sum(r.num_steps for r in records)
    for key in ("sim", "action"):
        e = effects[key]
        assert 0 <= e["corrected"] <= e["wrong_first"] <= len(refined) and e["broken"] <= len(refined) - e["wrong_first"]
    # PlanWriter writes every state unchanged: its simulations are wrong whenever a move changes the board
    assert effects["sim"]["wrong_first"] > 0
