"""Benchmark: SFT throughput (trained tokens per second) of ``training.run_sft``.

Introduced with ``notebooks/04_resim_sft.ipynb``. Fine-tunes a model (default: the
shipped tiny base, the tiny preset's settings) for a fixed number of optimiser
steps on RESIM SFT data and prints tokens/second, counting every token of every
example fed to the model (prompt + a^ReSim, padding excluded) and, separately,
the assistant tokens the loss covers. Nothing is asserted; figures only::

    python benchmarks/bench_sft.py --data runs/dev/resim/id_train.jsonl
    python benchmarks/bench_sft.py --data X.jsonl --mode lora --steps 30 --threads 2

Without ``--data`` a small RESIM file is collected first (b and d of the preset).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model dir or hub id (default: the preset's)")
    parser.add_argument("--data", default=None, help="RESIM SFT JSONL (default: collect 40 id_train levels)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--mode", choices=("preset", "full", "lora", "qlora"), default="preset")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps timed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    import torch
    from transformers import TrainerCallback

    from dynamind_lite.config import get_preset
    from dynamind_lite.training import run_sft

    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    model = args.model or preset.model_name_or_path
    mode = {"preset": {}, "full": dict(full_finetune=True, load_in_4bit=False),
            "lora": dict(full_finetune=False, load_in_4bit=False),
            "qlora": dict(full_finetune=False, load_in_4bit=True)}[args.mode]

    class Meter(TrainerCallback):
        """Times the optimiser steps after the first (warm-up)."""

        def __init__(self):
            self.start = self.end = None

        def on_step_begin(self, args_, state, control, **kwargs):
            if state.global_step == 1:
                self.start = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            self.end = time.perf_counter()

    meter = Meter()
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as work:
        data = args.data
        if data is None:
            from dynamind_lite.collect import ResimConfig, collect_sft_data
            from dynamind_lite.envs.sokoban import load_levels
            from dynamind_lite.paths import level_file

            data = str(Path(work) / "resim.jsonl")
            collect_sft_data(load_levels(level_file("id_train"))[:40], data, ResimConfig.from_preset(preset),
                             progress=False)
        rows = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").splitlines() if line.strip()]
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        lengths = [len(tokenizer.apply_chat_template(r["messages"], return_dict=True)["input_ids"]) for r in rows]
        answer = [len(tokenizer(r["messages"][-1]["content"], add_special_tokens=False)["input_ids"]) + 1
                  for r in rows]
        result = run_sft(model, data, Path(work) / "out", preset=preset, sft_max_steps=args.steps + 1,
                         sft_save_steps=10 ** 6, callbacks=[meter], **mode)
        seconds = meter.end - meter.start
    per_step = preset.sft_batch_size * preset.sft_grad_accum
    examples = args.steps * per_step
    mean_len, mean_answer = sum(lengths) / len(lengths), sum(answer) / len(answer)
    print(json.dumps({
        "model": str(model), "mode": args.mode if args.mode != "preset" else
        ("full" if preset.full_finetune else "qlora" if preset.load_in_4bit else "lora"),
        "threads": args.threads, "timed_steps": args.steps, "examples_per_step": per_step,
        "seconds": round(seconds, 2), "examples_per_s": round(examples / seconds, 1),
        "tokens_per_s": round(examples * mean_len / seconds), "trained_tokens_per_s":
        round(examples * mean_answer / seconds), "mean_example_tokens": round(mean_len, 1),
        "final_loss": result.losses[-1][1],
    }, indent=1))


if __name__ == "__main__":
    main()
