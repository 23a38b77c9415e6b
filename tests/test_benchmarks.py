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
