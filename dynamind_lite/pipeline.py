"""The main job: notebooks 01-06 for each seed, then notebook 07's table over the seeds.

``python -m dynamind_lite pipeline --preset tiny --name demo [--seeds 0 1 2] [--smoke]``
runs every notebook with papermill, in order, with the parameters ``preset``,
``seed``, ``run_dir`` and ``smoke``, into one run folder::

    <run>/seed-<k>/01_mdp_sokoban.ipynb ... 06_dyna_grpo.ipynb   executed notebooks of seed k
    <run>/seed-<k>/resim/          RESIM data and metrics (notebooks 02-03)
    <run>/seed-<k>/distill/        the distilled policy, merged (notebook 04)
    <run>/seed-<k>/grpo/, dyna_grpo/   the RL policies with rl_metrics.jsonl (notebook 06)
    <run>/seed-<k>/metrics/*.json  one results row per method (notebooks 04 and 06)
    <run>/07_results.ipynb         the paper's table over the seeds, with its plots
    <run>/results.md, results.json the table, also printed at the end

**Resume.** A notebook whose executed copy is complete (every cell ran, no
error) for the same parameters and the same notebook source is skipped, so a
stopped batch started again with the same command picks up where it stopped.
**Plan.** Before any work the command prints which notebooks will run or be
skipped, per seed, with a time estimate (``dynamind_lite.estimates``).
``--dry-run`` validates everything (parameters, paths, model id, GPUs, vLLM),
prints the plan with memory and time per stage, and exits without running.

The notebooks hold the story and the package holds the code, so this file only
runs them; a failing notebook stops the job with the path of its executed copy
(papermill saves the error in it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynamind_lite.paths import REPO_ROOT

NOTEBOOKS = ("01_mdp_sokoban", "02_dfs_search_tree", "03_resim_aggregation", "04_resim_sft", "05_simrollout",
             "06_dyna_grpo")
"""The notebooks run once per seed, in this order, into ``<run>/seed-<k>/``."""
RESULTS_NOTEBOOK = "07_results"
"""The notebook run once over all seeds, into ``<run>/``."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def seed_dir(run_dir: Path, seed: int) -> Path:
    """The folder of one seed's notebooks and artefacts: ``<run>/seed-<k>``."""
    return Path(run_dir) / f"seed-{seed}"


def notebook_dir(notebooks: Sequence[str] = (*NOTEBOOKS, RESULTS_NOTEBOOK)) -> Path:
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


_PROGRESS_LINE = re.compile(r"^\[[^\]]+\] \d+/\d+ ")


class _ProgressLines:
    """A file-like sink for papermill's ``stderr_file`` that passes on only the
    notebooks' progress lines (``[SFT] 120/1582 steps ...``, see ``progress.Progress``,
    which writes them to stderr: a command's stdout stays its result)."""

    def __init__(self, out=sys.stdout):
        self.out, self.pending = out, ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if _PROGRESS_LINE.match(line):
                self.out.write(f"  {line}\n")
        self.out.flush()

    def flush(self) -> None:
        self.out.flush()


# --------------------------------------------------------------------------- #
# Resume: is an executed copy complete for these parameters and this source?
# --------------------------------------------------------------------------- #


