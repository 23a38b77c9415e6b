"""Notebook 07's table over seeds: reading seed folders, the summary statistics, and
filling in only what old rows lack (success by optimal length) with a real model."""

from __future__ import annotations

import json
import shutil

import pytest

from dynamind_lite.config import get_preset
from dynamind_lite.metrics import seed_mean_ci95
from dynamind_lite.paths import tiny_distill_dir
from dynamind_lite.results import (cpu_name, fill_missing_lengths, find_seed_dirs, load_rows, rl_curves,
                                   success_by_length, success_sim_points, summarise, table_markdown)


def _row(method, success_id, success_ood, sim, tokens, order, **extra):
    return {"method": method, "order": order, "success_id": success_id, "success_ood": success_ood,
            "success_avg": (success_id + success_ood) / 2, "sim_score_id": sim, "mean_gen_tokens_id": tokens,
            "gen_token_ratio": tokens / 10.0, "num_levels_id": 2, "num_levels_ood": 2, **extra}


def _seed_folder(run, seed, rows):
    (run / f"seed-{seed}" / "metrics").mkdir(parents=True)
    for stem, row in rows.items():
        (run / f"seed-{seed}" / "metrics" / f"{stem}.json").write_text(json.dumps(row))
    return run / f"seed-{seed}"


def test_table_over_seeds_is_the_mean_with_its_t_interval(tmp_path):
    for seed, (distill, grpo) in enumerate([(0.6, 0.7), (0.7, 0.8), (0.8, 0.75)]):
        folder = _seed_folder(tmp_path, seed, {
            "react": _row("REACT", 0.0, 0.0, 0.0, 10.0, 0),
            "distill_resim": _row("DISTILL(RESIM)", distill, 0.1, distill - 0.1, 130.0, 2,
                                  successes_by_optimal_length_id={"4": [1, 2], "5": [0, 1]}),
            "grpo": _row("+GRPO", grpo, 0.2, grpo - 0.2, 140.0, 3)})
        (folder / "grpo").mkdir()
        (folder / "grpo" / "rl_metrics.jsonl").write_text(
            "".join(json.dumps({"iteration": i, "phase": "policy", "success": 0.1 * i + seed}) + "\n"
                    for i in (1, 2)))
    (tmp_path / "seed-x").mkdir()  # not a seed folder
    seed_dirs = find_seed_dirs(tmp_path)
    assert list(seed_dirs) == [0, 1, 2]
    rows = load_rows(seed_dirs)
    assert list(rows) == ["react", "distill_resim", "grpo"]  # table order, not file order
    summary = {row["stem"]: row for row in summarise(rows)}
    mean, low, high = seed_mean_ci95([0.6, 0.7, 0.8])
    assert summary["distill_resim"]["success_id"] == {"mean": pytest.approx(mean), "ci95": [low, high],
                                                      "min": 0.6, "max": 0.8, "n": 3}
    table = table_markdown(summarise(rows))
    assert f"| DISTILL(RESIM) | 3 | 70.0 [{100 * low:.0f}, {100 * high:.0f}] |" in table
    assert "71.9 / 63.7 / 0.62 / 2.0x" in table  # the paper's numbers beside ours
    points, r = success_sim_points(rows)
    assert len(points) == 9 and r is not None and r > 0.9
    assert success_by_length(rows) == {"DISTILL(RESIM)": {4: [3, 6], 5: [0, 3]}}
    curves = rl_curves(seed_dirs)
    assert list(curves) == ["+GRPO"] and [row["success"] for row in curves["+GRPO"]] == pytest.approx([1.1, 1.2])


def test_a_run_folder_with_its_own_metrics_is_one_seed(tmp_path):
    (tmp_path / "metrics").mkdir()
    assert find_seed_dirs(tmp_path) == {0: tmp_path}
    assert find_seed_dirs(tmp_path / "none") == {}


def test_fill_missing_lengths_replays_only_rows_that_lack_them(tmp_path):
    folder = _seed_folder(tmp_path, 0, {"distill_resim": _row("DISTILL(RESIM)", 0.5, 0.0, 0.5, 130.0, 2),
                                        "react": _row("REACT", 0.0, 0.0, 0.0, 10.0, 0)})
    shutil.copytree(tiny_distill_dir(), folder / "distill")
    preset = get_preset("tiny", max_steps=3, eval_batch_size=4)
    rows = load_rows(find_seed_dirs(tmp_path))
    lines = fill_missing_lengths(rows, find_seed_dirs(tmp_path), preset, log=lambda *_: None)
    assert len(lines) == 2 and "replayed" in lines[0]  # ID and OOD of the one policy with a model
    saved = json.loads((folder / "metrics" / "distill_resim.json").read_text())
    assert sum(played for _, played in saved["successes_by_optimal_length_id"].values()) == 2
    assert "successes_by_optimal_length_id" not in json.loads((folder / "metrics" / "react.json").read_text())
    assert fill_missing_lengths(load_rows(find_seed_dirs(tmp_path)), find_seed_dirs(tmp_path), preset) == []


def test_cpu_name_gives_the_model_and_its_fp32_kernel_kind():
    def cpuinfo(flags):
        return f"processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse2 {flags}\n\n" * 2

    assert cpu_name(cpuinfo("avx2 avx512f amx_bf16 amx_tile")) == "Intel(R) Xeon(R) Processor (AMX and AVX-512)"
    assert cpu_name(cpuinfo("avx2 avx512f avx512bw")) == "Intel(R) Xeon(R) Processor (AVX-512, no AMX)"
    assert cpu_name(cpuinfo("avx avx2")) == "Intel(R) Xeon(R) Processor (AVX2, no AVX-512)"
    assert cpu_name(cpuinfo("sse4_2")) == "Intel(R) Xeon(R) Processor"
    assert cpu_name("") and cpu_name()  # no /proc/cpuinfo text: the platform's name
