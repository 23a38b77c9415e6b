"""Throughput of the agent loop against raw batched ``model.generate`` on the same prompts.

    python benchmarks/bench_agent_loop.py [--model data/models/tiny-base] [--levels 32] [--batch-size 32]
                                          [--max-steps 5] [--max-new-tokens 64] [--threads 2] [--repeats 2]

The loop (``rollout.run_episodes`` over an ``HFGenerator``) is run once while its
batches of prompts are recorded; then exactly those batches are decoded again by
``model.generate`` directly (chat template, left padding, same stop tokens, same
greedy settings), with no env, parser or records. Both count the tokens
generated up to and including the end-of-turn token, so

    overhead = 1 - (loop tokens/s) / (raw tokens/s)

is what the env stepping, prompt building, parsing and bookkeeping cost.
Prints one line per measurement; not a test.
"""

from __future__ import annotations

import argparse
import time

import torch

from dynamind_lite.envs.sokoban import load_levels
from dynamind_lite.generation import GenerationConfig, make_generator
from dynamind_lite.generation.hf import stop_token_ids
from dynamind_lite.models import load_policy
from dynamind_lite.paths import level_file, tiny_base_dir
from dynamind_lite.rollout import run_episodes


class RecordingGenerator:
    """Forwards to a generator and keeps every batch of conversations it was asked."""

    def __init__(self, inner):
        self.inner = inner
        self.batches: list[list[list[dict]]] = []

    def generate(self, conversations, config):
        self.batches.append(list(conversations))
        return self.inner.generate(conversations, config)


@torch.no_grad()
def raw_generate_tokens(model, tokenizer, batches, config: GenerationConfig, batch_size: int) -> int:
    """Decode ``batches`` with plain ``model.generate``; return tokens generated (up to the stop token)."""
    stops = set(stop_token_ids(model, tokenizer))
    total = 0
    for conversations in batches:
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        texts.sort(key=len, reverse=True)  # as HFGenerator does: similar lengths share a chunk
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False)
            out = model.generate(**batch, max_new_tokens=config.max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=sorted(stops),
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
            for row in out[:, batch["input_ids"].shape[1]:].tolist():  # [B, <= max_new_tokens]
                cut = next((k + 1 for k, token in enumerate(row) if token in stops), len(row))
                total += cut
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(tiny_base_dir()))
    parser.add_argument("--levels", type=int, default=32, help="ID test levels to play")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best time counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_policy(args.model, device="cpu")
    levels = load_levels(level_file("id_test"))[:args.levels]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=args.batch_size)
    run_episodes(generator, levels[:2], max_steps=1, generation_config=config, batch_size=2)  # warm-up

    # Alternate loop and raw runs and keep the best time of each (the machine is shared).
    loop_times, raw_times = [], []
    for _ in range(args.repeats):
        recorder = RecordingGenerator(generator)
        started = time.perf_counter()
        records = run_episodes(recorder, levels, max_steps=args.max_steps, history_len=1,
                               generation_config=config, batch_size=args.batch_size)
        loop_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        raw_tokens = raw_generate_tokens(model, tokenizer, recorder.batches, config, args.batch_size)
        raw_times.append(time.perf_counter() - started)
    loop_s, raw_s = min(loop_times), min(raw_times)
    loop_tokens = sum(r.num_generated_tokens for r in records)
    steps = sum(r.num_steps for r in records)

    print(f"model={args.model} params={sum(p.numel() for p in model.parameters()):,} threads={args.threads} "
          f"levels={len(levels)} batch_size={args.batch_size} max_steps={args.max_steps} "
          f"max_new_tokens={args.max_new_tokens} repeats={args.repeats} (best time of each)")
    print(f"agent loop : {steps} steps, {loop_tokens} tokens in {loop_s:.2f} s = {loop_tokens / loop_s:,.0f} tok/s "
          f"({steps / loop_s:.1f} steps/s)")
    print(f"raw generate: {raw_tokens} tokens in {raw_s:.2f} s = {raw_tokens / raw_s:,.0f} tok/s")
    print(f"loop overhead: {100 * (1 - (loop_tokens / loop_s) / (raw_tokens / raw_s)):.1f}% of raw throughput "
          f"(token counts equal: {loop_tokens == raw_tokens})")


if __name__ == "__main__":
    main()
