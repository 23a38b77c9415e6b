"""Dyna-GRPO: simulation improvement (SimRollout) alternating with policy improvement (GRPO).

Introduced in ``notebooks/06_dyna_grpo.ipynb``. ``train_rl(method="grpo")`` is
the +GRPO baseline (policy improvement only); ``method="dyna-grpo"`` alternates
the two phases of the paper (Sec. 3.2), on the same tasks and budget.

Simulation improvement, for each task (paper Sec. 3.2)::

    tau_1 .. tau_{G/2}      ~ pi_theta            standard episodes
    tau'_1 .. tau'_{G/2}    ~ SimRollout(pi_theta)   each step: a, plan, real futures, a^refine;
                                                     tau' = the refined responses under the ORIGINAL prompts
    A_i     = GRPO group advantage over {tau, tau'} (G episodes)              -> every step of tau and tau'
    A_refine(tau'_j) = 1 if tau'_j succeeded and R(tau'_j) > max(mean R(tau), mean R(tau'))
                       else 0                                                 -> every refine sample
                       (a^refine under s^refine, the prompt with the real future states)

Policy improvement: G standard episodes per task, plain GRPO (``dynamind_lite.grpo``).

Command line::

    python -m dynamind_lite rl --method dyna-grpo --init runs/demo/seed-0/distill --out runs/demo/seed-0/dyna_grpo

Where we depart from the paper, or choose where it is silent, and why:

- Schedule: ``dyna_sim_iterations`` simulation iterations, then
  ``dyna_policy_iterations`` policy iterations, repeated (the paper does not give
  its schedule). Default 1 and 1, strict alternation: at the tiny preset, seed 0,
  on ``id_val``, 1:1 gave 77% success / Sim Score 0.72 in 308 s and simulation
  improvement alone 76% / 0.72 in 376 s (DISTILL(RESIM): 78% / 0.72); 1:1 fits the
  5-minute budget, a simulation iteration costs ~1.7x a policy one.
- Budget: both methods play the same tasks (drawn from (seed, iteration)) with
  the same G episodes per task and the same number of iterations, so the same
  number of real episodes. SimRollout's plan execution runs from env snapshots
  and its refine responses cost extra generated tokens; the metrics report both
  (``env_steps``, ``generated_tokens``).
- The tiny policy cannot follow an instruction it never saw, so Stage 1 also
  teaches it the s^refine format (``collect.ResimConfig.refine``: a flawed draft,
  its real futures, and a^ReSim as the target). A 7B instruct model reads the
  refine prompt without that; the small and full presets leave it off.
- Each iteration reseeds every random stream from (seed, iteration), so a run
  resumed from a checkpoint continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dynamind_lite.config import Preset, parse_overrides
from dynamind_lite.evaluate import sim_score_summary
from dynamind_lite.generation import GenerationConfig
from dynamind_lite.grpo import Sample, episode_samples, group_advantages, grpo_samples, policy_update
from dynamind_lite.io import save_directory_atomic, write_jsonl_atomic
from dynamind_lite.progress import Progress
from dynamind_lite.rollout import EpisodeRecord, run_episodes
from dynamind_lite.worlds import SOKOBAN

METHODS = ("grpo", "dyna-grpo")
METRICS_FILE = "rl_metrics.jsonl"
"""Per-iteration metrics, one JSON object per line, in the output folder."""
CHECKPOINT_DIR = "checkpoint"
"""Resumable state (trainable weights, optimiser, iteration) inside the output folder."""

# =========================================================================== #
# The algorithm: A_refine, the two phases' samples, the schedule
# =========================================================================== #


def refine_advantage(success: bool, refine_return: float, mean_return_tau: float,
                     mean_return_tau_prime: float) -> float:
    """A_refine = 1 if tau'_refine succeeded and R(tau'_refine) > max(mean R(tau), mean R(tau')), else 0."""
    return 1.0 if success and refine_return > max(mean_return_tau, mean_return_tau_prime) else 0.0


def simulation_improvement_samples(standard: Sequence[EpisodeRecord],
                                   simrollout: Sequence[EpisodeRecord]) -> tuple[list[Sample], dict[str, float]]:
    """The samples of one task's simulation-improvement group (module docstring).

    standard: the G/2 episodes tau; simrollout: the G/2 SimRollout episodes (their
    steps hold a^refine under the original prompt, i.e. tau', and the refine
    prompt in ``step.refinement``). Returns the samples with A != 0 and counts.
    """
    returns = torch.tensor([e.total_reward for e in [*standard, *simrollout]])
    advantages = group_advantages(returns).tolist()  # A over the group {tau, tau'}
    samples: list[Sample] = []
    for episode, a in zip(standard, advantages[:len(standard)]):
        if a != 0.0:
            samples += episode_samples(episode, a, "tau")
    for episode, a in zip(simrollout, advantages[len(standard):]):
        if a != 0.0:
            samples += episode_samples(episode, a, "tau_prime")  # key "tau_prime:<id>": its own trajectory
    mean_tau = sum(e.total_reward for e in standard) / len(standard)
    mean_tau_prime = sum(e.total_reward for e in simrollout) / len(simrollout)
    refine_rewarded = 0
    for episode in simrollout:
        a_refine = refine_advantage(episode.success, episode.total_reward, mean_tau, mean_tau_prime)
        if a_refine:
            refine_rewarded += 1
            samples += [Sample(step.refinement.messages, step.response, step.finish_reason != "length", a_refine,
                               "refine", f"refine:{id(episode)}")
                        for step in episode.steps if step.refinement and step.refinement.refined]
    return samples, {"refine_rewarded_episodes": refine_rewarded}


def phase_of(method: str, iteration: int, preset: Preset) -> str:
    """``"policy"`` or ``"simulation"`` for a 0-based iteration: GRPO is always
    policy improvement; Dyna-GRPO cycles sim, then policy iterations."""
    if method == "grpo":
        return "policy"
    cycle = preset.dyna_sim_iterations + preset.dyna_policy_iterations
    return "simulation" if iteration % cycle < preset.dyna_sim_iterations else "policy"


def iteration_tasks(levels: Sequence[dict], seed: int, iteration: int, count: int) -> list[dict]:
    """The tasks of one iteration, a function of (seed, iteration) only: both methods
    see the same tasks, and a resumed run sees what the uninterrupted one saw."""
    return random.Random(f"rl-tasks:{seed}:{iteration}").sample(list(levels), count)


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of every other random stream of one iteration (sampling, dropout)."""
    return (seed * 1_000_003 + iteration * 7_919) % (2 ** 31)


# =========================================================================== #
# Plumbing: model, generator, checkpoints, metrics
# =========================================================================== #


@dataclass
class RLResult:
    """What ``train_rl`` produced: the merged model folder, its metrics file, the metrics rows."""

    model_dir: str
    metrics_file: str
    metrics: list[dict[str, Any]]
    resumed_from_iteration: int


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(out: Path, model, optimizer, iteration: int, metrics: list[dict]) -> None:
    """Trainable weights, optimiser state and the iteration count, atomically (the folder swaps in whole)."""
    def write(folder: Path) -> None:
        torch.save(_trainable_state(model), folder / "trainable.pt")
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        (folder / "state.json").write_text(json.dumps({"iteration": iteration, "num_metrics": len(metrics)}))

    save_directory_atomic(out / CHECKPOINT_DIR, write)


def load_checkpoint(out: Path, model, optimizer) -> int:
    """Restore a checkpoint written by ``save_checkpoint``; returns the iterations it had done (0: none)."""
    folder = out / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        return 0
    state = torch.load(folder / "trainable.pt", map_location="cpu")
    missing = [name for name, p in model.named_parameters() if p.requires_grad and name not in state]
    if missing:
        raise ValueError(f"checkpoint {folder} does not match the model (missing {missing[:3]}...); "
                         "delete it to start over")
    model.load_state_dict(state, strict=False)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu"))
    return int(json.loads((folder / "state.json").read_text())["iteration"])


def _read_metrics(path: Path, count: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:count]


def _save_final(out: Path, merged, tokenizer) -> None:
    """The merged policy into ``out`` itself (config.json last: the folder is loadable only when complete)."""
    final = Path(save_directory_atomic(out / ".final", lambda folder: (merged.save_pretrained(folder),
                                                                        tokenizer.save_pretrained(folder))))
    files = sorted(final.iterdir(), key=lambda p: p.name == "config.json")
    for path in files:
        os.replace(path, out / path.name)
    final.rmdir()


def _episode_metrics(episodes: Sequence[EpisodeRecord]) -> dict[str, float]:
    steps = sum(e.num_steps for e in episodes)
    return {"success": sum(e.success for e in episodes) / len(episodes),
            "mean_return": sum(e.total_reward for e in episodes) / len(episodes),
            "tokens_per_step": sum(e.num_generated_tokens for e in episodes) / max(steps, 1),
            "invalid_rate": sum(e.num_invalid_actions for e in episodes) / max(steps, 1)}


# =========================================================================== #
# The training run
# =========================================================================== #


def validate_rl_arguments(method: str, init: str | os.PathLike, out: str | os.PathLike, iterations: int | None,
                          seed: int, preset: Preset | None = None) -> None:
    """ValueError / FileNotFoundError naming the bad argument, before anything heavy runs."""
    from dynamind_lite.models.loader import check_model_source

    if method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}, got {method!r}")
    check_model_source(init)
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if iterations is not None and (not isinstance(iterations, int) or iterations < 1):
        raise ValueError(f"--iterations must be an integer >= 1, got {iterations!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"--seed must be an integer, got {seed!r}")
    if preset is not None and preset.generation_backend == "openai":
        raise ValueError("RL needs the policy's own weights for rollouts: use generation_backend 'hf' or 'vllm'")
    if preset is not None and preset.generation_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("generation_backend 'vllm' needs vLLM (GPU only): pip install 'dynamind-lite[vllm]', "
                         "or --set generation_backend=hf")


def train_rl(method: str, init: str | os.PathLike, out: str | os.PathLike, preset: Preset | str = "tiny",
             seed: int = 0, iterations: int | None = None, progress: bool = True, accelerator=None,
             world: Any = None, levels: Sequence[dict] | None = None, **overrides) -> RLResult:
    """Run GRPO or Dyna-GRPO from the policy at ``init``; write the merged policy and metrics to ``out``.

    Introduced in ``notebooks/06_dyna_grpo.ipynb``.

    Args:
        method: ``"grpo"`` or ``"dyna-grpo"``.
        init: the starting (distilled) policy, a ``save_pretrained`` folder; also pi_ref.
        out: output folder: the merged policy (loadable by ``evaluate``),
            ``rl_metrics.jsonl`` and ``checkpoint/``.
        preset: a Preset or its name; the ``rl_*``, ``dyna_*``, ``lora_*``,
            ``full_finetune``, ``max_new_tokens``, ``history_len``, ``device``, ``dtype`` fields.
        seed: seeds tasks, sampling and dropout (per iteration).
        iterations: overrides ``rl_iterations``.
        accelerator: an ``accelerate.Accelerator`` under ``accelerate launch`` (the
            tasks of each iteration are split over its processes), else None.
        world, levels: another world (``dynamind_lite.worlds``, e.g. ALFWORLD in
            ``notebooks/08_alfworld.ipynb``) and its training levels; default
            Sokoban and the preset's ``rl_train_levels``.
        **overrides: preset fields, e.g. ``rl_tasks=2``.

    A run finding a checkpoint in ``out`` resumes from it.
    """
    from dynamind_lite.envs.sokoban import load_levels
    from dynamind_lite.generation import make_generator
    from dynamind_lite.models.loader import load_policy
    from dynamind_lite.paths import level_file
    from dynamind_lite.training import lora_settings, merged_model, resolve_preset

    # ---- validate everything before loading anything heavy ---------------- #
    preset = resolve_preset(preset, overrides)
    validate_rl_arguments(method, init, out, iterations, seed, preset)
    total = iterations or preset.rl_iterations
    world = SOKOBAN if world is None else world
    if levels is None:
        levels = load_levels(level_file(preset.rl_train_levels), canvas=preset.board_canvas)
    levels = list(levels)[preset.rl_train_offset:]
    if len(levels) < preset.rl_tasks:
        raise ValueError(f"the RL training levels ({preset.rl_train_levels!r} unless given) are {len(levels)} after "
                         f"offset {preset.rl_train_offset}, fewer than rl_tasks={preset.rl_tasks}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, num_processes = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    if accelerator is not None and accelerator.distributed_type.name not in ("NO", "MULTI_GPU", "MULTI_CPU"):
        raise ValueError(f"the RL update keeps a full replica per process and sums its gradients "
                         f"(grpo.sum_gradients_over_processes): launch it with a data-parallel config such as "
                         f"configs/accelerate/ddp_8gpu.yaml, not {accelerator.distributed_type.name}")

    # ---- pi_theta (trainable), pi_ref (frozen start), optimiser ----------- #
    device = None if preset.device == "auto" else preset.device
    if accelerator is not None:
        device = str(accelerator.device)
    torch.manual_seed(seed)
    model, tokenizer = load_policy(init, lora=lora_settings(preset), load_in_4bit=preset.load_in_4bit,
                                   dtype=preset.dtype, device=device)
    ref_model = None
    if preset.rl_beta and lora_settings(preset) is None:  # full fine-tuning: a frozen copy is pi_ref
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=preset.rl_learning_rate,
                                  weight_decay=0.0)
    done = load_checkpoint(out, model, optimizer)
    metrics = _read_metrics(out / METRICS_FILE, done)
    if preset.generation_backend == "vllm":  # GPU: vLLM samples, the trained weights are synced after each update
        generator = make_generator("vllm", model=str(init))
        sync_weights = generator.sync_weights
    else:
        generator = make_generator("hf", model=model, tokenizer=tokenizer, batch_size=preset.eval_batch_size)
        sync_weights = None

    bar = Progress(total, f"RL {method}", unit="iteration", bar=progress and rank == 0)
    bar.update(done)
    for iteration in range(done, total):
        phase = phase_of(method, iteration, preset)
        tasks = iteration_tasks(levels, seed, iteration, preset.rl_tasks)[rank::num_processes]  # this process's share
        torch.manual_seed(iteration_seed(seed, iteration) + rank)
        config = GenerationConfig(max_new_tokens=preset.max_new_tokens, temperature=preset.rl_temperature,
                                  do_sample=True, seed=iteration_seed(seed, iteration) + 7 * rank)
        group = preset.rl_group_size
        started = time.perf_counter()

        # ---- rollouts: G episodes per task (sim phase: G/2 SimRollout) ---- #
        simrollout_flags = [phase == "simulation" and k >= group // 2 for _ in tasks for k in range(group)]
        episodes = run_episodes(generator, [task for task in tasks for _ in range(group)],
                                max_steps=preset.rl_max_steps, history_len=preset.history_len,
                                generation_config=config, batch_size=preset.eval_batch_size,
                                seed=config.seed, simrollout=simrollout_flags, world=world)
        groups = [episodes[i * group:(i + 1) * group] for i in range(len(tasks))]
        rollout_seconds = time.perf_counter() - started

        # ---- samples with advantages ------------------------------------- #
        extra: dict[str, float] = {}
        if phase == "policy":
            samples, _ = grpo_samples(groups)
            standard = episodes
        else:
            samples, standard = [], []
            for episodes_of_task in groups:
                task_samples, counts = simulation_improvement_samples(episodes_of_task[:group // 2],
                                                                      episodes_of_task[group // 2:])
                samples += task_samples
                standard += episodes_of_task[:group // 2]
                for key, value in counts.items():
                    extra[key] = extra.get(key, 0) + value
            simrollouts = [e for g in groups for e in g[group // 2:]]
            extra.update({f"simrollout_{k}": v for k, v in _episode_metrics(simrollouts).items()})
            extra["refine_samples"] = sum(s.kind == "refine" for s in samples)

        # ---- policy update: mu steps of the GRPO loss --------------------- #
        started_update = time.perf_counter()
        stats = policy_update(model, optimizer, tokenizer, samples, epsilon=preset.rl_clip_epsilon,
                              beta=preset.rl_beta, mu=preset.rl_mu, micro_batch_size=preset.rl_micro_batch_size,
                              ref_model=ref_model, accelerator=accelerator)
        if sync_weights is not None:
            sync_weights(model)
        update_seconds = time.perf_counter() - started_update

        row = {"iteration": iteration + 1, "phase": phase, **_episode_metrics(standard),
               "sim_score": sim_score_summary(standard, world)["sim_score"],
               "env_steps": sum(e.num_steps for e in episodes)
               + sum(len(s.refinement.futures) for e in episodes for s in e.steps if s.refinement),
               "generated_tokens": sum(e.num_generated_tokens for e in episodes),
               "samples": stats.num_samples, "loss": stats.loss, "kl": stats.kl, "entropy": stats.entropy,
               "clip_fraction": stats.clip_fraction, **extra,
               "seconds": {"rollout": round(rollout_seconds, 2), "update": round(update_seconds, 2)}}
        metrics.append(row)
        if rank == 0:
            write_jsonl_atomic(out / METRICS_FILE, metrics)
            if (iteration + 1) % preset.rl_checkpoint_every == 0 or iteration + 1 == total:
                save_checkpoint(out, model, optimizer, iteration + 1, metrics)
        bar.update(1, success=round(row["success"], 3), kl=round(stats.kl, 4))
    bar.close()
    if rank == 0:
        _save_final(out, merged_model(model, preset, str(init), device, out), tokenizer)
    return RLResult(model_dir=str(out), metrics_file=str(out / METRICS_FILE), metrics=metrics,
                    resumed_from_iteration=done)


# =========================================================================== #
# Command line
# =========================================================================== #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dynamind_lite rl",
                                     description="GRPO or Dyna-GRPO from a distilled policy (Stage 2).")
    parser.add_argument("--method", required=True, choices=METHODS, help="grpo (policy improvement only) or "
                        "dyna-grpo (simulation and policy improvement alternating)")
    parser.add_argument("--init", required=True, help="starting policy: a save_pretrained folder "
                        "(e.g. runs/<name>/distill); it is also pi_ref")
    parser.add_argument("--out", required=True, help="output folder: merged policy, rl_metrics.jsonl, checkpoint/")
    parser.add_argument("--preset", default="tiny", help="tiny, small or full")
    parser.add_argument("--seed", type=int, default=0, help="seed of tasks, sampling and dropout")
    parser.add_argument("--iterations", type=int, default=None, help="RL iterations (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a preset field, e.g. --set rl_tasks=4 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamind_lite rl``: 0 on success, 2 on a bad argument."""
    from dynamind_lite.training import resolve_preset

    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        preset = resolve_preset(args.preset, parse_overrides(args.set))
        validate_rl_arguments(args.method, args.init, args.out, args.iterations, args.seed, preset)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    accelerator = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under accelerate launch / torchrun
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())  # on CPUs: gloo (MULTI_CPU), not N lone runs
    result = train_rl(args.method, args.init, args.out, preset, seed=args.seed, iterations=args.iterations,
                      progress=not args.no_progress, accelerator=accelerator)
    if accelerator is None or accelerator.is_main_process:
        last = result.metrics[-1] if result.metrics else {}
        print(json.dumps({"model_dir": result.model_dir, "metrics_file": result.metrics_file,
                          "num_processes": accelerator.num_processes if accelerator else 1,
                          "iterations": len(result.metrics), "last": last}, indent=2))
    return 0
