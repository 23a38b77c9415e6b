"""Benchmark: one RL iteration at the tiny preset, phase by phase, and rollout generation speed.

Introduced with ``notebooks/06_dyna_grpo.ipynb``. Plays one iteration's episodes
(``rl_tasks`` tasks x G, sampled at ``rl_temperature``, as ``dyna_grpo.train_rl``
does; ``--phase simulation`` plays half of them as SimRollout episodes), then:

1. **generation**: time inside ``generator.generate`` during the rollouts;
2. **env**: the rest of the rollout loop (stepping, prompts, plan execution);
3. **log-probs**: one no-grad forward pass over every training sample (the
   cost of pi_old or pi_ref);
4. **update**: ``grpo.policy_update`` (mu optimiser steps, KL pass included);
5. **raw generate**: every prompt the rollouts generated for, again, in full
   batches of ``--batch-size`` straight through ``HFGenerator.generate`` (no
   agent loop, no shrinking batches): generated tokens/s of the rollouts divided
   by this is the rollout efficiency.

Nothing is asserted; figures only::

    python benchmarks/bench_rl.py
    python benchmarks/bench_rl.py --phase simulation --threads 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time


class TimedGenerator:
    """Wraps a Generator: seconds spent and tokens generated, and every prompt seen."""

    def __init__(self, generator):
        self.generator = generator
        self.seconds = 0.0
        self.tokens = 0
        self.prompts: list = []

    def generate(self, conversations, config):
        started = time.perf_counter()
        out = self.generator.generate(conversations, config)
        self.seconds += time.perf_counter() - started
        self.tokens += sum(g.num_tokens for g in out)
        self.prompts += list(conversations)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="policy dir (default: data/models/tiny-distill)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--phase", choices=("policy", "simulation"), default="policy")
    parser.add_argument("--batch-size", type=int, default=64, help="raw generate batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from dynamind_lite.config import get_preset
    from dynamind_lite.dyna_grpo import iteration_tasks, simulation_improvement_samples
    from dynamind_lite.envs.sokoban import load_levels
    from dynamind_lite.generation import GenerationConfig, make_generator
    from dynamind_lite.grpo import (collate, grpo_samples, micro_batches, policy_update, sequence_log_probs,
                                    tokenize_samples)
    from dynamind_lite.models.loader import load_policy
    from dynamind_lite.paths import level_file, tiny_distill_dir
    from dynamind_lite.rollout import run_episodes

    torch.set_num_threads(args.threads)
    cfg = get_preset(args.preset)
    model, tokenizer = load_policy(args.model or tiny_distill_dir(), dtype=cfg.dtype,
                                   device=None if cfg.device == "auto" else cfg.device)
    generator = TimedGenerator(make_generator("hf", model=model, tokenizer=tokenizer, batch_size=cfg.eval_batch_size))
    config = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.rl_temperature, do_sample=True,
                              seed=args.seed)
    G = cfg.rl_group_size
    tasks = iteration_tasks(load_levels(level_file(cfg.rl_train_levels)), args.seed, 0, cfg.rl_tasks)

    started = time.perf_counter()
    episodes = run_episodes(generator, [t for t in tasks for _ in range(G)], max_steps=cfg.rl_max_steps,
                            history_len=cfg.history_len, generation_config=config, batch_size=cfg.eval_batch_size,
                            seed=args.seed, simrollout=[args.phase == "simulation" and k >= G // 2
                                                        for _ in tasks for k in range(G)])
    rollout_s = time.perf_counter() - started
    groups = [episodes[i * G:(i + 1) * G] for i in range(len(tasks))]
    if args.phase == "policy":
        samples, _ = grpo_samples(groups)
    else:
        samples = [s for g in groups for s in simulation_improvement_samples(g[:G // 2], g[G // 2:])[0]]

    started = time.perf_counter()
    batches = [collate(b, tokenizer.pad_token_id, "cpu")
               for b in micro_batches(tokenize_samples(tokenizer, samples), cfg.rl_micro_batch_size)]
    with torch.no_grad():
        for batch in batches:
            sequence_log_probs(model, batch)
    logprob_s = time.perf_counter() - started

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.rl_learning_rate)
    ref_model = copy.deepcopy(model).eval() if cfg.rl_beta and cfg.full_finetune else None
    started = time.perf_counter()
    stats = policy_update(model, optimizer, tokenizer, samples, epsilon=cfg.rl_clip_epsilon, beta=cfg.rl_beta,
                          mu=cfg.rl_mu, micro_batch_size=cfg.rl_micro_batch_size, ref_model=ref_model)
    update_s = time.perf_counter() - started

    raw = make_generator("hf", model=model.eval(), tokenizer=tokenizer, batch_size=args.batch_size)
    started = time.perf_counter()
    raw_tokens = sum(g.num_tokens for g in raw.generate(generator.prompts, dataclasses.replace(config, seed=1)))
    raw_s = time.perf_counter() - started

    rollout_tps = generator.tokens / rollout_s
    print(json.dumps({
        "phase": args.phase, "episodes": len(episodes), "steps": sum(e.num_steps for e in episodes),
        "samples": stats.num_samples, "response_tokens_trained": stats.num_tokens, "threads": args.threads,
        "seconds": {"rollout_total": round(rollout_s, 2), "generation": round(generator.seconds, 2),
                    "env_and_loop": round(rollout_s - generator.seconds, 2), "log_probs_pass": round(logprob_s, 2),
                    "update": round(update_s, 2)},
        "rollout_generated_tokens_per_s": round(rollout_tps, 1),
        "raw_generate_tokens_per_s": round(raw_tokens / raw_s, 1),
        "rollout_vs_raw": round(rollout_tps / (raw_tokens / raw_s), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
