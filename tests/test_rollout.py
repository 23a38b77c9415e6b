"""The agent loop: real env, prompt builder and parser; policies are an exact
solver behind the Generator protocol, and the real tiny checkpoint."""

from __future__ import annotations

import pytest

from dynamind_lite.envs.sokoban import STEP_REWARD, SUCCESS_REWARD, load_levels, solve, step_grid
from dynamind_lite.generation import Generation, GenerationConfig
from dynamind_lite.paths import level_file
from dynamind_lite.prompts import build_messages
from dynamind_lite.response import format_response
from dynamind_lite.rollout import run_episodes


def _current_state(conversation: list[dict]) -> str:
    return conversation[-1]["content"].rsplit("Current state:\n", 1)[1]


class SolverGenerator:
    """A policy that answers the first move of an optimal solution of the state in
    its prompt (parsed back out of the user message), every ``wrong_every``-th
    answer replaced by a wall-bumping or malformed one (after which a state may have
    no solution: then it answers Up)."""

    def __init__(self, wrong_every: int = 0):
        self.wrong_every = wrong_every
        self.served = 0
        self.batch_sizes: list[int] = []

    def generate(self, conversations, config):
        self.batch_sizes.append(len(conversations))
        out = []
        for conversation in conversations:
            self.served += 1
            plan = solve(_current_state(conversation)) or ["Up"]
            if self.wrong_every and self.served % self.wrong_every == 0:
                text = "I am not sure." if self.served % 2 else format_response("hmm", "Left")
            else:
                text = format_response(f"Plan: {' '.join(plan)}", plan[0])
            out.append(Generation(text=text, num_tokens=len(text), finish_reason="stop"))
        return out


@pytest.fixture(scope="module")
def levels() -> list[dict]:
    return load_levels(level_file("id_test"))[:6] + load_levels(level_file("ood_test"))[:4]


def test_an_optimal_policy_solves_every_level_in_solution_length(levels):
    records = run_episodes(SolverGenerator(), levels, max_steps=40, history_len=1, batch_size=4)
    assert [r.level_id for r in records] == [str(level["id"]) for level in levels]
    for level, record in zip(levels, records):
        n = len(level["solution"])
        assert record.success and record.num_steps == n and record.num_invalid_actions == 0
        assert [s.reward for s in record.steps] == [STEP_REWARD] * (n - 1) + [SUCCESS_REWARD]
        assert record.total_reward == pytest.approx(SUCCESS_REWARD + STEP_REWARD * (n - 1))
        assert record.steps[-1].terminated and not record.steps[-1].truncated


def test_records_hold_the_real_transitions_and_the_prompts(levels):
    records = run_episodes(SolverGenerator(wrong_every=3), levels, max_steps=25, history_len=2, batch_size=3)
    for level, record in zip(levels, records):
        assert record.grid == level["grid"] and record.steps[0].observation == level["grid"]
        history = []
        for t, step in enumerate(record.steps):
            assert step.t == t
            assert step.messages == build_messages(step.observation, history, 2)
            expected_next = step.observation if step.action is None else step_grid(step.observation, step.action)
            assert step.next_observation == expected_next
            if t + 1 < record.num_steps:
                assert record.steps[t + 1].observation == step.next_observation
            history.append((step.observation, step.action or "(invalid)"))
        invalid = [s for s in record.steps if s.response == "I am not sure."]
        assert all(s.action is None and s.reward == STEP_REWARD for s in invalid[:-1])
        assert record.num_invalid_actions == len(invalid)


def test_results_do_not_depend_on_the_batch_size(levels):
    """Replies depend only on the state here, so every batch size plays the same episodes."""
    generators = [SolverGenerator() for _ in range(3)]
    runs = [run_episodes(g, levels, max_steps=40, batch_size=b) for g, b in zip(generators, (1, 3, 64))]
    assert runs[0] == runs[1] == runs[2]
    assert [max(g.batch_sizes) for g in generators] == [1, 3, len(levels)]


