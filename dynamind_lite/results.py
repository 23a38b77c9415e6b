"""The paper's Table 1 (Sokoban half) over seeds, from what notebooks 04 and 06 left in a run folder.

Introduced in ``notebooks/07_results.ipynb``. A run folder holds one ``seed-<k>/``
per seed (``python -m dynamind_lite pipeline --seeds 0 1 2``), each with
``metrics/<method>.json`` rows (``evaluate.results_row``) and the RL runs'
``grpo/rl_metrics.jsonl`` and ``dyna_grpo/rl_metrics.jsonl``. A folder with its
own ``metrics/`` (notebooks run by hand) counts as one seed.

Per method and column the table shows the mean over seeds with its 95%
t-interval (``metrics.seed_mean_ci95``); with three seeds the interval is wide
(t = 4.3), which is the honest reading of three runs. The paper's numbers
(Qwen2.5-7B, mean of 3 runs) sit beside ours; they are a different model at a
different scale, so the comparison is of the story, not of the values.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynamind_lite.metrics import pearson_r, seed_mean_ci95

METHODS = ("react", "resim", "distill_resim", "grpo", "dyna_grpo")
"""The rows of the table, by the stem of their ``metrics/<stem>.json`` file, in table order."""

PAPER_SOKOBAN = {
    "react": {"method": "REACT(DeepSeek-R1)", "success_id": 96.6, "avg": None, "sim_score_id": 0.93, "gen_token": 14.5},
    "resim": {"method": "RESIM", "success_id": 96.4, "avg": None, "sim_score_id": 1.00, "gen_token": 2.0},
    "distill_resim": {"method": "DISTILL(RESIM)", "success_id": 71.9, "avg": 63.7, "sim_score_id": 0.62,
                      "gen_token": 2.0},
    "grpo": {"method": "+GRPO", "success_id": 79.1, "avg": 73.1, "sim_score_id": 0.62, "gen_token": 2.1},
    "dyna_grpo": {"method": "+DYNA-GRPO", "success_id": 82.5, "avg": 77.1, "sim_score_id": 0.67, "gen_token": 1.9},
}
"""The paper's Sokoban numbers (Table 1, Qwen2.5-7B-Instruct, mean of 3 runs): ID success %,
AVG of ID and OOD %, Sim Score on ID, Gen.Token (x; the paper's normaliser is not stated)."""

_SEED_RE = re.compile(r"^seed-(\d+)$")


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model and its widest fp32 kernel kind, e.g. ``Intel(R) Xeon(R) Processor @ 2.50GHz
    (AVX-512, no AMX)``. Results name it, since fp32 kernels differ between CPU kinds and a trained
    model's numbers move with them; a virtual machine's generic model name does not tell the kind.
    ``cpuinfo``: the text of ``/proc/cpuinfo`` (read when None)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model = flags = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = value
    if not model:
        return platform.processor() or platform.machine()
    names = set(flags.split())
    if "amx_tile" in names:
        kind = "AMX and AVX-512"
    elif "avx512f" in names:
        kind = "AVX-512, no AMX"
    elif "avx2" in names:
        kind = "AVX2, no AVX-512"
    else:
        return model
    return f"{model} ({kind})"


def find_seed_dirs(run_dir: str | Path) -> dict[int, Path]:
    """``{seed: folder}`` of a run: its ``seed-<k>`` subfolders that hold ``metrics/``,
    or the run folder itself (as seed 0) when it holds ``metrics/``; {} when none."""
    run_dir = Path(run_dir)
    found = {}
    for path in run_dir.glob("seed-*"):
        match = _SEED_RE.match(path.name)
        if match and (path / "metrics").is_dir():
            found[int(match.group(1))] = path
    if not found and (run_dir / "metrics").is_dir():
        found[0] = run_dir
    return dict(sorted(found.items()))


def load_rows(seed_dirs: dict[int, Path]) -> dict[str, dict[int, dict[str, Any]]]:
    """``{method stem: {seed: results row}}`` for the stems in ``METHODS`` that have rows."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for seed, folder in seed_dirs.items():
        for stem in METHODS:
            path = folder / "metrics" / f"{stem}.json"
            if path.is_file():
                rows.setdefault(stem, {})[seed] = json.loads(path.read_text())
    return {stem: rows[stem] for stem in METHODS if stem in rows}


def _stat(values: Sequence[float | None], bounds: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """Mean over seeds with its 95% t-interval (clipped to ``bounds``: a success rate's
    interval from three seeds can reach past 0 or 1), min, max and n."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    mean, low, high = seed_mean_ci95(values)
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return {"mean": mean, "ci95": [low, high], "min": min(values), "max": max(values), "n": len(values)}


def summarise(rows: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One summary per method: success ID / OOD / AVG, Sim Score ID, tokens per step
    on ID and Gen.Token (x base), each ``{"mean", "ci95", "min", "max", "n"}`` over seeds
    (success intervals clipped to [0, 1])."""
    summary = []
    for stem, by_seed in rows.items():
        seeds = sorted(by_seed)
        column = {key: _stat([by_seed[s].get(key) for s in seeds], (0.0, 1.0) if key.startswith("success") else None)
                  for key in ("success_id", "success_ood", "success_avg", "sim_score_id", "mean_gen_tokens_id",
                              "gen_token_ratio")}
        summary.append({"stem": stem, "method": by_seed[seeds[0]]["method"], "seeds": seeds, **column})
    return summary


def table_markdown(summary: Sequence[dict[str, Any]], paper: dict[str, dict] = PAPER_SOKOBAN) -> str:
    """Our table over seeds with the paper's numbers beside: success % as mean [95% CI]."""

    def pct(stat: dict | None) -> str:
        if stat is None:
            return "-"
        if stat["n"] == 1:
            return f"{100 * stat['mean']:.1f}"
        return f"{100 * stat['mean']:.1f} [{100 * stat['ci95'][0]:.0f}, {100 * stat['ci95'][1]:.0f}]"

    def num(stat: dict | None, fmt: str) -> str:
        return "-" if stat is None else format(stat["mean"], fmt)

    lines = ["| Method | seeds | ID % | OOD % | AVG % | Sim Score ID | Gen.Token ID (x base) "
             "| paper: ID % / AVG % / Sim Score / Gen.Token |", "|---|---|---|---|---|---|---|---|"]
    for row in summary:
        ours_paper = paper.get(row["stem"])
        paper_text = "-"
        if ours_paper is not None:
            avg = "-" if ours_paper["avg"] is None else f"{ours_paper['avg']:.1f}"
            paper_text = (f"{ours_paper['success_id']:.1f} / {avg} / {ours_paper['sim_score_id']:.2f} / "
                          f"{ours_paper['gen_token']:.1f}x")
        sim = row["sim_score_id"]
        tokens = num(row["mean_gen_tokens_id"], ".0f") + (f" ({num(row['gen_token_ratio'], '.2f')}x)"
                                                           if row["gen_token_ratio"] else "")
        lines.append(f"| {row['method']} | {len(row['seeds'])} | {pct(row['success_id'])} | {pct(row['success_ood'])} "
                     f"| {pct(row['success_avg'])} | {num(sim, '.2f')} | {tokens} | {paper_text} |")
    return "\n".join(lines)


def success_sim_points(rows: dict[str, dict[int, dict[str, Any]]],
                       exclude: Sequence[str] = ("resim",)) -> tuple[list[tuple[str, int, float, float]], float | None]:
    """``(points, r)``: one (method, seed, Sim Score ID, success ID) per policy and seed, and
    Pearson r over them. RESIM is left out: it is search, not a policy, and its Sim Score is
    1.0 by construction."""
    points = [(by_seed[s]["method"], s, by_seed[s]["sim_score_id"], by_seed[s]["success_id"])
              for stem, by_seed in rows.items() if stem not in exclude for s in sorted(by_seed)
              if by_seed[s].get("sim_score_id") is not None]
    return points, pearson_r([p[2] for p in points], [p[3] for p in points])


def success_by_length(rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[int, list[int]]]:
    """``{method: {optimal moves: [solved, played]}}`` summed over seeds and the ID and OOD
    splits, for the rows that carry ``successes_by_optimal_length_*``."""
    out: dict[str, dict[int, list[int]]] = {}
    for by_seed in rows.values():
        for row in by_seed.values():
            for suffix in ("id", "ood"):
                counts = row.get(f"successes_by_optimal_length_{suffix}")
                for length, (solved, played) in (counts or {}).items():
                    if length == "none":
                        continue
                    slot = out.setdefault(row["method"], {}).setdefault(int(length), [0, 0])
                    slot[0] += solved
                    slot[1] += played
    return {method: dict(sorted(counts.items())) for method, counts in out.items()}


def rl_curves(seed_dirs: dict[int, Path], methods: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """``{method: rows}`` of ``rl_metrics.jsonl`` averaged over seeds per iteration
    (numbers only; ``phase`` kept from the first seed), for ``viz.plot_rl_curves``."""
    methods = methods or {"+GRPO": "grpo", "+DYNA-GRPO": "dyna_grpo"}
    curves = {}
    for label, folder in methods.items():
        runs = []
        for seed_dir in seed_dirs.values():
            path = seed_dir / folder / "rl_metrics.jsonl"
            if path.is_file():
                runs.append([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        if not runs:
            continue
        length = min(len(run) for run in runs)
        averaged = []
        for i in range(length):
            row = {"iteration": runs[0][i]["iteration"], "phase": runs[0][i].get("phase")}
            for key, value in runs[0][i].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "iteration":
                    row[key] = sum(run[i].get(key, 0.0) for run in runs) / len(runs)
            averaged.append(row)
        curves[label] = averaged
    return curves


POLICY_FOLDERS = {"distill_resim": "distill", "grpo": "grpo", "dyna_grpo": "dyna_grpo"}
"""Where each trained policy of a seed folder lives (``save_pretrained``)."""


def fill_missing_lengths(rows: dict[str, dict[int, dict[str, Any]]], seed_dirs: dict[int, Path], preset,
                         log=print) -> list[str]:
    """Compute only what is missing: rows written before the metrics had
    ``successes_by_optimal_length_{id,ood}`` get them by replaying that seed's
    policy on the same test levels (greedy, as notebooks 04 and 06 evaluate), and
    are written back atomically; results are cached in ``seed-<k>/results_eval.json``.
    Returns a line per replay, with the replayed and the recorded success (they
    agree on the machine that made the row; fp32 kernels differ between CPU kinds)."""
    from dynamind_lite.evaluate import evaluate_models, evaluation_key
    from dynamind_lite.generation import GenerationConfig
    from dynamind_lite.io import write_json_atomic

    done = []
    for stem, folder in POLICY_FOLDERS.items():
        for seed, row in rows.get(stem, {}).items():
            model = seed_dirs[seed] / folder
            if row.get("successes_by_optimal_length_id") is not None or not (model / "config.json").is_file():
                continue
            for split, suffix in (("id_test", "id"), ("ood_test", "ood")):
                limit = row.get(f"num_levels_{suffix}")
                if limit is None:
                    continue
                evaluation = evaluate_models(
                    {stem: model}, [split], seed_dirs[seed] / "results_eval.json", limit=limit,
                    max_steps=preset.max_steps, history_len=preset.history_len,
                    generation_config=GenerationConfig(max_new_tokens=preset.max_new_tokens),
                    batch_size=preset.eval_batch_size, seed=seed, canvas=preset.board_canvas, dtype=preset.dtype,
                    device=preset.device)
                metrics = evaluation[evaluation_key(stem, split, limit)]
                row[f"successes_by_optimal_length_{suffix}"] = metrics["successes_by_optimal_length"]
                done.append(f"seed {seed} {row['method']} {split}: replayed {metrics['success_rate']:.1%} "
                            f"(recorded {row[f'success_{suffix}']:.1%})")
                log(done[-1])
            write_json_atomic(seed_dirs[seed] / "metrics" / f"{stem}.json", row)
    return done