def _code_sources(cells: list[dict]) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells
            if c["cell_type"] == "code" and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def why_run(executed: Path, source: Path, parameters: dict[str, Any]) -> str | None:
    """``None`` when ``executed`` is a complete papermill run of ``source`` with
    ``parameters`` (skip it); otherwise why the notebook has to run."""
    if not executed.is_file():
        return "not run yet"
    try:
        notebook = json.loads(executed.read_text())
        metadata = notebook["metadata"].get("papermill", {})
        cells = notebook["cells"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "its executed copy is unreadable"
    if metadata.get("exception"):
        return "it failed last time"
    if metadata.get("parameters") != parameters:
        return "its parameters changed"
    statuses = [c.get("metadata", {}).get("papermill", {}).get("status") for c in cells]
    # a kernel that dies mid-run leaves the cells after it "completed" but never started (no end_time)
    ends = [c.get("metadata", {}).get("papermill", {}).get("end_time") for c in cells if c["cell_type"] == "code"]
    if not statuses or any(status != "completed" for status in statuses) or None in ends:
        return "it stopped part-way"
    if _code_sources(cells) != _code_sources(json.loads(source.read_text())["cells"]):
        return "the notebook changed since"
    return None


# --------------------------------------------------------------------------- #
# Running notebooks
# --------------------------------------------------------------------------- #


def run_notebooks(run_dir: Path, *, preset: str, seed: int, smoke: bool, notebooks: Sequence[str] = NOTEBOOKS,
                  source_dir: Path | None = None, log: Callable[[str], None] = print,
                  resume: bool = True) -> dict[str, float]:
    """Execute ``notebooks`` (names without ``.ipynb``, from ``source_dir``, default
    ``notebooks/``) in order into ``run_dir`` with papermill, each with its own
    folder as working directory; returns seconds per notebook run (0.0 for one
    skipped because its executed copy is complete, see ``why_run``; ``resume=False``
    runs them all). The notebooks' progress lines (every ``PROGRESS_EVERY_S``
    seconds of a long loop) are shown as they come, so a long stage is never silent."""
    from dynamind_lite.progress import PROGRESS_EVERY_ENV

    previous = os.environ.get(PROGRESS_EVERY_ENV)
    os.environ[PROGRESS_EVERY_ENV] = str(PROGRESS_EVERY_S)  # the kernels inherit it
    try:
        return _run_notebooks(run_dir, preset=preset, seed=seed, smoke=smoke, notebooks=notebooks,
                              source_dir=source_dir, log=log, resume=resume)
    finally:  # this process's own commands keep the setting they had
        if previous is None:
            os.environ.pop(PROGRESS_EVERY_ENV, None)
        else:
            os.environ[PROGRESS_EVERY_ENV] = previous


def _run_notebooks(run_dir: Path, *, preset: str, seed: int, smoke: bool, notebooks: Sequence[str],
                   source_dir: Path | None, log: Callable[[str], None], resume: bool) -> dict[str, float]:
    import papermill

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    source_dir = notebook_dir(notebooks) if source_dir is None else source_dir
    parameters = {"preset": preset, "seed": seed, "run_dir": str(run_dir), "smoke": smoke}
    timings = {}
    for name in notebooks:
        source, executed = source_dir / f"{name}.ipynb", run_dir / f"{name}.ipynb"
        reason = why_run(executed, source, parameters) if resume else "resume is off"
        if reason is None:
            log(f"pipeline: {name} (seed {seed}) is complete in {executed}: skipped")
            timings[name] = 0.0
            continue
        log(f"pipeline: running {name} (preset={preset}, seed={seed}, smoke={smoke}; {reason}) -> {executed}")
        started = time.perf_counter()
        try:
            papermill.execute_notebook(str(source), str(executed), cwd=str(source_dir), kernel_name="python3",
                                       parameters=parameters, progress_bar=False, stderr_file=_ProgressLines())
        except papermill.PapermillExecutionError as err:
            raise RuntimeError(f"notebook {name} failed ({err.ename}: {err.evalue}); "
                               f"the executed notebook with the traceback is {executed}") from None
        timings[name] = round(time.perf_counter() - started, 1)
        log(f"pipeline: {name} done in {timings[name]:.0f} s")
    return timings


def run_batch(run_dir: Path, *, preset: str, seeds: Sequence[int], smoke: bool,
              notebooks: Sequence[str] = NOTEBOOKS, results_notebook: str | None = RESULTS_NOTEBOOK,
              source_dir: Path | None = None, log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Notebooks ``notebooks`` for every seed into ``seed_dir(run_dir, seed)``, then
    ``results_notebook`` once into ``run_dir`` (its ``seed`` parameter is the first
    seed; it reads every ``seed-*`` folder). Complete notebooks are skipped (resume).
    Returns seconds per notebook, keyed ``"seed-<k>"`` and ``"results"``."""
    timings = {}
    for seed in seeds:
        timings[f"seed-{seed}"] = run_notebooks(seed_dir(run_dir, seed), preset=preset, seed=seed, smoke=smoke,
                                                notebooks=notebooks, source_dir=source_dir, log=log)
    if results_notebook:
        timings["results"] = run_notebooks(Path(run_dir), preset=preset, seed=seeds[0], smoke=smoke,
                                           notebooks=[results_notebook], source_dir=source_dir, log=log,
                                           resume=False)  # cheap, and it must see every seed's latest rows
    return timings


def collect_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The results rows notebooks 04 and 06 wrote to ``run_dir/metrics/*.json`` (each a
    dict from ``evaluate.results_row``), in table order."""
    rows = []
    for path in sorted((Path(run_dir) / "metrics").glob("*.json")):
        row = json.loads(path.read_text())
        if isinstance(row, dict) and "method" in row:
            rows.append(row)
    if not rows:
        raise RuntimeError(f"no results rows in {Path(run_dir) / 'metrics'}: did notebook 04 run?")
    return sorted(rows, key=lambda row: row.get("order", 0))


# --------------------------------------------------------------------------- #
# The plan and the dry run
# --------------------------------------------------------------------------- #


def plan_lines(run_dir: Path, preset_name: str, seeds: Sequence[int], smoke: bool,
               source_dir: Path | None = None) -> tuple[list[str], float]:
    """The plan printed before any work: per seed, each notebook with "run" (and
    why) or "skip", and the estimated seconds of what will run."""
    from dynamind_lite.estimates import TINY_MEASURED_SECONDS, TINY_SLOWEST_HOST_FACTOR, gpu_notebook_seconds

    source_dir = notebook_dir() if source_dir is None else source_dir
    per_notebook = (dict.fromkeys(TINY_MEASURED_SECONDS, 60.0) if smoke else TINY_MEASURED_SECONDS
                    if preset_name == "tiny" else gpu_notebook_seconds(preset_name))
    lines, total = [f"plan: preset {preset_name}{' (smoke)' if smoke else ''}, seeds {list(seeds)}, "
                    f"run folder {run_dir}"], 0.0
    for seed in seeds:
        folder = seed_dir(run_dir, seed)
        parameters = {"preset": preset_name, "seed": seed, "run_dir": str(folder), "smoke": smoke}
        cells = []
        for name in NOTEBOOKS:
            reason = why_run(folder / f"{name}.ipynb", source_dir / f"{name}.ipynb", parameters)
            if reason is None:
                cells.append(f"{name[:2]} skip")
            else:
                cells.append(f"{name[:2]} run")
                total += per_notebook[name]
        lines.append(f"  seed {seed}: " + ", ".join(cells))
    total += per_notebook[RESULTS_NOTEBOOK]
    lines.append(f"  then {RESULTS_NOTEBOOK} over seeds {list(seeds)}")
    basis = ("smoke: about a minute per notebook" if smoke
             else f"measured on a 2-core Xeon with AMX; {total * TINY_SLOWEST_HOST_FACTOR / 60:.0f} min "
                  f"on the slowest 2-core host measured" if preset_name == "tiny"
             else "estimated from the model size, see --dry-run")
    lines.append(f"  estimated time: {total / 60:.0f} min ({basis})")
    return lines, total


def dry_run(run_dir: Path, preset_name: str, seeds: Sequence[int], smoke: bool) -> tuple[list[str], list[str]]:
    """Everything checked without heavy work: the model id, the GPUs, vLLM, the run
    folder. Returns ``(report lines, blockers)``: memory and time per stage from
    the model's size (``estimates``), and what stops the run on this machine."""
    import torch

    from dynamind_lite.config import get_preset
    from dynamind_lite.estimates import GPU_KINDS, PRESET_HARDWARE, model_shape, stage_estimates, workload

    preset = get_preset(preset_name)
    shape = model_shape(preset.model_name_or_path)
    size = f"{shape.params / 1e9:.2f} B" if shape.params >= 1e8 else f"{shape.params / 1e6:.2f} M"
    lines = [f"model: {preset.model_name_or_path}: {size} parameters, {shape.layers} layers, "
             f"h={shape.hidden}, vocab {shape.vocab}"
             + ("" if preset.full_finetune else f"; LoRA r={preset.lora_r}: {shape.lora_params(preset.lora_r) / 1e6:.1f} M "
                                                 "trainable")
             + (", 4-bit NF4 (QLoRA)" if preset.load_in_4bit else f", {preset.dtype}")]
    blockers = []
    gpus_visible = torch.cuda.device_count()
    if preset_name in PRESET_HARDWARE:
        kind, gpus = PRESET_HARDWARE[preset_name]
        gpu_kind = GPU_KINDS[kind]
        lines.append(f"planned for: {gpus} x {gpu_kind.name} ({gpu_kind.memory_gib:.0f} GiB each)")
        lines.append("| stage | weights | optimizer + grads | reference | activations | KV cache | total GiB/GPU | "
                     "time |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for stage in stage_estimates(preset, shape, gpus, gpu_kind, *workload(preset)):
            parts = [stage.memory_gib.get(k, 0.0) for k in ("weights", "optimizer+grads", "reference policy",
                                                            "activations", "KV cache")]
            lines.append(f"| {stage.stage} | " + " | ".join(f"{v:.1f}" for v in parts)
                         + f" | {stage.total_gib:.1f} | {stage.seconds / 60:.0f} min |")
            if stage.total_gib > gpu_kind.memory_gib:
                blockers.append(f"{stage.stage} needs about {stage.total_gib:.0f} GiB per GPU, more than a "
                                f"{gpu_kind.name}")
        if gpus_visible == 0:
            blockers.append(f"no CUDA GPU is visible (torch {torch.__version__}); the {preset_name} preset needs "
                            f"{gpus} x {gpu_kind.name} or similar")
        elif gpus_visible < gpus:
            lines.append(f"note: {gpus_visible} GPU(s) visible, planned for {gpus}: expect about "
                         f"{gpus / gpus_visible:.0f}x the time")
    else:
        lines.append(f"runs on the CPU ({os.cpu_count()} cores); GPUs visible: {gpus_visible}")
    if preset.generation_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        blockers.append("the preset generates with vLLM, which is not installed: pip install 'dynamind-lite[vllm]' "
                        "on the GPU machine")
    if preset.load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        blockers.append("the preset loads 4-bit weights, and bitsandbytes is not installed")
    return lines, blockers


def _writable_parent(path: Path) -> None:
    """ValueError unless ``path`` is a folder or can be made one."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--run-dir {path} exists and is not a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ValueError(f"--run-dir {path}: cannot create it ({existing} is not a writable folder)")


# --------------------------------------------------------------------------- #
# Command line
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dynamind_lite pipeline",
                                     description="Run notebooks 01-06 for each seed and notebook 07 over the "
                                                 "seeds into one run folder; print the results table.")
    parser.add_argument("--preset", default="tiny", help="tiny (CPU, minutes), small (Colab T4), full (GPUs)")
    parser.add_argument("--name", help="run name: results go to <runs-dir>/<name>/ (or give --run-dir)")
    parser.add_argument("--run-dir", help="the run folder itself (instead of --name)")
    parser.add_argument("--runs-dir", default="runs", help="parent folder of named runs (default ./runs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default: 0)")
    parser.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    parser.add_argument("--smoke", action="store_true", help="tiny slices of everything (about a minute per "
                        "notebook), for checking the plumbing")
    parser.add_argument("--dry-run", action="store_true", help="check everything and print the plan with memory "
                        "and time per stage; run nothing (exit 1 when this machine cannot run it)")
    return parser


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, Path, list[int]]:
    """Parsed and validated arguments, the run folder and the seeds; ValueError naming the problem."""
    from dynamind_lite.config import get_preset

    args = build_parser().parse_args(list(argv))
    if (args.name is None) == (args.run_dir is None):
        raise ValueError("give either --name (a run under --runs-dir) or --run-dir, one of them is required")
    if args.name is not None and not _NAME_RE.match(args.name):
        raise ValueError(f"--name {args.name!r} must be letters, digits, '_', '.', '-' (a folder name)")
    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seeds or --seed, not both")
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {seeds}")
    try:
        get_preset(args.preset)
    except (KeyError, ValueError) as err:
        raise ValueError(f"--preset: {err}") from None
    notebook_dir()
    run_dir = (Path(args.run_dir) if args.run_dir else Path(args.runs_dir) / args.name).resolve()
    _writable_parent(run_dir)
    return args, run_dir, seeds


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamind_lite pipeline``: 0 on success, 2 on a bad argument, 1 when a
    notebook fails (or, with ``--dry-run``, when this machine cannot run the plan)."""
    from dynamind_lite.evaluate import results_table_markdown
    from dynamind_lite.io import write_json_atomic, write_text_atomic

    try:
        args, run_dir, seeds = parse_arguments(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    lines, _ = plan_lines(run_dir, args.preset, seeds, args.smoke)
    print("\n".join(lines), flush=True)
    if args.dry_run:
        try:
            report, blockers = dry_run(run_dir, args.preset, seeds, args.smoke)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print("\n".join(report))
        print("\n".join(f"cannot run here: {b}" for b in blockers) if blockers
              else "ready: every check passed")
        return 1 if blockers else 0

    started = time.perf_counter()
    try:
        timings = run_batch(run_dir, preset=args.preset, seeds=seeds, smoke=args.smoke)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = [row | {"seed": seed} for seed in seeds for row in collect_rows(seed_dir(run_dir, seed))]
    table_file = run_dir / "results_table.md"  # notebook 07's table (means over seeds)
    table = table_file.read_text() if table_file.is_file() else results_table_markdown(rows)
    results = {"name": args.name or run_dir.name, "preset": args.preset, "seeds": seeds, "smoke": args.smoke,
               "run_dir": str(run_dir), "notebook_seconds": timings,
               "total_seconds": round(time.perf_counter() - started, 1), "rows": rows}
    write_json_atomic(run_dir / "results.json", results)
    write_text_atomic(run_dir / "results.md",
                      f"# Results: {run_dir.name} (preset {args.preset}, seeds {seeds}"
                      f"{', smoke' if args.smoke else ''})\n\n{table}\n")
    print(f"\n{table}\n")
    print(f"run folder:         {run_dir}")
    print(f"executed notebooks: {run_dir}/seed-*/0[1-6]_*.ipynb, {run_dir / (RESULTS_NOTEBOOK + '.ipynb')}")
    print(f"policies:           {run_dir}/seed-*/distill, grpo, dyna_grpo  (python -m dynamind_lite evaluate "
          f"--model {seed_dir(run_dir, seeds[0]) / 'distill'} --levels data/sokoban/id_test.jsonl --out m.json)")
    print(f"results:            {run_dir / 'results.md'}, {run_dir / 'results.json'}")
    return 0
