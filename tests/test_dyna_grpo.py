"""Dyna-GRPO: A_refine truth table, the simulation-improvement group, the schedule, the command."""

from __future__ import annotations

import itertools
import json

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


def _rl_command(out, iterations: int = 2) -> list[str]:
    import sys

    from dynamind_lite.paths import tiny_distill_dir

    return [sys.executable, "-m", "dynamind_lite", "rl", "--method", "dyna-grpo", "--init", str(tiny_distill_dir()),
            "--out", str(out), "--iterations", str(iterations), "--no-progress", "--set", "rl_tasks=3",
            "--set", "rl_group_size=2", "--set", "rl_max_steps=6", "--set", "rl_checkpoint_every=1",
            "--set", "rl_learning_rate=1e-4", "--set", "rl_beta=0.01", "--set", "eval_batch_size=8"]


@pytest.mark.slow
def test_rl_run_killed_with_sigkill_resumes_to_the_same_weights_and_metrics(tmp_path):
    """A real run of the shipped tiny policy is killed (SIGKILL) after its first checkpoint and
    started again: it resumes there and ends with the weights and metrics of an uninterrupted run.
    Two iterations: the killed run has done Dyna-GRPO's simulation iteration, the resumed one
    does its policy iteration from the restored weights and optimiser state."""
    import os
    import signal
    import subprocess
    import time

    from safetensors.torch import load_file

    from dynamind_lite.paths import tiny_distill_dir

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_rl_command(tmp_path / "whole"), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_rl_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "config.json").exists()  # no final model yet
    done = subprocess.run(_rl_command(killed), check=True, env=env, capture_output=True, text=True, timeout=600)
    assert '"iterations": 2' in done.stdout

    def rows(folder):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (folder / "rl_metrics.jsonl").read_text().splitlines()]

    assert rows(killed) == rows(tmp_path / "whole")
    whole, resumed = (load_file(str(f / "model.safetensors")) for f in (tmp_path / "whole", killed))
    initial = load_file(str(tiny_distill_dir() / "model.safetensors"))
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)
    assert any(not torch.equal(whole[name], initial[name]) for name in initial), "RL changed no weight"
    assert sum(row["samples"] for row in rows(killed)) > 0


def test_rl_with_vllm_says_how_to_get_it_when_it_is_absent(tiny_checkpoint, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    argv = ["--method", "grpo", "--init", tiny_checkpoint, "--out", str(tmp_path / "o"),
            "--set", "generation_backend=vllm"]
    assert main(argv) == 2
    assert "needs vLLM" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing heavy ran, nothing was written
