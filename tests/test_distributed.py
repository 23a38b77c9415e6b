"""Training with 2 CPU processes (gloo) through ``accelerate``.

``accelerate launch`` with a data-parallel config (``configs/accelerate/ddp_8gpu.yaml``,
``--num_processes 2``) starts the processes with torchrun; on a machine without
CUDA, ``Accelerator(cpu=True)`` and TRL's trainer then form one gloo group
(accelerate's MULTI_CPU). The first test checks the RL update's arithmetic
(2 processes == 1 process on the same batch); the others run the real ``sft``
and ``rl`` commands under ``accelerate launch`` and check the shipped configs load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import json

import pytest
import torch
from safetensors.torch import load_file

from dynamind_lite.paths import REPO_ROOT, tiny_distill_dir

SCRIPT = Path(__file__).with_name("ddp_update.py")


def test_two_processes_hold_identical_weights_equal_to_one_process_on_the_same_batch(tiny_checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(SCRIPT), tiny_checkpoint, str(tmp_path / "single")], check=True, env=env,
                   timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                    str(SCRIPT), tiny_checkpoint, str(tmp_path / "ddp")], check=True, env=env, timeout=300)
    single = torch.load(tmp_path / "single" / "rank0.pt")
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    for name, weight in single.items():
        assert torch.equal(rank0[name], rank1[name]), f"{name}: the ranks diverged"
        torch.testing.assert_close(rank0[name], weight, rtol=1e-5, atol=1e-6, msg=f"{name}: 2 processes != 1")
    initial = load_file(str(Path(tiny_checkpoint) / "model.safetensors"))
    changed = any(not torch.equal(initial[name], single[name]) for name in initial if name in single)
    assert changed, "the update changed no weight"


CONFIGS = REPO_ROOT / "configs" / "accelerate"


@pytest.mark.parametrize("name, kind, processes", [("single_gpu", "NO", 1), ("ddp_8gpu", "MULTI_GPU", 8),
                                                    ("fsdp_8gpu_full_finetune", "FSDP", 8)])
def test_shipped_accelerate_configs_load(name, kind, processes):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert (config.distributed_type.name, config.num_processes) == (kind, processes)
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"


def _launch(command: list[str], tmp_path) -> dict:
    """``accelerate launch`` of ``python -m dynamind_lite COMMAND`` on 2 CPU processes; its JSON summary."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(CONFIGS / "ddp_8gpu.yaml"), "--num_processes", "2", "--main_process_port", "29531",
                           "-m", "dynamind_lite", *command, "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=400, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"model_dir"') == 1, "only the main process reports"
    return json.loads(done.stdout[done.stdout.index("{"):])


def _changed(before: str, after: str) -> bool:
    initial, trained = load_file(before), load_file(after)
    return any(not torch.equal(initial[name], trained[name]) for name in initial if name in trained)


def test_sft_and_rl_commands_run_under_accelerate_launch_with_two_processes(tiny_checkpoint, tmp_path):
    from dynamind_lite.prompts import build_messages
    from dynamind_lite.response import ACTIONS, format_response, format_rollout

    grids = ["######\n#_XP_#\n#_O__#\n######", "#####\n#PXO#\n#####"]
    rows = [{"messages": build_messages(grids[i % 2]) + [{"role": "assistant", "content": format_response(
        format_rollout(1, [ACTIONS[i % 4]], [grids[i % 2]], 9.6), ACTIONS[i % 4])}]} for i in range(32)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sft = _launch(["sft", "--model", tiny_checkpoint, "--data", str(data), "--out", str(tmp_path / "sft"),
                   "--set", "sft_max_steps=6", "--set", "sft_batch_size=1", "--set", "sft_logging_steps=1",
                   "--set", "sft_warmup_ratio=0.0"], tmp_path)
    assert sft["num_processes"] == 2 and sft["global_step"] == 6
    assert sft["last_loss"] < sft["first_loss"]
    assert _changed(str(Path(tiny_checkpoint) / "model.safetensors"), str(tmp_path / "sft" / "final" / "model.safetensors"))

    # T = 1.5: at the preset's 0.7 the shipped policy can solve every episode of both tasks alike, and
    # groups of equal returns have A = 0 everywhere: no sample to train on.
    rl = _launch(["rl", "--method", "grpo", "--init", str(tiny_distill_dir()), "--out", str(tmp_path / "rl"),
                  "--iterations", "1", "--set", "rl_tasks=2", "--set", "rl_group_size=4", "--set", "rl_max_steps=6",
                  "--set", "rl_micro_batch_size=8", "--set", "rl_temperature=1.5"], tmp_path)
    assert rl["num_processes"] == 2 and rl["last"]["samples"] > 0
    assert len((tmp_path / "rl" / "rl_metrics.jsonl").read_text().splitlines()) == 1
    assert _changed(str(tiny_distill_dir() / "model.safetensors"), str(tmp_path / "rl" / "model.safetensors"))
