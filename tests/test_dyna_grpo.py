"""Dyna-GRPO: A_refine truth table, the simulation-improvement group, the schedule, the command."""

from __future__ import annotations

import itertools

import pytest
import torch

from dynamind_lite.config import get_preset
from dynamind_lite.dyna_grpo import main, phase_of, refine_advantage, simulation_improvement_samples
from dynamind_lite.grpo import group_advantages
from dynamind_lite.prompts import build_messages, build_refine_messages
from dynamind_lite.rollout import EpisodeRecord, StepRecord
from dynamind_lite.simrollout import Plan, Refinement


@pytest.mark.parametrize("success,ret,mean_tau,mean_tau_prime", list(itertools.product(
    (True, False), (9.5, 5.0, -1.0), (9.0, 4.0), (9.7, 4.5, -2.0))))
def test_refine_advantage_truth_table(success, ret, mean_tau, mean_tau_prime):
    expected = 1.0 if success and ret > mean_tau and ret > mean_tau_prime else 0.0
    assert refine_advantage(success, ret, mean_tau, mean_tau_prime) == expected


def test_refine_advantage_edges():
    assert refine_advantage(True, 9.0, 9.0, 1.0) == 0.0  # ties do not beat the mean
    assert refine_advantage(False, 10.0, -5.0, -5.0) == 0.0  # must succeed
    assert refine_advantage(True, 9.1, 9.0, 9.0) == 1.0


def _episode(level_id: str, rewards: list[float], success: bool, refined: bool) -> EpisodeRecord:
    record = EpisodeRecord(level_id, "###\n#P#\n###", success=success)
    for t, reward in enumerate(rewards):
        messages = build_messages(f"state {t}")
        refinement = None
        if refined:
            futures = [("Up", "###\n#P#\n###")]
            refinement = Refinement("first", 3, Plan(("Up",), "ok"), futures,
                                    build_refine_messages(f"state {t}", [], 1, "first", futures))
        record.steps.append(StepRecord(t, f"state {t}", messages, f"response {t}", 3, None, "stop", "Up", reward,
                                       "s", False, False, refinement))
    return record


def test_simulation_improvement_group():
    standard = [_episode("a", [-0.1, 10.0], True, False), _episode("a", [-0.1, -0.1, 0.0], False, False)]
    simrollout = [_episode("a", [10.0], True, True), _episode("a", [-0.1, -0.1, 0.0], False, True)]
    samples, counts = simulation_improvement_samples(standard, simrollout)
    returns = [e.total_reward for e in standard + simrollout]
    advantages = group_advantages(torch.tensor(returns)).tolist()  # one group of G = 4
    by_kind = {kind: [s for s in samples if s.kind == kind] for kind in ("tau", "tau_prime", "refine")}
    assert [s.advantage for s in by_kind["tau"]] == [advantages[0]] * 2 + [advantages[1]] * 3
    assert [s.advantage for s in by_kind["tau_prime"]] == [advantages[2]] + [advantages[3]] * 3
    # tau' keeps the ORIGINAL prompt; the refine samples carry s^refine and A_refine = 1
    assert all("Real states of your plan" not in s.messages[-1]["content"] for s in by_kind["tau_prime"])
    # only the successful SimRollout episode beats both means (R = 10 > 4.95 and > 4.9)
    assert counts["refine_rewarded_episodes"] == 1
    assert len(by_kind["refine"]) == 1 and by_kind["refine"][0].advantage == 1.0
    assert "Real states of your plan" in by_kind["refine"][0].messages[-1]["content"]
    assert by_kind["refine"][0].response == "response 0"


def test_dyna_schedule_cycles_and_grpo_is_policy_only():
    preset = get_preset("tiny", dyna_sim_iterations=2, dyna_policy_iterations=1)
    assert [phase_of("dyna-grpo", i, preset) for i in range(6)] == ["simulation", "simulation", "policy"] * 2
    assert {phase_of("grpo", i, preset) for i in range(6)} == {"policy"}


@pytest.mark.parametrize("argv,message", [
    (["--method", "ppo", "--init", "x", "--out", "y"], "invalid choice"),
    (["--method", "grpo", "--init", "/no/such/model", "--out", "y"], "does not exist"),
    (["--method", "grpo", "--init", "{model}", "--out", "y", "--iterations", "0"], "--iterations"),
    (["--method", "grpo", "--init", "{model}", "--out", "y", "--set", "rl_group_size=3"], "rl_group_size"),
    (["--method", "grpo", "--init", "{model}", "--out", "y", "--set", "rl_nonsense=1"], "unknown preset field"),
])
def test_rl_command_rejects_bad_arguments_before_loading_anything(argv, message, tiny_checkpoint, capsys):
    argv = [a.replace("{model}", tiny_checkpoint) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
