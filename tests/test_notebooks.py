"""Every notebook under notebooks/ runs headless with papermill at ``smoke=True``.

Notebooks are discovered, so a new notebook is covered without editing this file.
Each runs alone (no earlier notebook has run), with the notebooks/ folder as
working directory, as in JupyterLab.
"""

from __future__ import annotations

import time
from pathlib import Path

import papermill
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SMOKE_BUDGET_S = 120


def test_notebooks_are_discovered():
    assert NOTEBOOKS, "no notebooks found under notebooks/"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    started = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(tmp_path / path.name),
        parameters={"smoke": True, "seed": 0, "run_dir": str(tmp_path / "run")},
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=SMOKE_BUDGET_S,
    )
    elapsed = time.perf_counter() - started
    print(f"{path.name}: smoke run {elapsed:.1f} s")
