"""The RL update with 2 CPU processes (gloo) through ``accelerate``'s ``Accelerator``.

``accelerate launch`` starts processes with torch's ``torch.distributed.run``
(torchrun) on GPUs; on CPUs it has no multi-process mode on one machine (its
MULTI_CPU type wants mpirun), so the test starts the two processes with
torchrun itself. The code under test (``Accelerator``, ``grpo.policy_update``)
is the same either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

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
