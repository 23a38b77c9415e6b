"""Benchmark scripts stay runnable; the held-out level generator of
``benchmarks/heldout_styles.py`` is seeded, valid and disjoint from the shipped ID splits."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import pytest

from dynamind_lite.envs.sokoban import is_solved, load_levels, parse_level, simulate_actions, solve
from dynamind_lite.paths import level_file

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_compiles_and_documents_its_command(path):
    py_compile.compile(str(path), doraise=True)
    assert f"python benchmarks/{path.name}" in path.read_text()


def _heldout_module():
    path = next(p for p in BENCHMARKS if p.name == "heldout_styles.py")
    spec = importlib.util.spec_from_file_location("heldout_styles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gym_style_levels_are_seeded_solvable_and_held_out():
    heldout = _heldout_module()
    assert heldout.gym_style_level(5) == heldout.gym_style_level(5)
    levels = heldout.make_levels(30, first_seed=123)
    shipped = {level["grid"] for split in ("id_train", "id_val", "id_test") for level in load_levels(level_file(split))}
    assert len({level["grid"] for level in levels}) == 30
    for level in levels:
        parsed = parse_level(level["grid"])
        assert (parsed.board.height, parsed.board.width) == (6, 6) and len(parsed.boxes) == 1
        assert level["grid"] not in shipped and not is_solved(level["grid"])
        assert level["solution"] == solve(level["grid"]) and is_solved(simulate_actions(level["grid"], level["solution"])[-1])
