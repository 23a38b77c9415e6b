"""One GRPO update on a fixed batch, run by tests/test_distributed.py.

``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_update.py MODEL OUT`` (each
process takes every other sample) or ``python tests/ddp_update.py MODEL OUT`` (one
process, the whole batch). Each process saves its weights after the update to
``OUT/rank<i>.pt``.
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from dynamind_lite.grpo import Sample, policy_update
from dynamind_lite.models.loader import load_policy
from dynamind_lite.prompts import build_messages


def main(model_dir: str, out: str) -> None:
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model, tokenizer = load_policy(model_dir, device="cpu", dtype="float32")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # the step is the gradient: Adam would magnify float noise
    samples = [Sample(build_messages(f"#####\n#{'_' * k}P{'_' * (2 - k)}#\n#####"),
                      f"<think>step {k}</think><answer>{action}</answer>", k % 3 != 0, advantage)
               for k, (action, advantage) in enumerate([("Up", 1.2), ("Left", -0.4), ("Down", 0.7),
                                                        ("Right", -1.5), ("Up", 0.3)])]
    share = samples[accelerator.process_index::accelerator.num_processes]  # 3 and 2 samples on 2 processes
    policy_update(model, optimizer, tokenizer, share, epsilon=0.2, beta=0.0, mu=2, micro_batch_size=2,
                  accelerator=accelerator)
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), Path(out) / f"rank{accelerator.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
