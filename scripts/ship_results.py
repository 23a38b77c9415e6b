"""Copy the small result files of a multi-seed run into ``data/results/<preset>/``.

    python scripts/ship_results.py runs/tiny-1127c           # -> data/results/tiny/

What is copied (a few hundred KB; no model weights): per seed,
``metrics/*.json`` (the results rows of notebooks 04 and 06) and
``grpo/rl_metrics.jsonl``, ``dyna_grpo/rl_metrics.jsonl`` (the RL curves); and
the run's ``results_table.md`` and ``results_summary.json`` (notebook 07).
Notebook 07 shows these when its ``run_dir`` holds no run, so a learner sees the
README's table and plots without the 11 minutes per seed (AMX host) that make them.

The run itself is remade with
``python -m dynamind_lite pipeline --preset tiny --run-dir runs/tiny-1127c --seeds 0 1 2``.
The destination is replaced as a whole (written beside, then renamed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dynamind_lite.results import cpu_name  # noqa: E402

PER_SEED = ("metrics", "grpo/rl_metrics.jsonl", "dyna_grpo/rl_metrics.jsonl")
PER_RUN = ("results_table.md", "results_summary.json")



def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a pipeline run folder with seed-<k>/ subfolders")
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    seeds = sorted(p for p in run_dir.glob("seed-*") if (p / "metrics").is_dir())
    missing = [name for name in PER_RUN if not (run_dir / name).is_file()]
    if not seeds or missing:
        print(f"error: {run_dir} needs seed-<k>/metrics/ folders and {', '.join(PER_RUN)} (run notebook 07); "
              f"missing: {missing or 'seed folders'}", file=sys.stderr)
        return 2
    destination = ROOT / "data" / "results" / args.preset
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{args.preset}."))
    for seed in seeds:
        for name in PER_SEED:
            source = seed / name
            if source.is_dir():
                shutil.copytree(source, staging / seed.name / name, ignore=shutil.ignore_patterns("*.tmp"))
            elif source.is_file():
                (staging / seed.name / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, staging / seed.name / name)
    for name in PER_RUN:
        shutil.copy2(run_dir / name, staging / name)
    (staging / "provenance.json").write_text(json.dumps({
        "preset": args.preset, "seeds": [int(p.name.split("-")[1]) for p in seeds], "cpu": cpu_name(),
        "command": f"python -m dynamind_lite pipeline --preset {args.preset} --run-dir {args.run_dir} --seeds "
                   + " ".join(p.name.split("-")[1] for p in seeds)}, indent=2) + "\n")
    if destination.exists():
        shutil.rmtree(destination)
    staging.rename(destination)
    print(f"shipped {len(seeds)} seeds of {run_dir} to {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
