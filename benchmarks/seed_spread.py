"""The results table over several seeds: mean [min, max] of every column.

    python benchmarks/seed_spread.py runs/tiny3/seed-0 runs/tiny3/seed-1 runs/tiny3/seed-2

Reads ``results.json`` of finished pipeline runs (one per seed, same preset; a
folder without one counts for the Stage 2 table only) and
prints, per method, success on ID and OOD, Sim Score and cell accuracy on ID,
Gen.Token on ID and the invalid-action rates as ``mean [min, max]`` over the
runs, with the CPU it runs on. fp32 kernels differ between CPU kinds (AMX,
AVX-512, AVX2), so one seed's number moves across machines: read the mean and
the spread. When the runs went through Stage 2 (notebook 06 left
``stage2_eval.json``), a second table gives DISTILL(RESIM), +GRPO and
+DYNA-GRPO on ID, OOD and the held-out style, with each RL run's seconds.
Nothing is asserted; figures only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="pipeline run folders (each with results.json)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from heldout_styles import cpu_name

    rows: dict[str, list[dict]] = defaultdict(list)
    seeds, seconds = [], []
    for run in args.runs:
        if not (Path(run) / "results.json").is_file():  # a Stage-2-only folder (notebook 06 alone)
            continue
        results = json.loads((Path(run) / "results.json").read_text())
        seeds.append(results["seed"])
        seconds.append(results["total_seconds"])
        for row in results["rows"]:
            rows[row["method"]].append(row)

    def cell(values: list, scale: float = 100.0, digits: int = 1) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        mean = statistics.mean(values) * scale
        return f"{mean:.{digits}f} [{min(values) * scale:.{digits}f}, {max(values) * scale:.{digits}f}]"

    print(f"seeds {seeds}; CPU: {cpu_name()}; pipeline seconds per run: {[round(s) for s in seconds]}\n")
    print("| Method | Success ID % | Success OOD % | Sim Score ID | cell acc. ID | Gen.Token ID (x base) "
          "| Invalid % ID / OOD |")
    print("|---|---|---|---|---|---|---|")
    for method, runs in rows.items():
        sim = [r["sim_score_id"] if r["sim_step_fraction_id"] else None for r in runs]
        cells = [r["sim_cell_accuracy_id"] if r["sim_step_fraction_id"] else None for r in runs]
        ratio = [r["gen_token_ratio"] for r in runs if r.get("gen_token_ratio")]
        tokens = f"{statistics.mean(r['mean_gen_tokens_id'] for r in runs):.1f}"
        tokens += f" ({statistics.mean(ratio):.2f}x)" if ratio else ""
        print(f"| {method} | {cell([r['success_id'] for r in runs])} | {cell([r['success_ood'] for r in runs])} "
              f"| {cell(sim, 1.0, 2)} | {cell(cells, 1.0, 3)} | {tokens} "
              f"| {cell([r['invalid_action_rate_id'] for r in runs])} / {cell([r['invalid_action_rate_ood'] for r in runs])} |")
    stage2_table(args.runs, cell)
    return 0


def stage2_table(runs: list[str], cell) -> None:
    """DISTILL(RESIM) vs +GRPO vs +DYNA-GRPO over the runs that have notebook 06's ``stage2_eval.json``."""
    evaluations = [json.loads((Path(r) / "stage2_eval.json").read_text()) for r in runs
                   if (Path(r) / "stage2_eval.json").is_file()]
    if not evaluations:
        return
    by_model: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for evaluation in evaluations:
        for key, metrics in evaluation.items():
            model, split, _ = key.split("|")
            by_model[model][split].append(metrics)
    print(f"\nStage 2 over {len(evaluations)} runs (greedy, step budget as the preset's):\n")
    print("| Method | ID % | OOD % | held-out style % | Sim Score ID | Sim Score held-out | Gen.Token ID |")
    print("|---|---|---|---|---|---|---|")
    for model, splits in by_model.items():
        def col(split: str, key: str, scale: float = 100.0, digits: int = 1) -> str:
            return cell([m[key] for m in splits.get(split, [])], scale, digits)

        print(f"| {model} | {col('id_test', 'success_rate')} | {col('ood_test', 'success_rate')} "
              f"| {col('style_test_random_placement', 'success_rate')} | {col('id_test', 'sim_score', 1.0, 2)} "
              f"| {col('style_test_random_placement', 'sim_score', 1.0, 2)} "
              f"| {col('id_test', 'mean_gen_tokens', 1.0, 1)} |")
    for method in ("grpo", "dyna_grpo"):
        seconds = []
        for run in runs:
            path = Path(run) / method / "rl_metrics.jsonl"
            if path.is_file():
                rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                seconds.append(round(sum(sum(row["seconds"].values()) for row in rows)))
        print(f"\n{method}: rollout + update seconds per run {seconds}")


if __name__ == "__main__":
    sys.exit(main())
