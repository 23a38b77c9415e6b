"""Benchmark: the main job's wall time per phase (Stage 1, set-up excluded).

    python benchmarks/bench_pipeline.py                      # runs the main job into runs/bench-pipeline/
    python benchmarks/bench_pipeline.py --run-dir runs/demo  # reads a finished run instead of running one

Runs ``python -m dynamind_lite pipeline --preset tiny --name bench-pipeline``
(or reads ``--run-dir``) and prints the seconds of each notebook, with notebook
04 split into SFT (the Trainer's own ``train_runtime``) and the rest (model
loading, the agent-loop evaluation of REACT and DISTILL(RESIM), the table),
and the total. Nothing is asserted; figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=None, help="a finished pipeline run to read (default: run one)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    wall = None
    if args.run_dir is None:
        run_dir = Path("runs") / "bench-pipeline"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dynamind_lite", "pipeline", "--preset", args.preset, "--seed",
                        str(args.seed), "--name", run_dir.name, "--runs-dir", str(run_dir.parent)], check=True)
        wall = time.perf_counter() - started
    else:
        run_dir = Path(args.run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        sys.exit(f"--run-dir {run_dir}: no results.json; the pipeline writes it when the run has finished "
                 "(is it still running, or did it stop early?)")
    results = json.loads(results_file.read_text())
    timings = results["notebook_seconds"]
    if not any(isinstance(v, dict) for v in timings.values()):  # a run made before seed folders existed
        timings = {f"seed-{results.get('seed', 0)}": timings}
    print(f"run: {run_dir} (preset {results['preset']}, seeds {results.get('seeds', [results.get('seed')])})")
    print("| phase | seconds |\n|---|---|")
    for group, seconds in timings.items():
        log_file = run_dir / group / "sft" / "log_history.json"
        if not log_file.is_file():
            log_file = run_dir / "sft" / "log_history.json"
        log = json.loads(log_file.read_text()) if log_file.is_file() else []
        sft = next((entry["train_runtime"] for entry in reversed(log) if "train_runtime" in entry), None)
        for name, value in seconds.items():
            if name.startswith("04") and sft is not None and value > 0:
                print(f"| {group} {name}: SFT (train_runtime) | {sft:.0f} |")
                print(f"| {group} {name}: loading, evaluation, table | {value - sft:.0f} |")
            else:
                print(f"| {group} {name}{' (skipped: complete)' if value == 0 else ''} | {value:.0f} |")
        print(f"| **{group}, total** | **{sum(seconds.values()):.0f}** |")
    print(f"| pipeline total (results.json) | {results['total_seconds']:.0f} |")
    if wall is not None:
        print(f"| command wall time (Python start-up included) | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