def test_bad_arguments_raise_clear_errors(levels):
    with pytest.raises(ValueError, match="max_steps"):
        run_episodes(SolverGenerator(), levels, max_steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        run_episodes(SolverGenerator(), levels, max_steps=5, batch_size=0)
    with pytest.raises(ValueError, match="history_len"):
        run_episodes(SolverGenerator(), levels, max_steps=5, history_len=-1)
    with pytest.raises(ValueError, match="level 1"):
        run_episodes(SolverGenerator(), [levels[0], {"id": 3}], max_steps=5)
    with pytest.raises(ValueError, match=r"level 1 \(id bad\): Sokoban grid has no player"):
        run_episodes(SolverGenerator(), [levels[0], {"id": "bad", "grid": "####\n#XO#\n####"}], max_steps=5)

    class Short:
        def generate(self, conversations, config):
            return []

    with pytest.raises(RuntimeError, match="0 generations for 2 prompts"):
        run_episodes(Short(), levels[:2], max_steps=5)


def test_real_tiny_checkpoint_through_hf_generator(tiny_checkpoint, levels):
    """The random tiny model plays 3 levels; greedy decoding repeats exactly."""
    import torch

    from dynamind_lite.generation import make_generator
    from dynamind_lite.models import load_policy
    from dynamind_lite.response import parse_answer

    torch.set_num_threads(1)
    model, tokenizer = load_policy(tiny_checkpoint, device="cpu")
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=3)
    config = GenerationConfig(max_new_tokens=12)
    first, second = (run_episodes(generator, levels[:3], max_steps=3, generation_config=config, batch_size=3)
                     for _ in range(2))
    assert first == second
    for record in first:
        assert 1 <= record.num_steps <= 3
        for step in record.steps:
            assert 1 <= step.num_tokens <= 12 and step.finish_reason in ("stop", "length")
            rendered = tokenizer.apply_chat_template(step.messages, add_generation_prompt=True, return_dict=False)
            assert step.prompt_tokens == len(rendered)
            expected = parse_answer(step.response) if step.finish_reason == "stop" else None
            assert step.action == expected


def test_the_loop_through_an_openai_compatible_server(levels):
    """The "openai" backend over real HTTP: a scripted server answers the solver's
    move for the state in each prompt (the *model* is the test double)."""
    from dynamind_lite.generation import make_generator
    from dynamind_lite.llm import ChatClient
    from tests.openai_server import ScriptedChatServer

    def answer(body: dict) -> str:
        plan = solve(_current_state(body["messages"]))
        return format_response(f"Plan: {' '.join(plan)}", plan[0])

    with ScriptedChatServer(answer) as server:
        generator = make_generator("openai", client=ChatClient(server.base_url, "solver", max_retries=0),
                                   max_workers=4)
        records = run_episodes(generator, levels[:4], max_steps=20, batch_size=4)
        assert len(server.requests) == sum(r.num_steps for r in records)
    assert all(r.success and r.num_invalid_actions == 0 for r in records)
    assert [r.num_steps for r in records] == [len(level["solution"]) for level in levels[:4]]


class WallBumper:
    """A greedy policy that always answers Up: on a level where Up is blocked the
    state never changes, so every prompt after the second is the same."""

    def __init__(self):
        self.served = 0

    def generate(self, conversations, config):
        self.served += len(conversations)
        return [Generation(text=format_response("Up again.", "Up"), num_tokens=5, finish_reason="stop")
                for _ in conversations]


def test_a_greedy_episode_stuck_in_a_loop_reuses_its_response():
    stuck = "#####\n#P__#\n#_X_#\n#_O_#\n#####"  # Up from the top row is a wall: a no-op forever
    policy = WallBumper()
    records = run_episodes(policy, [stuck], max_steps=10, history_len=1)
    assert records[0].num_steps == 10 and not records[0].success
    assert policy.served == 2  # step 1 (no history) and step 2 (history shows the no-op); then reused
    assert all(step.response == records[0].steps[0].response for step in records[0].steps)
    assert sum(step.num_tokens for step in records[0].steps) == 50  # reused responses still count as generated
    sampled = WallBumper()
    run_episodes(sampled, [stuck], max_steps=10, history_len=1,
                 generation_config=GenerationConfig(temperature=1.0, do_sample=True))
    assert sampled.served == 10  # sampling may answer differently: never reused


class Oscillator:
    """A greedy policy that answers Left, then Right, then Left ... by the last move in its prompt:
    the episode loops with period 2 through the same two prompts."""

    def __init__(self):
        self.served = 0

    def generate(self, conversations, config):
        self.served += len(conversations)
        moves = ["Right" if "Left" in conversation[-1]["content"] else "Left" for conversation in conversations]
        return [Generation(text=format_response("Back and forth.", move), num_tokens=4, finish_reason="stop")
                for move in moves]


def test_a_greedy_episode_in_a_longer_loop_reuses_every_answered_prompt():
    level = "######\n#_P__#\n#_X__#\n#_O__#\n######"
    looping = Oscillator()
    records = run_episodes(looping, [level], max_steps=12, history_len=1)
    moves = [step.action for step in records[0].steps]
    assert moves[:4] == ["Left", "Right", "Left", "Right"] and records[0].num_steps == 12
    # first prompt (no history), then P moved left and right twice until both prompts of the loop were seen
    assert looping.served < 6
    fresh = Oscillator()
    replayed = run_episodes(fresh, [level], max_steps=12, history_len=1,
                            generation_config=GenerationConfig(temperature=1.0, do_sample=True))
    assert fresh.served == 12 and [step.action for step in replayed[0].steps] == moves  # same loop, all generated
