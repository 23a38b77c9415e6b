"""Benchmark scripts stay runnable and document their command."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_compiles_and_documents_its_command(path):
    py_compile.compile(str(path), doraise=True)
    assert f"python benchmarks/{path.name}" in path.read_text()


def test_stage1_variant_selects_levels_by_split_count_and_board():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("stage1_variant", BENCHMARKS[0].parent / "stage1_variant.py")
    variant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variant)
    first = [json.loads(line) for line in variant.select_levels("id_train:3")]
    assert [level["id"] for level in first] == ["id_train_0000", "id_train_0001", "id_train_0002"]
    two_box = [json.loads(line) for line in variant.select_levels("mix_train:4@7x7/2")]
    assert len(two_box) == 4 and all(level["size"] == [7, 7] and level["num_boxes"] == 2 for level in two_box)
    with pytest.raises(ValueError, match="SPLIT"):
        variant.select_levels("id_train:many")
