"""Benchmark scripts stay runnable and document their command."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS[0].parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_compiles_and_documents_its_command(path):
    py_compile.compile(str(path), doraise=True)
    assert f"python benchmarks/{path.name}" in path.read_text()


def test_stage1_variant_selects_levels_by_split_count_and_board(tmp_path):
    import json

    variant = load_benchmark("stage1_variant")
    first = [json.loads(line) for line in variant.select_levels("id_train:3")]
    assert [level["id"] for level in first] == ["id_train_0000", "id_train_0001", "id_train_0002"]
    two_box = [json.loads(line) for line in variant.select_levels("mix_train:4@7x7/2")]
    assert len(two_box) == 4 and all(level["size"] == [7, 7] and level["num_boxes"] == 2 for level in two_box)
    with pytest.raises(ValueError, match="SPLIT"):
        variant.select_levels("id_train:many")
    level_file = tmp_path / "levels.jsonl"  # a level file of one's own, e.g. make_sokoban_levels.py --extra-id
    level_file.write_text("".join(json.dumps({"id": f"x{i}", "size": [6, 6], "num_boxes": 1}) + "\n" for i in range(5)))
    assert [json.loads(line)["id"] for line in variant.select_levels(f"{level_file}:2")] == ["x0", "x1"]


def test_bench_pipeline_names_a_run_that_has_not_finished(tmp_path):
    bench = load_benchmark("bench_pipeline")
    with pytest.raises(SystemExit, match="no results.json"):
        bench.main(["--run-dir", str(tmp_path)])


def test_heldout_decision_quality_splits_steps_by_exact_simulation():
    from dynamind_lite.response import format_response, format_rollout
    from dynamind_lite.rollout import EpisodeRecord, StepRecord

    heldout = load_benchmark("heldout_styles")
    # Worked by hand: the box is below the player and the target two rows below it, so Down is optimal.
    start = "\n".join(["######", "#_P__#", "#_X__#", "#____#", "#_O__#", "######"])
    after_down = "\n".join(["######", "#____#", "#_P__#", "#_X__#", "#_O__#", "######"])
    wrong_down = after_down.replace("#_P__#", "#__P_#")

    def step(t: int, simulated: str, action: str, rolled_out: str = "Down", observation: str = start) -> StepRecord:
        response = format_response(format_rollout(1, [rolled_out], [simulated], 9.9) + f"\nPlan: {rolled_out}",
                                   action)
        return StepRecord(t=t, observation=observation, messages=[], response=response, num_tokens=9, prompt_tokens=9,
                          finish_reason="stop", action=action, reward=-0.1, next_observation=start,
                          terminated=False, truncated=False)

    stuck = "\n".join(["######", "#P___#", "#X___#", "#____#", "#_O__#", "######"])  # box on the wall: unsolvable
    record = EpisodeRecord(level_id="hand", grid=start,
                           steps=[step(0, after_down, "Down"), step(1, after_down, "Up"), step(2, wrong_down, "Down"),
                                  step(3, start, "Up", rolled_out="Up"),  # Up bumps into the wall: exact, not optimal
                                  step(4, stuck, "Down", observation=stuck)])
    assert heldout.decision_quality([record]) == pytest.approx(
        {"dead_share": 1 / 5, "exact_share": 3 / 4, "optimal_if_exact": 1 / 3, "optimal_if_wrong": 1.0,
         "optimal_rolled_out_if_exact": 2 / 3})
    assert heldout.decision_quality([]) == {"dead_share": 0.0, "exact_share": 0.0, "optimal_if_exact": None,
                                            "optimal_if_wrong": None, "optimal_rolled_out_if_exact": None}


def test_heldout_merge_pools_per_seed_files_into_one_table(tmp_path, capsys):
    import json

    heldout = load_benchmark("heldout_styles")

    def saved(seed: int, success: float) -> str:
        decisions = {"dead_share": 0.1 * seed, "exact_share": 0.5, "optimal_if_exact": 0.4, "optimal_if_wrong": None,
                     "optimal_rolled_out_if_exact": 0.8}
        split = {"success_rate": [success], "sim_score": [0.5], "sim_cell_accuracy": [0.9],
                 "invalid_action_rate": [0.0], "by_length": [{"4": success, "5": 0.0}], "decisions": [decisions]}
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"models": [f"m{seed}"], "cpu": "cpu", "max_steps": 30,
                                    "splits": {"id_test": split}}))
        return str(path)

    files = [saved(0, 0.2), saved(1, 0.6)]
    assert heldout.main(["--merge", *files, "--out", str(tmp_path / "all.json")]) == 0
    table = capsys.readouterr().out
    assert "2 model(s)" in table and "| 40.0 [20, 60] |" in table
    assert "| id_test | 40 | 0 |" in table  # by length: 4 moves (20 + 60) / 2, 5 moves 0
    assert "| id_test | 5 | 50 | 40 | - | 80 |" in table  # dead-state share (0 + 10) / 2; no wrong simulations
    merged = json.loads((tmp_path / "all.json").read_text())
    assert merged["models"] == ["m0", "m1"] and merged["splits"]["id_test"]["success_rate"] == [0.2, 0.6]
    with pytest.raises(SystemExit):
        heldout.main(["--merge", *files, "--models", "x"])
