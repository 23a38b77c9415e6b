"""Fuzz: thousands of malformed responses through the parser and the agent loop.

Every text below is malformed *by construction* (its category says why), so the
expectation does not come from the parser under test. The agent loop runs the
real env, prompt builder and parser; only the model is replaced, by a generator
that replays the fuzz texts.
"""

from __future__ import annotations

import random
import string

from dynamind_lite.envs.sokoban import FAILURE_REWARD, STEP_REWARD, generate_level
from dynamind_lite.evaluate import compare_simulated_states, episode_metrics
from dynamind_lite.generation import Generation, GenerationConfig
from dynamind_lite.response import ACTIONS, GRID_SYMBOLS, parse_answer, parse_plan, parse_response, parse_rollouts
from dynamind_lite.rollout import run_episodes

ALPHABET = string.ascii_letters + string.digits + " \n\t<>/:" + GRID_SYMBOLS + "éλ中\x00"
PIECES = ["<think>", "</think>", "<answer>", "</answer>", "Rollout 1:", "After Up:", "Value: 3.2", "Plan: Up",
          "Best:", "######", "#_P_#", *ACTIONS, "up", "DOWN", "\n", " "]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 60)))
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 12)))


def _non_action_word(rng: random.Random) -> str:
    while True:
        word = "".join(rng.choice(string.ascii_letters + " ") for _ in range(rng.randint(0, 8)))
        if word.strip().lower() not in {a.lower() for a in ACTIONS}:
            return word


def malformed_responses(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (category, text) pairs, each malformed for the reason its category names."""
    rng = random.Random(seed)
    makers = {
        # no <answer>...</answer> at all
        "no_answer_tag": lambda: "<think>" + _random_text(rng).replace("<answer>", "").replace("</answer>", "")
                                 + "</think>" + rng.choice(ACTIONS),
        # a word that is not an action inside well-formed tags
        "unknown_action": lambda: f"<think>{_random_text(rng).replace('<', '')}</think>"
                                  f"<answer>{_non_action_word(rng)}</answer>",
        # text outside the tags
        "text_before": lambda: rng.choice(["x", "Sure!", "1."])
                               + f"<think>ok</think><answer>{rng.choice(ACTIONS)}</answer>",
        "text_after": lambda: f"<think>ok</think><answer>{rng.choice(ACTIONS)}</answer>" + rng.choice(["x", "<", "Up"]),
        # cut off anywhere before the closing '>' of </answer>
        "truncated": lambda: (lambda full: full[:rng.randint(0, len(full) - 1)])(
            f"<think>{_random_text(rng).replace('<', '')}</think><answer>{rng.choice(ACTIONS)}</answer>"),
        # two answers, an answer inside the think block, think missing
        "two_answers": lambda: f"<think>a</think><answer>{rng.choice(ACTIONS)}</answer><answer>Up</answer>",
        "nested": lambda: f"<think><answer>{rng.choice(ACTIONS)}</answer></think>"
                          f"<answer>{rng.choice(ACTIONS)}</answer>",
        "no_think": lambda: f"<answer>{rng.choice(ACTIONS)}</answer>",
        # a bare action name: a move for the env, but not a response in our format
        "bare_action": lambda: rng.choice(ACTIONS + ("up", " left ")),
        "empty": lambda: rng.choice(["", " ", "\n"]),
        "junk": lambda: "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 200))).replace("<", "("),
    }
    names = sorted(makers)
    return [(name, makers[name]()) for name in (names[i % len(names)] for i in range(n))]


def test_parser_never_crashes_and_rejects_every_malformed_response():
    cases = malformed_responses(5000)
    for category, text in cases:
        assert parse_answer(text) is None, (category, text)
        assert not parse_response(text).valid
        parse_rollouts(text)  # never raises
        parse_plan(text)
    # The control: the same constructions, well-formed, do parse (so the test can fail).
    for action in ACTIONS:
        assert parse_answer(f"<think>ok</think><answer>{action}</answer>") == action
        assert parse_answer(f"  <think>\nRollout 1: Up\n</think>\n<answer> {action.lower()} </answer>\n") == action


def test_sim_score_never_crashes_on_fuzz():
    grid = generate_level(0)
    for _, text in malformed_responses(2000, seed=1):
        for state in compare_simulated_states(text, grid):
            assert 0.0 <= state.cell_accuracy <= 1.0 and state.exact in (0.0, 1.0)


class ReplayGenerator:
    """A Generator that answers with given texts, in order, cycling: a stand-in for
    the *model* only. ``lengths`` marks which replies are cut at max_new_tokens."""

    def __init__(self, texts: list[str], truncated: set[int] = frozenset()):
        self.texts = texts
        self.truncated = truncated
        self.calls = 0
        self.served = 0

    def generate(self, conversations, config):
        out = []
        for _ in conversations:
            i = self.served % len(self.texts)
            self.served += 1
            out.append(Generation(text=self.texts[i], num_tokens=len(self.texts[i]),
                                  finish_reason="length" if i in self.truncated else "stop"))
        self.calls += 1
        return out


def test_agent_loop_counts_every_malformed_response_as_invalid():
    texts = [text for _, text in malformed_responses(3000, seed=2)]
    levels = [{"id": f"fuzz-{seed}", "grid": generate_level(seed)} for seed in range(100)]
    max_steps = 30
    generator = ReplayGenerator(texts)
    sampling = GenerationConfig(temperature=1.0, do_sample=True)  # a new text per call, never a reused answer
    records = run_episodes(generator, levels, max_steps=max_steps, history_len=2, batch_size=25, seed=0,
                           generation_config=sampling)

    assert generator.served == 100 * max_steps == 3000  # every text was played once
    assert generator.calls == 4 * max_steps  # 4 lock-step waves of 25 episodes
    for level, record in zip(levels, records):
        assert record.level_id == level["id"] and not record.success
        assert record.num_steps == max_steps and record.num_invalid_actions == max_steps
        assert all(step.action is None and step.next_observation == level["grid"] for step in record.steps)
        assert [s.reward for s in record.steps] == [STEP_REWARD] * (max_steps - 1) + [FAILURE_REWARD]
        assert record.steps[-1].truncated and not any(s.truncated for s in record.steps[:-1])
        assert record.steps[-1].messages[1]["content"].count("Action: (invalid)") == 2
    metrics = episode_metrics(records)
    assert metrics["invalid_action_rate"] == 1.0 and metrics["success_rate"] == 0.0


def test_a_valid_response_cut_at_max_new_tokens_is_invalid():
    """The prefix parses, but the model did not finish its turn."""
    grid = generate_level(3)
    generator = ReplayGenerator(["<think>ok</think><answer>Up</answer>"], truncated={0})
    (record,) = run_episodes(generator, [grid], max_steps=4, history_len=1)
    assert record.num_invalid_actions == 4 and all(s.next_observation == grid for s in record.steps)
