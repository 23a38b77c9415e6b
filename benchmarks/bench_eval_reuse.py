"""How much greedy response reuse saves in an evaluation (``rollout.run_episodes``).

    python benchmarks/bench_eval_reuse.py [--model data/models/tiny-distill] [--splits id_test ood_test]

Under greedy decoding an episode back at a prompt it already answered reuses that
response (a loop replays without generating). This plays each split greedily as
notebooks 04 and 06 do (budget 30, h = 1, the tiny preset's batch and token cap)
through a recording generator (``bench_agent_loop.RecordingGenerator``) and prints, per split: env steps (what the loop
would generate without reuse), prompts actually generated, success and seconds.
Prints one line per split; not a test.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_agent_loop import RecordingGenerator  # benchmarks/ is on sys.path when this script runs

from dynamind_lite.config import get_preset
from dynamind_lite.envs.sokoban import load_levels
from dynamind_lite.generation import GenerationConfig, make_generator
from dynamind_lite.models import load_policy
from dynamind_lite.paths import level_file, tiny_distill_dir
from dynamind_lite.rollout import run_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(tiny_distill_dir()))
    parser.add_argument("--splits", nargs="+", default=["id_test", "ood_test", "style_test_random_placement"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = get_preset("tiny")
    model, tokenizer = load_policy(args.model, device="cpu")
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=preset.eval_batch_size)
    config = GenerationConfig(max_new_tokens=preset.max_new_tokens)
    for split in args.splits:
        levels = load_levels(level_file(split))
        recording = RecordingGenerator(generator)
        started = time.perf_counter()
        records = run_episodes(recording, levels, max_steps=preset.max_steps, history_len=preset.history_len,
                               generation_config=config, batch_size=preset.eval_batch_size)
        seconds = time.perf_counter() - started
        steps = sum(r.num_steps for r in records)
        prompts = sum(len(batch) for batch in recording.batches)
        print(f"{split}: {len(levels)} levels, success {sum(r.success for r in records)}, {steps} steps, "
              f"{prompts} prompts generated ({100 * (1 - prompts / steps):.0f}% reused), "
              f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
