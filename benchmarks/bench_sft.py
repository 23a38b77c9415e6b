"""Benchmark: SFT throughput of ``training.run_sft``'s trainer against a plain PyTorch loop.

Introduced with ``notebooks/04_resim_sft.ipynb``. Builds the trainer exactly as
``run_sft`` does (``training.make_sft_trainer``: TRL's SFTTrainer, the preset's
settings), takes the first ``--steps`` batches of its own dataloader, and times

1. the trainer: ``trainer.train()`` for those steps;
2. a plain loop on the *same* batches and the same fresh model: forward,
   backward, gradient clipping at 1.0, ``torch.optim.AdamW`` step.

It prints examples/s and tokens/s of both (tokens: every non-padding token fed
to the model; trained: the assistant tokens the loss covers), the padding share
of the batches and the ratio trainer / plain loop. Nothing is asserted; figures
only::

    python benchmarks/bench_sft.py --data runs/demo/seed-0/resim/train.jsonl
    python benchmarks/bench_sft.py --data X.jsonl --mode lora --steps 60 --threads 2
    python benchmarks/bench_sft.py --data X.jsonl --group-by-length   # batches of similar length (less padding)
    python benchmarks/bench_sft.py --data X.jsonl --fused-lm-head     # TRL's chunked LM head (the tiny preset's is off)
    python benchmarks/bench_sft.py --data X.jsonl --batch-size 8 --grad-accum 1 --no-sort-micro-batches
                                      # one random batch of 8 per step (the tiny preset sorts each step's 8
                                      # examples by length into 4 micro-batches of 2)
    python benchmarks/bench_sft.py --data X.jsonl --compile          # the plain loop on torch.compile(model)
    python benchmarks/bench_sft.py --data X.jsonl --autocast-bf16    # the plain loop under CPU bf16 autocast (AMX)
    python benchmarks/bench_sft.py --data X.jsonl --profile 10       # + where 10 plain-loop steps spend their time

Without ``--data`` a small RESIM file is collected first (the preset's levels, b and d).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model dir or hub id (default: the preset's)")
    parser.add_argument("--data", default=None, help="RESIM SFT JSONL (default: collect 200 training levels)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--mode", choices=("preset", "full", "lora", "qlora"), default="preset")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps timed (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--group-by-length", action="store_true", help="sft_group_by_length=True (less padding)")
    parser.add_argument("--fused-lm-head", action="store_true",
                        help="sft_fused_lm_head=True (TRL's chunked LM head; default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=None, help="sft_batch_size (default: the preset's)")
    parser.add_argument("--grad-accum", type=int, default=None, help="sft_grad_accum (default: the preset's)")
    parser.add_argument("--sort-micro-batches", action=argparse.BooleanOptionalAction, default=None,
                        help="sft_sort_micro_batches: a step's examples sorted by length into its micro-batches "
                             "(default: the preset's)")
    parser.add_argument("--compile", action="store_true",
                        help="time the plain loop on torch.compile(model, dynamic=True); the compile time, spent in "
                             "the warm-up steps, is printed apart")
    parser.add_argument("--autocast-bf16", action="store_true",
                        help="time the plain loop under torch.autocast('cpu', torch.bfloat16): fp32 weights and "
                             "optimiser, bf16 matrix products (AMX hosts run them in hardware)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="after the timed plain loop, profile this many more of its steps (torch.profiler) and "
                             "print the ops by their own CPU time")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    from dynamind_lite.config import get_preset
    from dynamind_lite.training import load_sft_dataset, make_sft_trainer, resolve_preset

    torch.set_num_threads(args.threads)
    mode = {"preset": {}, "full": dict(full_finetune=True, load_in_4bit=False),
            "lora": dict(full_finetune=False, load_in_4bit=False),
            "qlora": dict(full_finetune=False, load_in_4bit=True)}[args.mode]
    warmup = 5
    overrides = dict(sft_max_steps=warmup + args.steps, sft_save_steps=10 ** 6,
                     sft_group_by_length=args.group_by_length, **mode)
    if args.fused_lm_head:  # else the preset's own loss path
        overrides["sft_fused_lm_head"] = True
    if args.sort_micro_batches is not None:
        overrides["sft_sort_micro_batches"] = args.sort_micro_batches
    overrides.update({field: value for field, value in (("sft_batch_size", args.batch_size),
                                                        ("sft_grad_accum", args.grad_accum)) if value is not None})
    preset = resolve_preset(get_preset(args.preset), overrides)
    model = args.model or preset.model_name_or_path

    class Meter(TrainerCallback):
        """Times the optimiser steps after the warm-up."""

        def __init__(self):
            self.start = self.end = None

        def on_step_begin(self, args_, state, control, **kwargs):
            if state.global_step == warmup:
                self.start = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            self.end = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-sft-") as work:
        data = args.data
        if data is None:
            from dynamind_lite.collect import ResimConfig, collect_sft_data
            from dynamind_lite.envs.sokoban import load_levels
            from dynamind_lite.paths import level_file

            data = str(Path(work) / "resim.jsonl")
            collect_sft_data(load_levels(level_file(preset.resim_train_levels))[:200], data,
                             ResimConfig.from_preset(preset), progress=False)
        dataset = load_sft_dataset(data)

        # ---- 1. the trainer, exactly as run_sft builds it ------------------ #
        meter = Meter()
        trainer = make_sft_trainer(model, dataset, Path(work) / "out", preset, callbacks=[meter], progress=False)
        accum = preset.sft_grad_accum  # micro-batches per optimiser step
        batches = list(itertools.islice(iter(trainer.get_train_dataloader()), (warmup + args.steps) * accum))
        trainer.train()
        trainer_seconds = meter.end - meter.start

        # ---- 2. a plain loop on the same batches, same fresh model ------------ #
        plain = make_sft_trainer(model, dataset, Path(work) / "plain", preset, progress=False).model
        optimizer = torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad], lr=preset.sft_learning_rate)
        forward = torch.compile(plain, dynamic=True) if args.compile else plain

        def plain_step(step: int) -> None:
            micro_batches = batches[step * accum:(step + 1) * accum]
            trained = sum(int((b["labels"] != -100).sum()) for b in micro_batches)  # eq. (1) divides by these
            for batch in micro_batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
                    out = forward(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                                  labels=batch["labels"], num_items_in_batch=trained)
                out.loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        warm_started = time.perf_counter()
        for step in range(warmup):
            plain_step(step)
        warmup_seconds = time.perf_counter() - warm_started
        started = time.perf_counter()
        for step in range(warmup, warmup + args.steps):
            plain_step(step)
        plain_seconds = time.perf_counter() - started
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            batches += batches[:args.profile * accum]  # the first steps' batches again
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                for step in range(warmup + args.steps, warmup + args.steps + args.profile):
                    plain_step(step)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    timed = batches[warmup * accum:(warmup + args.steps) * accum]
    examples = sum(len(b["input_ids"]) for b in timed)
    tokens = sum(int(b["attention_mask"].sum()) for b in timed)
    padded = sum(b["input_ids"].numel() for b in timed)
    trained = sum(int((b["labels"] != -100).sum()) for b in timed)
    print(json.dumps({
        "model": str(model), "mode": args.mode if args.mode != "preset" else
        ("full" if preset.full_finetune else "qlora" if preset.load_in_4bit else "lora"),
        "threads": args.threads, "timed_steps": args.steps, "batch_size": preset.sft_batch_size,
        "grad_accum": preset.sft_grad_accum, "sorted_micro_batches": preset.sft_sort_micro_batches,
        "padding_share": round(1 - tokens / padded, 3),
        "trainer": {"seconds": round(trainer_seconds, 2), "examples_per_s": round(examples / trainer_seconds, 1),
                    "tokens_per_s": round(tokens / trainer_seconds), "trained_tokens_per_s":
                    round(trained / trainer_seconds)},
        "plain_loop": {"seconds": round(plain_seconds, 2), "examples_per_s": round(examples / plain_seconds, 1),
                       "tokens_per_s": round(tokens / plain_seconds), "compiled": args.compile,
                       "autocast_bf16": args.autocast_bf16,
                       "warmup_seconds": round(warmup_seconds, 1)},
        "trainer_over_plain": round(plain_seconds / trainer_seconds, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
