"""The main job: notebooks 01-06 end to end with papermill, then the results table.

``python -m dynamind_lite pipeline --preset tiny --name demo [--smoke]`` runs
every notebook, in order, with the same ``preset``, ``seed``, ``run_dir`` and
``smoke`` parameters into ``runs/<name>/``:

    runs/<name>/01_mdp_sokoban.ipynb ... 06_dyna_grpo.ipynb   the executed notebooks
    runs/<name>/resim/        RESIM data and metrics (notebooks 02-03)
    runs/<name>/distill/      the distilled policy, merged, save_pretrained (notebook 04);
                              ``python -m dynamind_lite evaluate --model runs/<name>/distill`` loads it
    runs/<name>/grpo/, dyna_grpo/   the RL policies (merged) with rl_metrics.jsonl (notebook 06)
    runs/<name>/metrics/*.json   one results row per method (notebooks 04 and 06)
    runs/<name>/results.md, results.json   the table printed at the end

The notebooks hold the story and the package holds the code, so this file only
runs them; a failing notebook stops the job with the path of its executed copy
(papermill saves the error in it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynamind_lite.paths import REPO_ROOT

NOTEBOOKS = ("01_mdp_sokoban", "02_dfs_search_tree", "03_resim_aggregation", "04_resim_sft", "05_simrollout",
             "06_dyna_grpo")
"""The notebooks of the pipeline, in the order they run."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def notebook_dir(notebooks: Sequence[str] = NOTEBOOKS) -> Path:
    """``notebooks/`` of the checkout (the pipeline needs the notebooks, not only
    the package); FileNotFoundError naming any of ``notebooks`` that is missing."""
    path = REPO_ROOT / "notebooks"
    if not path.is_dir():
        raise FileNotFoundError(f"notebooks folder not found at {path}: run the pipeline from a clone "
                                "installed with pip install -e .")
    missing = [f"{name}.ipynb" for name in notebooks if not (path / f"{name}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"the pipeline needs {', '.join(missing)} in {path}")
    return path


PROGRESS_EVERY_S = 20
"""Seconds between the progress lines the notebooks print while the pipeline runs them."""


class _ProgressLines:
    """A file-like sink for papermill's ``stdout_file`` that passes on only the
    notebooks' progress lines (``[SFT] 120/1582 steps ...``, see ``progress.Progress``)."""

    def __init__(self, out=sys.stdout):
        self.out, self.pending = out, ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith("["):
                self.out.write(f"  {line}\n")
        self.out.flush()

    def flush(self) -> None:
        self.out.flush()


def run_notebooks(run_dir: Path, *, preset: str, seed: int, smoke: bool, notebooks: Sequence[str] = NOTEBOOKS,
                  source_dir: Path | None = None, log=print) -> dict[str, float]:
    """Execute ``notebooks`` (names without ``.ipynb``, from ``source_dir``, default
    ``notebooks/``) in order into ``run_dir`` with papermill, each with its own
    folder as working directory; returns seconds per notebook. The notebooks'
    progress lines (every ``PROGRESS_EVERY_S`` seconds of a long loop) are shown
    as they come, so a long stage is never silent."""
    import papermill

    from dynamind_lite.progress import PROGRESS_EVERY_ENV

    os.environ[PROGRESS_EVERY_ENV] = str(PROGRESS_EVERY_S)  # the kernels inherit it
    run_dir.mkdir(parents=True, exist_ok=True)
    source_dir = notebook_dir(notebooks) if source_dir is None else source_dir
    timings = {}
    for name in notebooks:
        source, executed = source_dir / f"{name}.ipynb", run_dir / f"{name}.ipynb"
        log(f"pipeline: running {name} (preset={preset}, seed={seed}, smoke={smoke}) -> {executed}")
        started = time.perf_counter()
        try:
            papermill.execute_notebook(str(source), str(executed), cwd=str(source_dir), kernel_name="python3",
                                       parameters={"preset": preset, "seed": seed, "run_dir": str(run_dir),
                                                   "smoke": smoke},
                                       progress_bar=False, stdout_file=_ProgressLines())
        except papermill.PapermillExecutionError as err:
            raise RuntimeError(f"notebook {name} failed ({err.ename}: {err.evalue}); "
                               f"the executed notebook with the traceback is {executed}") from None
        timings[name] = round(time.perf_counter() - started, 1)
        log(f"pipeline: {name} done in {timings[name]:.0f} s")
    return timings


def collect_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The results rows notebook 04 wrote to ``run_dir/metrics/*.json`` (each a dict
    from ``evaluate.results_row``), in table order."""
    rows = []
    for path in sorted((run_dir / "metrics").glob("*.json")):
        row = json.loads(path.read_text())
        if isinstance(row, dict) and "method" in row:
            rows.append(row)
    if not rows:
        raise RuntimeError(f"no results rows in {run_dir / 'metrics'}: did notebook 04 run?")
    return sorted(rows, key=lambda row: row.get("order", 0))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamind_lite pipeline``: 0 on success, 2 on a bad argument, 1 when a notebook fails."""
    from dynamind_lite.evaluate import results_table_markdown
    from dynamind_lite.io import write_json_atomic, write_text_atomic

    parser = argparse.ArgumentParser(prog="python -m dynamind_lite pipeline",
                                     description="Run notebooks 01-06 end to end into runs/<name>/ and "
                                                 "print the results table.")
    parser.add_argument("--preset", default="tiny", help="tiny (CPU, minutes), small (Colab T4), full (GPUs)")
    parser.add_argument("--name", required=True, help="run name: results go to <runs-dir>/<name>/")
    parser.add_argument("--smoke", action="store_true", help="tiny slices of everything (about a minute per "
                        "notebook), for checking the plumbing")
    parser.add_argument("--seed", type=int, default=0, help="seed of every notebook")
    parser.add_argument("--runs-dir", default="runs", help="parent folder of the run (default ./runs)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if not _NAME_RE.match(args.name):
            raise ValueError(f"--name {args.name!r} must be letters, digits, '_', '.', '-' (a folder name)")
        from dynamind_lite.config import get_preset

        try:
            get_preset(args.preset)
        except (KeyError, ValueError) as err:
            raise ValueError(f"--preset: {err}") from None
        notebook_dir()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    run_dir = (Path(args.runs_dir) / args.name).resolve()
    started = time.perf_counter()
    try:
        timings = run_notebooks(run_dir, preset=args.preset, seed=args.seed, smoke=args.smoke)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = collect_rows(run_dir)
    table = results_table_markdown(rows)
    results = {"name": args.name, "preset": args.preset, "seed": args.seed, "smoke": args.smoke,
               "run_dir": str(run_dir), "notebook_seconds": timings,
               "total_seconds": round(time.perf_counter() - started, 1), "rows": rows}
    write_json_atomic(run_dir / "results.json", results)
    write_text_atomic(run_dir / "results.md",
                      f"# Results: {args.name} (preset {args.preset}, seed {args.seed}"
                      f"{', smoke' if args.smoke else ''})\n\n{table}\n")
    print(f"\n{table}\n")
    print(f"run folder:        {run_dir}")
    print(f"executed notebooks: {', '.join(str(run_dir / f'{n}.ipynb') for n in NOTEBOOKS)}")
    print(f"distilled model:   {run_dir / 'distill'}  (python -m dynamind_lite evaluate --model {run_dir / 'distill'} "
          f"--levels data/sokoban/id_test.jsonl --out metrics.json)")
    print(f"RL policies:       {run_dir / 'grpo'}, {run_dir / 'dyna_grpo'}")
    print(f"results:           {run_dir / 'results.md'}, {run_dir / 'results.json'}")
    return 0
