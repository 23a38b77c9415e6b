"""Throughput of the ``"openai"`` generation backend on a local ``transformers serve``,
next to the in-process ``"hf"`` backend on the same model and prompts.

    python benchmarks/bench_openai_generator.py [--model data/models/tiny-base] [--requests 16]
                                                [--max-new-tokens 64] [--workers 1 4] [--threads 2]

Starts ``transformers serve MODEL`` on a free 127.0.0.1 port (start-up time is
the first line), sends the same batch of prompts through ``OpenAIGenerator``
with each ``--workers`` value, then through ``HFGenerator``. Greedy decoding;
tokens are the server's ``usage.completion_tokens``. Without ``--model`` (and
without a shipped tiny base model) a random tiny Qwen2 with the project
tokenizer is saved to a temporary folder first. Prints one line per
measurement; not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.openai_server, from a checkout

import torch  # noqa: E402

from dynamind_lite.generation import GenerationConfig, make_generator  # noqa: E402
from dynamind_lite.llm import ChatClient  # noqa: E402
from dynamind_lite.prompts import build_messages  # noqa: E402
from tests.openai_server import transformers_serve  # noqa: E402


def random_tiny_model(path: str) -> str:
    """A random tiny Qwen2 with the project tokenizer, saved at ``path`` (as tests/conftest.py makes it)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dynamind_lite.models.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="save_pretrained folder (default: tiny-base, else random)")
    parser.add_argument("--requests", type=int, default=16, help="conversations per measurement")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="OpenAIGenerator max_workers")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (server and in-process)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from dynamind_lite.paths import tiny_base_dir

            try:
                model = str(tiny_base_dir()) if (tiny_base_dir() / "config.json").is_file() else None
            except FileNotFoundError:
                model = None
        model = model or random_tiny_model(os.path.join(tmp, "random-tiny"))
        grid = "######\n#_O__#\n#_X__#\n#_P__#\n#____#\n######"
        conversations = [build_messages(grid.replace("P_", "_P") if i % 2 else grid, [], 0)
                         for i in range(args.requests)]
        config = GenerationConfig(max_new_tokens=args.max_new_tokens)

        with transformers_serve(os.path.abspath(model)) as server:
            print(f"transformers serve start-up: {server['startup_s']:.1f} s  ({' '.join(server['command'])})")
            client = ChatClient(server["base_url"], server["model"], timeout=120.0, max_retries=0)
            make_generator("openai", client=client).generate(conversations[:1], config)  # warm-up
            for workers in args.workers:
                generator = make_generator("openai", client=client, max_workers=workers)
                start = time.perf_counter()
                tokens = sum(g.num_tokens for g in generator.generate(conversations, config))
                elapsed = time.perf_counter() - start
                print(f"openai  workers={workers}: {args.requests / elapsed:6.1f} requests/s  "
                      f"{tokens / elapsed:7.0f} tokens/s  ({tokens} tokens, {elapsed:.2f} s)")

        from dynamind_lite.models import load_policy

        policy, tokenizer = load_policy(model, device="cpu")
        generator = make_generator("hf", model=policy, tokenizer=tokenizer, batch_size=args.requests)
        generator.generate(conversations[:1], config)  # warm-up
        start = time.perf_counter()
        tokens = sum(g.num_tokens for g in generator.generate(conversations, config))
        elapsed = time.perf_counter() - start
        print(f"hf      batch={args.requests}: {args.requests / elapsed:6.1f} requests/s  "
              f"{tokens / elapsed:7.0f} tokens/s  ({tokens} tokens, {elapsed:.2f} s)")


if __name__ == "__main__":
    main()
