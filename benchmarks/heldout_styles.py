"""Generalisation of distilled policies, per generator style and per optimal solution length (not a test).

    python benchmarks/heldout_styles.py --models runs/demo/seed-0/distill
    python benchmarks/heldout_styles.py --models runs/seed0/distill runs/seed1/distill runs/seed2/distill --out runs/heldout.json
    python benchmarks/heldout_styles.py --merge runs/variant-x-s0/heldout.json runs/variant-x-s1/heldout.json

This script plays, with the evaluate command's code (greedy, step budget 30),
the shipped test sets (``data/sokoban/README.md`` says how each was made):

| split | style | boards | in the tiny preset's training (``id_train``) | in ``mix_train`` (small, full) |
|---|---|---|---|---|
| ``id_test`` | reverse_play | 6x6, 1 box | the style and size, not the levels | the style and size |
| ``style_test_room_carving`` | room_carving | 6x6, 1 box | **no**: another generator | the style and size |
| ``style_test_random_placement`` | random_placement | 6x6, 1 box | **no** | **no**: the held-out style |
| ``ood_test`` | reverse_play | 8x8, 2 boxes | **no**: no 8x8 board at all | **no** 8x8 board with 2 boxes |

and prints, per split, success (mean over the given models, i.e. seeds, with the
min-max spread), Sim Score, cell accuracy and invalid-action rate, then success
per optimal solution length, then where the decisions go wrong: the share of
steps played from a state that can no longer be solved, and over the others
the share whose response simulates every state exactly, how often the move
played starts an optimal solution (``evaluate.step_is_optimal``) after an exact
simulation and after a wrong one, and, after an exact one, how often some
rollout starts with an optimal move (when it does and the move played is not
optimal, the written values picked the wrong rollout). ``--merge`` prints the
same tables from earlier ``--out`` files, e.g. one per seed of a variant. ``--out`` writes every number as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict

SPLITS = {
    "id_test": "reverse_play 6x6/1 (ID)",
    "style_test_room_carving": "room_carving 6x6/1",
    "style_test_random_placement": "random_placement 6x6/1 (held out from every preset)",
    "ood_test": "reverse_play 8x8/2 (OOD)",
}


def spread(values: list[float]) -> str:
    """``mean [min, max]`` in percent."""
    return f"{100 * statistics.mean(values):.1f} [{100 * min(values):.0f}, {100 * max(values):.0f}]"


def decision_quality(records) -> dict[str, float | None]:
    """Where the decisions of ``records`` go wrong.

    ``dead_share``: steps played from a state that can no longer be solved (a box
    stuck): no move there is right, and failed episodes spend their budget there.
    The rest is measured over the steps from solvable states, split by their
    simulation: ``exact_share`` (every state the response simulates equals the real
    one); the optimal-move rate after an exact simulation (``optimal_if_exact``) and
    after a wrong or missing one (``optimal_if_wrong``); ``optimal_rolled_out_if_exact``:
    after an exact simulation, how often one of the rollouts starts with an optimal
    move (so ``optimal_rolled_out_if_exact - optimal_if_exact`` is the share where the
    written values chose the wrong rollout). None where no step falls in the group."""
    from dynamind_lite.envs.sokoban import solution_length
    from dynamind_lite.evaluate import all_states_exact, step_is_optimal
    from dynamind_lite.response import parse_rollouts

    dead = 0
    optimal: dict[bool, list[bool]] = {True: [], False: []}
    rolled_out: list[bool] = []  # exact steps: an optimal first move among the rollouts
    for record in records:
        for step in record.steps:
            if solution_length(step.observation) is None:
                dead += 1
                continue
            exact = bool(all_states_exact(step.response, step.observation))
            optimal[exact].append(step_is_optimal(step.observation, step.action))
            if exact:
                firsts = {r.actions[0] for r in parse_rollouts(step.response) if r.actions}
                rolled_out.append(any(step_is_optimal(step.observation, a) for a in firsts))
    solvable = len(optimal[True]) + len(optimal[False])
    return {"dead_share": dead / (dead + solvable) if dead + solvable else 0.0,
            "exact_share": len(optimal[True]) / solvable if solvable else 0.0,
            **{f"optimal_if_{name}": statistics.mean(optimal[key]) if optimal[key] else None
               for name, key in (("exact", True), ("wrong", False))},
            "optimal_rolled_out_if_exact": statistics.mean(rolled_out) if rolled_out else None}


def print_tables(results: dict[str, dict[str, list]], level_counts: dict[str, int], models: int, cpu: str,
                 max_steps: int) -> None:
    """The tables on stdout: ``results[split][metric]`` holds one entry per model."""
    print(f"\n{models} model(s); CPU: {cpu}; greedy, step budget {max_steps}\n")
    print("| split | levels | success % (mean [min, max]) | Sim Score | cell acc. | invalid % |")
    print("|---|---|---|---|---|---|")
    for split, r in results.items():
        print(f"| {SPLITS.get(split, split)} | {level_counts[split]} | {spread(r['success_rate'])} "
              f"| {statistics.mean(r['sim_score']):.2f} | {statistics.mean(r['sim_cell_accuracy']):.3f} "
              f"| {100 * statistics.mean(r['invalid_action_rate']):.1f} |")
    print("\nSuccess % by optimal solution length (mean over models):\n")
    lengths = sorted({int(n) for r in results.values() for per in r["by_length"] for n in per})
    print("| split | " + " | ".join(str(n) for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for split, r in results.items():
        cells = []
        for n in lengths:
            values = [per[n] for per in r["by_length"] if n in per]
            cells.append(f"{100 * statistics.mean(values):.0f}" if values else "")
        print(f"| {split} | " + " | ".join(cells) + " |")
    print("\nDecisions (mean over models): steps from a state that can no longer be solved; then, over the")
    print("steps from solvable states: those whose simulated states are all exact, the share of moves that")
    print("start an optimal solution after an exact and after a wrong simulation, and after an exact one how")
    print("often some rollout starts with an optimal move (the written values then pick the move):\n")
    print("| split | dead-state steps % | exact simulation % | optimal move % if exact | optimal move % if wrong "
          "| optimal move rolled out % if exact |")
    print("|---|---|---|---|---|---|")
    for split, r in results.items():
        cells = []
        for key in ("dead_share", "exact_share", "optimal_if_exact", "optimal_if_wrong",
                    "optimal_rolled_out_if_exact"):
            values = [d.get(key) for d in r["decisions"]]
            values = [v for v in values if v is not None]
            cells.append(f"{100 * statistics.mean(values):.0f}" if values else "-")
        print(f"| {split} | " + " | ".join(cells) + " |")


def merge(paths: list[str]) -> tuple[dict[str, dict[str, list]], list[str], str, int]:
    """Results of several ``--out`` files (e.g. one per seed) as one: ``(results, models, cpu, max_steps)``.
    The files must cover the same splits with the same step budget."""
    import json

    saved = [json.loads(open(path, encoding="utf-8").read()) for path in paths]
    splits, budgets = {tuple(s["splits"]) for s in saved}, {s["max_steps"] for s in saved}
    if len(splits) > 1 or len(budgets) > 1:
        raise SystemExit(f"--merge: the files differ in splits {sorted(splits)} or step budget {sorted(budgets)}")
    results: dict[str, dict[str, list]] = {split: defaultdict(list) for split in saved[0]["splits"]}
    for one in saved:
        for split, metrics in one["splits"].items():
            for key, values in metrics.items():
                if key == "by_length":  # JSON keys are strings
                    values = [{int(n): v for n, v in per.items()} for per in values]
                results[split][key].extend(values)
    cpus = sorted({s["cpu"] for s in saved})
    return results, [m for s in saved for m in s["models"]], " / ".join(cpus), budgets.pop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="save_pretrained directories (one per seed)")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="instead of playing: the tables of earlier --out files together (e.g. one per seed)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="level splits of data/sokoban/")
    parser.add_argument("--preset", default="tiny", help="preset whose board layout (board_canvas) the models play")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="write all numbers here as JSON")
    args = parser.parse_args(argv)
    if bool(args.models) == bool(args.merge):
        parser.error("give either --models or --merge")

    from dynamind_lite.config import get_preset
    from dynamind_lite.envs.sokoban import load_levels
    from dynamind_lite.io import write_json_atomic
    from dynamind_lite.paths import level_file
    from dynamind_lite.results import cpu_name

    canvas = get_preset(args.preset).board_canvas
    if args.merge:
        results, models, cpu, max_steps = merge(args.merge)
        counts = {split: len(load_levels(level_file(split), canvas=canvas)) for split in results}
        print_tables(results, counts, len(models), cpu, max_steps)
        if args.out:
            write_json_atomic(args.out, {"models": models, "cpu": cpu, "max_steps": max_steps,
                                         "splits": {s: dict(r) for s, r in results.items()}})
        return 0

    import torch

    from dynamind_lite.evaluate import evaluate_generator, load_generator

    torch.set_num_threads(args.threads)
    levels = {split: load_levels(level_file(split), canvas=canvas) for split in args.splits}
    results: dict[str, dict[str, list]] = {split: defaultdict(list) for split in args.splits}
    for model in args.models:
        generator = load_generator("hf", model, batch_size=200, dtype="float32", device="cpu")
        for split, split_levels in levels.items():
            metrics, records = evaluate_generator(generator, split_levels, max_steps=args.max_steps, batch_size=200)
            for key in ("success_rate", "sim_score", "sim_cell_accuracy", "invalid_action_rate"):
                results[split][key].append(metrics[key])
            by_length = defaultdict(list)
            for level, record in zip(split_levels, records, strict=True):
                by_length[len(level["solution"])].append(record.success)
            results[split]["by_length"].append({n: sum(v) / len(v) for n, v in sorted(by_length.items())})
            results[split]["decisions"].append(decision_quality(records))
            print(f"{model} {split}: success {metrics['success_rate']:.3f} sim {metrics['sim_score']:.3f}",
                  file=sys.stderr, flush=True)

    print_tables(results, {split: len(v) for split, v in levels.items()}, len(args.models), cpu_name(),
                 args.max_steps)
    if args.out:
        write_json_atomic(args.out, {"models": args.models, "cpu": cpu_name(), "max_steps": args.max_steps,
                                     "splits": {s: dict(r) for s, r in results.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
