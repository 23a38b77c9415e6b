"""Exact Sim Score against hand-built responses and a naive reference; the
evaluation metrics; the judge route; the ``evaluate`` command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynamind_lite.evaluate import (
    cell_accuracy,
    compare_simulated_states,
    episode_metrics,
    judge_sim_score,
    sim_score_summary,
    simulation_texts,
)
from dynamind_lite.generation import GenerationConfig
from dynamind_lite.response import format_response, format_rollout
from dynamind_lite.rollout import EpisodeRecord, StepRecord

ROOT = Path(__file__).resolve().parent.parent

# A hand-played 6x6 level: the real states below were worked out by hand, not by the env.
START = "\n".join(["######", "#_P__#", "#_X__#", "#____#", "#_O__#", "######"])
AFTER_DOWN = "\n".join(["######", "#____#", "#_P__#", "#_X__#", "#_O__#", "######"])
AFTER_DOWN_DOWN = "\n".join(["######", "#____#", "#____#", "#_P__#", "#_√__#", "######"])
AFTER_RIGHT = "\n".join(["######", "#__P_#", "#_X__#", "#____#", "#_O__#", "######"])
AFTER_RIGHT_DOWN = "\n".join(["######", "#____#", "#_XP_#", "#____#", "#_O__#", "######"])
AFTER_UP = START  # a wall: a legal no-op


def _response(rollouts: list[tuple[list[str], list[str]]], answer: str = "Down") -> str:
    blocks = [format_rollout(i, actions, states, 9.0) for i, (actions, states) in enumerate(rollouts, 1)]
    think = "\n".join(blocks) + f"\nBest: Rollout 1 with value 9.0.\nPlan: {' '.join(rollouts[0][0])}\n"
    return format_response(think, answer)


def _naive_exact(pairs: list[tuple[str, str]]) -> float:
    """Reference: fraction of (simulated, real) pairs that are equal, character by character."""
    equal = 0
    for simulated, real in pairs:
        same = len(simulated) == len(real)
        for i in range(min(len(simulated), len(real))):
            same = same and simulated[i] == real[i]
        equal += same
    return equal / len(pairs)


def _naive_cells(simulated: str, real: str) -> float:
    a, b = simulated.split("\n"), real.split("\n")
    if len(a) != len(b):
        return 0.0
    total = equal = 0
    for row_a, row_b in zip(a, b):
        if len(row_a) != len(row_b):
            return 0.0
        for x, y in zip(row_a, row_b):
            total += 1
            equal += x == y
    return equal / total


def _record(responses: list[str], observation: str = START) -> EpisodeRecord:
    steps = [StepRecord(t=t, observation=observation, messages=[], response=text, num_tokens=10 + t, prompt_tokens=50,
                        finish_reason="stop", action="Down", reward=-0.1, next_observation=observation,
                        terminated=False, truncated=False) for t, text in enumerate(responses)]
    return EpisodeRecord(level_id="hand", grid=observation, steps=steps, success=False)


REAL = {("Down",): AFTER_DOWN, ("Down", "Down"): AFTER_DOWN_DOWN, ("Right",): AFTER_RIGHT,
        ("Right", "Down"): AFTER_RIGHT_DOWN, ("Up",): AFTER_UP}
"""The real state after each action prefix from START, worked out by hand."""


def _naive_sim(rollouts: list[tuple[list[str], list[tuple[str, str]]]]) -> tuple[float, float]:
    """Reference Sim Score (exact, cells) from the *structure* a response was written
    from: each planned action promises one state; a block counts when it exists,
    names the planned action and its grid is the hand-worked real one."""
    exact = cells = 0.0
    promised = 0
    for plan, blocks in rollouts:
        for k in range(len(plan)):
            promised += 1
            if k < len(blocks) and blocks[k][0] == plan[k]:
                real = REAL[tuple(plan[:k + 1])]
                exact += _naive_exact([(blocks[k][1], real)])
                cells += _naive_cells(blocks[k][1], real)
    return exact / promised, cells / promised


def _written(rollouts: list[tuple[list[str], list[tuple[str, str]]]], cut: int | None = None) -> str:
    """The response text of ``rollouts`` (blocks written by hand, not by format_rollout),
    optionally cut after ``cut`` characters (a response stopped at max_new_tokens)."""
    lines = []
    for i, (plan, blocks) in enumerate(rollouts, 1):
        lines.append(f"Rollout {i}: {' '.join(plan)}")
        for header, grid in blocks:
            lines += [f"After {header}:", grid]
        lines.append("Value: 9.0")
    text = "<think>" + "\n".join(lines) + f"\nPlan: {' '.join(rollouts[0][0])}\n</think><answer>Down</answer>"
    return text if cut is None else text[:cut]


def test_right_wrong_truncated_and_missing_states_match_the_naive_reference():
    wrong = AFTER_RIGHT_DOWN.replace("#_XP_#", "#_X_P#")  # player one cell off: 2 of 36 cells differ
    cases = {
        "right": [(["Down", "Down"], [("Down", AFTER_DOWN), ("Down", AFTER_DOWN_DOWN)]), (["Up"], [("Up", AFTER_UP)])],
        "wrong": [(["Right", "Down"], [("Right", AFTER_RIGHT), ("Down", wrong)]),
                  (["Down"], [("Down", AFTER_RIGHT)])],
        # blocks missing: the plan promises three states, two are written; a rollout with none
        "missing": [(["Down", "Down"], [("Down", AFTER_DOWN)]), (["Right", "Down"], [])],
        # out of step: the second block is headed by another action than the plan's
        "out_of_step": [(["Down", "Down"], [("Down", AFTER_DOWN), ("Right", AFTER_DOWN_DOWN)])],
    }
    expected = {"right": (1.0, 1.0), "wrong": (1 / 3, (1 + 34 / 36 + 33 / 36) / 3), "missing": (0.25, 0.25),
                "out_of_step": (0.5, 0.5)}
    for name, rollouts in cases.items():
        summary = sim_score_summary([_record([_written(rollouts)])])
        reference = _naive_sim(rollouts)
        assert (summary["sim_score"], summary["sim_cell_accuracy"]) == pytest.approx(reference), name
        assert reference == pytest.approx(expected[name]), name
    # Truncated: cut inside the second grid of rollout 1; rollout 2 was never written.
    rollouts = [(["Down", "Down"], [("Down", AFTER_DOWN), ("Down", AFTER_DOWN_DOWN)]), (["Up"], [("Up", AFTER_UP)])]
    full = _written(rollouts)
    cut = full.index(AFTER_DOWN_DOWN) + 16  # two rows and a half of the second grid
    states = compare_simulated_states(_written(rollouts, cut), START)
    assert [(s.depth, s.exact, s.cell_accuracy) for s in states] == [(1, 1.0, 1.0), (2, 0.0, 0.0)]
    assert states[1].simulated == AFTER_DOWN_DOWN[:16] and states[1].real == AFTER_DOWN_DOWN
    # Cut inside a plan line: the rest of the plan is missing, not scored as present.
    cut_plan = full[:full.index("Rollout 1: Down Down") + len("Rollout 1: Down Down")] + "\nAfter Down:\n" + AFTER_DOWN
    assert [s.exact for s in compare_simulated_states(cut_plan, START)] == [1.0, 0.0]
    assert [s.simulated is None for s in compare_simulated_states(cut_plan, START)] == [False, True]


def test_all_states_right_scores_one():
    text = _response([(["Down", "Down"], [AFTER_DOWN, AFTER_DOWN_DOWN]),
                      (["Right", "Down"], [AFTER_RIGHT, AFTER_RIGHT_DOWN]),
                      (["Up"], [AFTER_UP])])
    states = compare_simulated_states(text, START)
    assert [(s.rollout, s.depth) for s in states] == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]
    assert all(s.exact == 1.0 and s.cell_accuracy == 1.0 for s in states)
    summary = sim_score_summary([_record([text])])
    assert summary == {"sim_score": 1.0, "sim_cell_accuracy": 1.0, "sim_step_fraction": 1.0,
                       "num_simulated_states": 5}


def test_one_wrong_state_gives_the_right_fraction():
    wrong = AFTER_RIGHT_DOWN.replace("#_XP_#", "#_X_P#")  # player one cell off: 2 of 36 cells differ
    simulated = [AFTER_DOWN, AFTER_DOWN_DOWN, AFTER_RIGHT, wrong]
    real = [AFTER_DOWN, AFTER_DOWN_DOWN, AFTER_RIGHT, AFTER_RIGHT_DOWN]
    text = _response([(["Down", "Down"], simulated[:2]), (["Right", "Down"], simulated[2:])])
    summary = sim_score_summary([_record([text])])
    assert summary["sim_score"] == pytest.approx(_naive_exact(list(zip(simulated, real)))) == 0.75
    expected_cells = sum(_naive_cells(s, r) for s, r in zip(simulated, real)) / 4
    assert summary["sim_cell_accuracy"] == pytest.approx(expected_cells) == pytest.approx((3 + 34 / 36) / 4)


def test_shape_mismatch_scores_zero_cells():
    short = "\n".join(AFTER_DOWN.split("\n")[:-1])  # a row missing
    narrow = "\n".join(row[:-1] for row in AFTER_DOWN.split("\n"))  # a column missing
    assert cell_accuracy(short, AFTER_DOWN) == 0.0 == _naive_cells(short, AFTER_DOWN)
    assert cell_accuracy(narrow, AFTER_DOWN) == 0.0 == _naive_cells(narrow, AFTER_DOWN)
    for bad in (short, narrow, ""):
        (state,) = compare_simulated_states(_response([(["Down"], [bad])]), START)
        assert (state.exact, state.cell_accuracy, state.real) == (0.0, 0.0, AFTER_DOWN)


def test_steps_that_simulate_nothing_are_reported_not_scored():
    plain = format_response("I go down.", "Down")
    good = _response([(["Down"], [AFTER_DOWN])])
    assert compare_simulated_states(plain, START) == []
    assert simulation_texts(plain, START) is None
    summary = sim_score_summary([_record([plain, good, plain, "garbage <think>"])])
    assert summary == {"sim_score": 1.0, "sim_cell_accuracy": 1.0, "sim_step_fraction": 0.25,
                       "num_simulated_states": 1}
    nothing = sim_score_summary([_record([plain])])
    assert nothing["sim_score"] == 0.0 and nothing["sim_step_fraction"] == 0.0


def test_unknown_action_breaks_the_rest_of_its_rollout():
    think = (f"Rollout 1: Down Jump Down\nAfter Down:\n{AFTER_DOWN}\nAfter Jump:\n{AFTER_DOWN}\n"
             f"After Down:\n{AFTER_DOWN_DOWN}\nValue: 1.0\nPlan: Down")
    states = compare_simulated_states(format_response(think, "Down"), START)
    assert [s.exact for s in states] == [1.0, 0.0, 0.0]
    assert [s.real for s in states] == [AFTER_DOWN, None, None]


def test_episode_metrics_counts():
    good = _response([(["Down"], [AFTER_DOWN])])
    solved = _record([good, good])
    solved.success = True
    solved.steps[1].reward = 10.0
    failed = _record(["nonsense", good, good])
    failed.steps[0].action = None
    failed.steps[2].finish_reason = "length"
    metrics = episode_metrics([solved, failed])
    assert metrics["num_levels"] == 2 and metrics["success_rate"] == 0.5
    low, high = metrics["ci95"]
    assert 0.0 < low < 0.5 < high < 1.0
    assert metrics["invalid_action_rate"] == pytest.approx(1 / 5)
    assert metrics["invalid_after_invalid_rate"] == 0.0  # the one invalid step is followed by a valid one
    assert metrics["truncated_response_rate"] == pytest.approx(1 / 5)
    assert metrics["mean_gen_tokens"] == pytest.approx((10 + 11 + 10 + 11 + 12) / 5)
    assert metrics["mean_steps"] == 2.5
    assert metrics["sim_score"] == 1.0 and metrics["sim_step_fraction"] == pytest.approx(4 / 5)
    json.dumps(metrics)
    with pytest.raises(ValueError, match="no episodes"):
        episode_metrics([])
    stuck = _record([good, "nonsense", "nonsense", "nonsense", good])  # invalid, invalid again twice, then valid
    for step in stuck.steps[1:4]:
        step.action = None
    assert episode_metrics([stuck, solved])["invalid_after_invalid_rate"] == pytest.approx(2 / 3)
    assert episode_metrics([solved])["invalid_after_invalid_rate"] is None


def test_judge_sim_score_through_a_real_local_server():
    """The judge route over HTTP: a scripted judge that answers 1.0 exactly when
    the two blocks of its prompt agree (the judge *model* is the test double;
    client, template filling and score parsing are real)."""
    from dynamind_lite.llm import ChatClient
    from tests.openai_server import ScriptedChatServer

    def judge(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        predicted = prompt.split("# What the agent predicted\n", 1)[1].split("\n\n# What the real game showed", 1)[0]
        real = prompt.split("# What the real game showed\n", 1)[1].split("\n\n# How to score", 1)[0]
        return "Score: 1.0" if predicted == real else "Score: 0.25"

    right = _response([(["Down"], [AFTER_DOWN])])
    wrong = _response([(["Down"], [AFTER_RIGHT])])
    pairs = [simulation_texts(right, START), simulation_texts(wrong, START)]
    with ScriptedChatServer(judge) as server:
        client = ChatClient(server.base_url, "judge", max_retries=0, timeout=10)
        assert judge_sim_score(client, pairs) == pytest.approx((1.0 + 0.25) / 2)
        assert len(server.requests) == 2
    with pytest.raises(ValueError, match="at least one"):
        judge_sim_score(client, [])


# --------------------------------------------------------------------------- #
# The command, end to end (subprocess)
# --------------------------------------------------------------------------- #


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "dynamind_lite", "evaluate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_evaluate_cli_end_to_end_on_the_tiny_checkpoint(tiny_checkpoint, tmp_path):
    from dynamind_lite.paths import level_file

    out = tmp_path / "metrics.json"
    result = _run_cli("--model", tiny_checkpoint, "--levels", str(level_file("id_test")), "--out", str(out),
                      "--limit", "3", "--max-steps", "3", "--max-new-tokens", "24", "--batch-size", "3",
                      "--base-model", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert json.loads(result.stdout[result.stdout.index("{"):]) == written
    for key in ("success_rate", "ci95", "sim_score", "sim_cell_accuracy", "mean_gen_tokens", "mean_steps",
                "invalid_action_rate", "num_levels", "gen_token_ratio", "model", "levels", "seed"):
        assert key in written, key
    assert written["num_levels"] == 3
    assert 1 <= written["mean_steps"] <= 3
    assert 0 < written["mean_gen_tokens"] <= 24
    assert written["gen_token_ratio"] == pytest.approx(1.0)  # the base model is the model itself
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


@pytest.mark.parametrize("args, message", [
    (["--levels", "missing.jsonl"], "levels file"),
    (["--model", "nowhere/at/all"], "model"),
    (["--limit", "0"], "--limit"),
    (["--max-steps", "-3"], "--max-steps"),
    (["--batch-size", "two"], "--batch-size"),
    (["--temperature", "nan"], "--temperature"),
    (["--history-len", "-1"], "--history-len"),
    (["--backend", "openai"], "--base-url"),
    (["--judge-model", "x"], "--judge-base-url"),
    (["--base-model", "/no/base"], "--base-model"),
])
def test_evaluate_cli_rejects_bad_arguments_before_loading(args, message, tiny_checkpoint, tmp_path, capsys,
                                                           monkeypatch):
    """In-process ``main(argv)``: exit code 2, a message naming the problem, no
    model loaded and no output file."""
    from dynamind_lite import evaluate
    from dynamind_lite.paths import level_file

    monkeypatch.setattr(evaluate, "load_generator", lambda *a, **k: pytest.fail("loaded a model"))
    base = {"--model": tiny_checkpoint, "--levels": str(level_file("id_test")), "--out": str(tmp_path / "m.json")}
    if args[0] in base:
        base[args[0]] = str(tmp_path / args[1]) if args[0] == "--levels" else args[1]
        args = []
    code = evaluate.main([x for pair in base.items() for x in pair] + args)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_evaluate_cli_names_a_hub_model_it_cannot_load(tmp_path, capsys):
    """A hub id that is not cached (tests run offline): exit code 1 and the name, no traceback."""
    from dynamind_lite import evaluate
    from dynamind_lite.paths import level_file

    code = evaluate.main(["--model", "dynamind-lite/not-a-cached-model", "--levels", str(level_file("id_test")),
                          "--out", str(tmp_path / "m.json"), "--limit", "1"])
    assert code == 1
    assert "dynamind-lite/not-a-cached-model" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_evaluate_models_computes_only_what_is_missing(tiny_checkpoint, tmp_path):
    from dynamind_lite.evaluate import evaluate_models, evaluation_key

    cache = tmp_path / "eval.json"
    play = dict(limit=2, max_steps=2, history_len=1, generation_config=GenerationConfig(max_new_tokens=8),
                batch_size=4)
    known = {evaluation_key("old", "id_test", 2): {"success_rate": 0.5}}
    first = evaluate_models({"old": "/no/such/model", "new": tiny_checkpoint}, ["id_test"], cache, known=known, **play)
    assert first[evaluation_key("old", "id_test", 2)] == {"success_rate": 0.5}  # never loaded
    assert first[evaluation_key("new", "id_test", 2)]["num_levels"] == 2
    assert json.loads(cache.read_text()) == first
    again = evaluate_models({"new": "/no/such/model"}, ["id_test"], cache, **play)  # all cached: nothing loads
    assert again == first
