"""The pipeline command, lightly: argument checks, a real papermill run of a small
notebook through ``run_notebooks``, and the results table. (Every real notebook
is executed by tests/test_notebooks.py.)"""

from __future__ import annotations

import json

import nbformat
import pytest

from dynamind_lite import pipeline
from dynamind_lite.evaluate import results_row, results_table_markdown

ROW_NOTEBOOK = '''
import json
from pathlib import Path
Path(run_dir, "metrics").mkdir(parents=True, exist_ok=True)
from dynamind_lite.evaluate import results_row
split = {"success_rate": 0.5, "ci95": [0.1, 0.9], "num_levels": 4, "sim_score": 0.25, "sim_cell_accuracy": 0.9,
         "sim_step_fraction": 1.0, "mean_gen_tokens": 12.0, "invalid_action_rate": 0.0}
row = results_row(f"M-{preset}-{seed}", split, base_gen_tokens=6.0) | {"smoke": smoke}
Path(run_dir, "metrics", "m.json").write_text(json.dumps(row))
assert not fail, "asked to fail"
'''


def _write_notebook(path, body: str) -> None:
    params = nbformat.v4.new_code_cell('preset = "tiny"\nseed = 0\nrun_dir = "x"\nsmoke = False\nfail = False')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_run_notebooks_executes_with_the_parameters_and_collects_rows(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    _write_notebook(source / "row.ipynb", ROW_NOTEBOOK)
    run_dir = tmp_path / "runs" / "t"
    timings = pipeline.run_notebooks(run_dir, preset="small", seed=3, smoke=True, notebooks=["row"],
                                     source_dir=source, log=lambda *_: None)
    assert set(timings) == {"row"} and (run_dir / "row.ipynb").is_file()
    (row,) = pipeline.collect_rows(run_dir)
    assert row["method"] == "M-small-3" and row["smoke"] is True
    table = results_table_markdown([row])
    assert "| M-small-3 | 50.0 [10, 90] | - | 50.0 | 0.25 (0.90) | - | 12.0 (2.00x) | 0.0 / - |" in table


def test_a_failing_notebook_names_its_executed_copy(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    _write_notebook(source / "row.ipynb", ROW_NOTEBOOK.replace("assert not fail", "assert fail"))
    with pytest.raises(RuntimeError, match=r"notebook row failed .*row\.ipynb"):
        pipeline.run_notebooks(tmp_path / "run", preset="tiny", seed=0, smoke=True, notebooks=["row"],
                               source_dir=source, log=lambda *_: None)


def test_collect_rows_needs_notebook_04(tmp_path):
    with pytest.raises(RuntimeError, match="did notebook 04 run"):
        pipeline.collect_rows(tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--name", "../escape"], "--name"),
    (["--name", "ok", "--preset", "huge"], "unknown preset"),
    (["--preset", "tiny"], "required"),
])
def test_bad_arguments_exit_2_before_running_anything(argv, message, capsys, tmp_path):
    assert pipeline.main([*argv, "--runs-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_results_rows_keep_the_two_splits_apart():
    def split(success, steps, states, sim, tokens):
        return {"success_rate": success, "ci95": [0.0, 1.0], "num_levels": 10, "num_steps": steps,
                "num_simulated_states": states, "sim_score": sim, "sim_cell_accuracy": sim,
                "sim_step_fraction": 1.0, "mean_gen_tokens": tokens, "invalid_action_rate": 0.0}

    row = results_row("D", split(0.8, 100, 300, 0.5, 200.0), split(0.4, 300, 100, 1.0, 100.0), base_gen_tokens=50.0)
    assert row["success_avg"] == pytest.approx(0.6)
    assert (row["sim_score_id"], row["sim_score_ood"]) == (0.5, 1.0)
    assert (row["mean_gen_tokens_id"], row["mean_gen_tokens_ood"]) == (200.0, 100.0)
    assert row["gen_token_ratio"] == pytest.approx(200.0 / 50.0)  # the paper reads Gen.Token on ID
    table = results_table_markdown([row, results_row("ID only", split(0.5, 10, 0, 0.0, 20.0))])
    assert "| D | 80.0 [0, 100] | 40.0 [0, 100] | 60.0 | 0.50 (0.50) | 1.00 (1.00) | 200.0 (4.00x) |" in table
    assert "| ID only | 50.0 [0, 100] | - | 50.0 | 0.00 (0.00) | - | 20.0 |" in table
    json.dumps(row)


@pytest.mark.slow
@pytest.mark.notebook
def test_the_pipeline_runs_end_to_end_in_smoke_mode(tmp_path, capsys):
    """The README's main command at smoke size: notebooks 01-06 through papermill
    into runs/<name>/, the results table printed, and the distilled and RL models
    (distill/, grpo/, dyna_grpo/) loaded by the evaluate command."""
    from dynamind_lite import evaluate
    from dynamind_lite.paths import level_file

    code = pipeline.main(["--preset", "tiny", "--name", "smoke", "--smoke", "--runs-dir", str(tmp_path)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    run = tmp_path / "smoke"
    assert all((run / f"{name}.ipynb").is_file() for name in pipeline.NOTEBOOKS)
    results = json.loads((run / "results.json").read_text())
    methods = [row["method"] for row in results["rows"]]
    assert methods == ["REACT (tiny base)", "RESIM (at inference)", "DISTILL(RESIM)", "+GRPO", "+DYNA-GRPO"]
    assert results["smoke"] is True and set(results["notebook_seconds"]) == set(pipeline.NOTEBOOKS)
    for method in methods:
        assert f"| {method} |" in printed.out and f"| {method} |" in (run / "results.md").read_text()

    for model in ("distill", "grpo", "dyna_grpo"):
        out = tmp_path / f"{model}_metrics.json"
        assert evaluate.main(["--model", str(run / model), "--levels", str(level_file("id_test")), "--out", str(out),
                              "--limit", "2", "--max-steps", "2", "--max-new-tokens", "16"]) == 0
        assert json.loads(out.read_text())["num_levels"] == 2
    assert len((run / "grpo" / "rl_metrics.jsonl").read_text().splitlines()) == 2
