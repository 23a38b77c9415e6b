"""Build the tiny base model ``data/models/tiny-base`` (deterministic, CPU, minutes).

Introduced in ``notebooks/04_resim_sft.ipynb`` (the tiny preset's stand-in for
the paper's instruct base model, Qwen2.5-7B-Instruct)::

    python scripts/build_tiny_base.py                      # -> data/models/tiny-base
    python scripts/build_tiny_base.py --out /tmp/tb --episodes 300

Algorithm, top to bottom:

1. The domain tokenizer (``dynamind_lite.models.build_tokenizer``) and a
   randomly initialised Qwen2-architecture causal LM (a few hundred thousand
   to a few million parameters, tied embeddings), seeded.
2. ReAct-style play: a noisy solver (the optimal move with probability
   1 - epsilon, a random move otherwise; ``search.NoisySolverPolicy``) plays
   training levels (by default 630 drawn from ``id_train``: 6x6 boards, one box,
   never an 8x8 board with two boxes, never a test level; ``--levels mix_train
   --canvas 8`` plays the multi-style mix on the fixed canvas instead); each
   decision becomes a chat example ``build_messages(s_t, history, h)`` +
   ``<think>one sentence</think><answer>a_t</answer>``, with h drawn in
   [1, --max-history] so prompts show several real (state, action, next state)
   transitions, blocked moves (the state does not change) included.
3. Pre-training with TRL's SFTTrainer (``training.run_sft``, full fine-tuning,
   loss on the whole sequence, not only the answer): the model learns the
   format, to read and copy grids, the dynamics shown in the history and a
   noisy policy. It starts Stage 1 as a weak agent, like the paper's base model.
4. ``save_pretrained`` (safetensors) into ``--out`` atomically, so every later
   stage loads it by path exactly like a hub model.

Departures from the paper: the paper starts from a pre-trained 7B instruct
model; a from-scratch model of a few million parameters has no language or
world knowledge, so this short pre-training on play gives it the format and a
little world knowledge instead. Same seed, same arguments, same thread count ->
the same weights.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from dynamind_lite.envs.sokoban import SokobanEnv, load_levels, parse_level
from dynamind_lite.io import save_pretrained_atomic, write_jsonl_atomic
from dynamind_lite.paths import level_file, tiny_base_dir
from dynamind_lite.prompts import build_messages
from dynamind_lite.response import format_response
from dynamind_lite.search import NoisySolverPolicy

ARCHITECTURE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=8,
                    num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True)
"""Qwen2 config of the tiny base model (about 0.85M parameters, ~3.4 MB in float32)."""

_DIRECTION = {"Up": (-1, 0), "Down": (1, 0), "Left": (0, -1), "Right": (0, 1)}
_WHERE = {"Up": "above me", "Down": "below me", "Left": "to my left", "Right": "to my right"}


def reasoning(grid: str, action: str) -> str:
    """One short ReAct sentence for ``action`` in ``grid`` (phrases of ``tokenizer.REASONING_PHRASES``)."""
    level = parse_level(grid)
    dr, dc = _DIRECTION[action]
    ahead = (level.player[0] + dr, level.player[1] + dc)
    if ahead in level.boxes:
        return f"The box is {_WHERE[action]}, so I push it {action.lower()}."
    return f"I move {action.lower()} toward the box."


def play_examples(levels: list[dict], epsilon: float, max_history: int, seed: int) -> list[dict]:
    """Noisy-solver episodes -> ReAct chat examples (step 2). Deterministic in ``seed``."""
    rng = random.Random(seed)
    policy = NoisySolverPolicy(epsilon)
    rows = []
    for level in levels:
        env = SokobanEnv(max_steps=30, size=tuple(level["size"]), num_boxes=level["num_boxes"])
        observation, _ = env.reset(options={"grid": level["grid"]})
        history: list[tuple[str, str]] = []
        done = False
        while not done:
            action = policy(observation, rng)
            response = format_response(reasoning(observation, action), action)
            messages = build_messages(observation, history, rng.randint(1, max_history))
            rows.append({"messages": messages + [{"role": "assistant", "content": response}]})
            history.append((observation, action))
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    return rows


def build_tiny_base(out: str | Path, levels: str = "id_train", num_levels: int = 630, epsilon: float = 0.3,
                    max_history: int = 4, epochs: float = 1.0, learning_rate: float = 3e-3, batch_size: int = 16,
                    seed: int = 0, canvas: int = 0, architecture: dict | None = None) -> Path:
    """Steps 1-4 above; returns ``out``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dynamind_lite.models import build_tokenizer
    from dynamind_lite.training import run_sft

    # ---- 1. tokenizer + random Qwen2 model ------------------------------- #
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, **(architecture or ARCHITECTURE))
    model = Qwen2ForCausalLM(config)
    print(f"tiny base: {sum(p.numel() for p in model.parameters()):,} parameters", flush=True)

    # ---- 2. ReAct-style noisy-solver play on training levels ------------- #
    played = random.Random(seed).sample(load_levels(level_file(levels), canvas=canvas), num_levels)  # all families
    started = time.perf_counter()
    rows = play_examples(played, epsilon, max_history, seed)
    print(f"play data: {len(rows)} examples from {len(played)} levels in {time.perf_counter() - started:.1f}s",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="tiny-base-") as work:
        init_dir, data_file = Path(work) / "init", Path(work) / "play.jsonl"
        model.save_pretrained(init_dir)
        tokenizer.save_pretrained(init_dir)
        write_jsonl_atomic(data_file, rows)

        # ---- 3. pre-training: whole-sequence loss, all weights ------------ #
        started = time.perf_counter()
        result = run_sft(init_dir, data_file, Path(work) / "train", preset="tiny", seed=seed,
                         assistant_only_loss=False, full_finetune=True, sft_epochs=epochs,
                         sft_learning_rate=learning_rate, sft_batch_size=batch_size, sft_grad_accum=1,
                         sft_warmup_ratio=0.05, sft_save_steps=1_000_000, sft_max_seq_len=1024)
        losses = [loss for _, loss in result.losses] or [float("nan")]
        print(f"pre-training: {result.global_step} steps in {time.perf_counter() - started:.1f}s, "
              f"loss {losses[0]:.3f} -> {sum(losses[-10:]) / min(10, len(losses)):.3f}", flush=True)

        # ---- 4. save like a hub model ------------------------------------ #
        from dynamind_lite.models import load_policy

        trained, trained_tokenizer = load_policy(result.model_dir, device="cpu", dtype="float32")
        trained_tokenizer.padding_side = "right"  # as built; load_policy sets left padding on load
        return save_pretrained_atomic(trained, trained_tokenizer, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(tiny_base_dir()), help="output directory (save_pretrained)")
    parser.add_argument("--levels", default="id_train", help="level split played (data/sokoban/<levels>.jsonl)")
    parser.add_argument("--num-levels", type=int, default=630, help="levels played, drawn from --levels")
    parser.add_argument("--epsilon", type=float, default=0.3, help="random-move rate of the noisy solver")
    parser.add_argument("--canvas", type=int, default=0, help="boards are played on this fixed canvas (0: as they are)")
    parser.add_argument("--max-history", type=int, default=4, help="h is drawn in [1, this] per example")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = build_tiny_base(args.out, args.levels, args.num_levels, args.epsilon, args.max_history, args.epochs,
                          args.lr, args.batch_size, args.seed, args.canvas)
    print(f"saved {out} in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
