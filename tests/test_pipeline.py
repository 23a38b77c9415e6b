"""The pipeline command, lightly: argument checks, a real papermill run of a small
notebook through ``run_notebooks``, and the results table. (Every real notebook
is executed by tests/test_notebooks.py.)"""

from __future__ import annotations

import json

import nbformat
import pytest

from dynamind_lite import pipeline
from dynamind_lite.estimates import TINY_MEASURED_SECONDS, TINY_SLOWEST_HOST_FACTOR
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


def _seed_notebook(path, body: str = "") -> None:
    """A notebook that records its run (seed, and a counter per run) and fails for a
    seed listed in ``run_dir/../fail``."""
    _write_notebook(path, body or """
from pathlib import Path
fail_file = Path(run_dir).parent / "fail"
assert not (fail_file.is_file() and str(seed) in fail_file.read_text().split()), f"seed {seed} asked to fail"
runs = Path(run_dir, "runs.txt")
runs.write_text(runs.read_text() + "x" if runs.is_file() else "x")
""")


def test_why_run_names_every_reason_to_run_again(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    _write_notebook(source / "row.ipynb", ROW_NOTEBOOK)
    run_dir = tmp_path / "run"
    pipeline.run_notebooks(run_dir, preset="tiny", seed=0, smoke=True, notebooks=["row"], source_dir=source,
                           log=lambda *_: None)
    executed, parameters = run_dir / "row.ipynb", {"preset": "tiny", "seed": 0, "run_dir": str(run_dir), "smoke": True}
    assert pipeline.why_run(executed, source / "row.ipynb", parameters) is None
    assert pipeline.why_run(executed, source / "row.ipynb", parameters | {"seed": 1}) == "its parameters changed"
    assert pipeline.why_run(tmp_path / "none.ipynb", source / "row.ipynb", parameters) == "not run yet"
    notebook = json.loads(executed.read_text())
    notebook["cells"][-1]["metadata"]["papermill"]["status"] = "pending"  # what a killed run leaves
    executed.write_text(json.dumps(notebook))
    assert pipeline.why_run(executed, source / "row.ipynb", parameters) == "it stopped part-way"
    notebook["cells"][-1]["metadata"]["papermill"].update(status="completed", start_time=None, end_time=None)
    executed.write_text(json.dumps(notebook))  # what papermill leaves after its kernel died
    assert pipeline.why_run(executed, source / "row.ipynb", parameters) == "it stopped part-way"
    executed.write_text(executed.read_text()[:100])
    assert pipeline.why_run(executed, source / "row.ipynb", parameters) == "its executed copy is unreadable"
    pipeline.run_notebooks(run_dir, preset="tiny", seed=0, smoke=True, notebooks=["row"], source_dir=source,
                           log=lambda *_: None)
    _write_notebook(source / "row.ipynb", ROW_NOTEBOOK + "\nprint('edited')")
    assert pipeline.why_run(executed, source / "row.ipynb", parameters) == "the notebook changed since"


def test_a_stopped_three_seed_batch_resumes_where_it_stopped(tmp_path):
    """Seed 1 fails (the batch stops there); started again, seed 0 is skipped and
    seeds 1 and 2 run; the results notebook runs at the end over all seeds."""
    source = tmp_path / "src"
    source.mkdir()
    _seed_notebook(source / "a.ipynb")
    _seed_notebook(source / "b.ipynb")
    _write_notebook(source / "results.ipynb", """
from pathlib import Path
seeds = sorted(p.name for p in Path(run_dir).glob("seed-*") if (p / "runs.txt").is_file())
Path(run_dir, "seen.txt").write_text(" ".join(seeds))
""")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "fail").write_text("1")
    batch = dict(preset="tiny", seeds=[0, 1, 2], smoke=True, notebooks=["a", "b"], results_notebook="results",
                 source_dir=source, log=lambda *_: None)
    with pytest.raises(RuntimeError, match="notebook a failed"):
        pipeline.run_batch(run_dir, **batch)
    assert (run_dir / "seed-0" / "runs.txt").read_text() == "xx"  # a and b ran for seed 0
    assert not (run_dir / "seed-2").exists() and not (run_dir / "seen.txt").exists()

    (run_dir / "fail").unlink()
    lines = []
    timings = pipeline.run_batch(run_dir, **batch | {"log": lines.append})
    assert timings["seed-0"] == {"a": 0.0, "b": 0.0}  # complete: skipped
    assert all(t > 0 for t in (*timings["seed-1"].values(), *timings["seed-2"].values()))
    assert (run_dir / "seed-0" / "runs.txt").read_text() == "xx"
    assert (run_dir / "seed-1" / "runs.txt").read_text() == "xx" == (run_dir / "seed-2" / "runs.txt").read_text()
    assert (run_dir / "seen.txt").read_text() == "seed-0 seed-1 seed-2"
    assert any("seed 0) is complete" in line for line in lines)
    assert any("it failed last time" in line for line in lines)


def test_plan_names_what_runs_and_what_is_skipped(tmp_path):
    run_dir = tmp_path / "run"
    lines, seconds = pipeline.plan_lines(run_dir, "tiny", [0, 1], smoke=False)
    assert lines[1].startswith("  seed 0: 01 run") and "06 run" in lines[2]
    per_seed = sum(seconds_of for name, seconds_of in TINY_MEASURED_SECONDS.items() if name != "07_results")
    assert seconds == 2 * per_seed + TINY_MEASURED_SECONDS["07_results"]  # notebooks 01-06 twice, then 07 once
    assert lines[-1] == (f"  estimated time: {seconds / 60:.0f} min (measured on a 2-core Xeon with AMX; "
                         f"{seconds * TINY_SLOWEST_HOST_FACTOR / 60:.0f} min on the slowest 2-core host measured)")


@pytest.mark.parametrize("preset", ["small", "full"])
def test_dry_run_prints_the_plan_with_memory_and_time(preset, tmp_path, capsys):
    import torch

    code = pipeline.main(["--preset", preset, "--run-dir", str(tmp_path / "run"), "--seeds", "0", "1", "2",
                          "--dry-run"])
    out = capsys.readouterr().out
    assert "plan: preset " + preset in out and "seed 2:" in out
    assert "| SFT (notebook 04) |" in out and "| RL per method (notebook 06) |" in out
    assert " B parameters" in out and "GiB" in out
    assert (code == 1) == (torch.cuda.device_count() == 0 or "cannot run here" in out)
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was made


@pytest.mark.parametrize("argv, message", [
    (["--preset", "full", "--name", "x", "--seeds", "0", "0", "--dry-run"], "distinct"),
    (["--preset", "full", "--name", "x", "--seeds", "-1", "--dry-run"], ">= 0"),
    (["--preset", "small", "--name", "x", "--run-dir", "y", "--dry-run"], "either --name"),
    (["--preset", "small", "--run-dir", "/etc/hostname", "--dry-run"], "not a folder"),
])
def test_dry_run_fails_clearly_on_bad_input(argv, message, capsys):
    assert pipeline.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.notebook
def test_the_pipeline_runs_end_to_end_in_smoke_mode_and_resumes_after_a_kill(tmp_path):
    """The README's main command at smoke size: killed while notebook 04 runs, then
    started again with the same command, it skips every complete notebook and
    finishes: notebooks 01-06, notebook 07's table, and distilled and RL models
    that the evaluate command loads. One seed keeps the suite short: the batch over
    several seeds is test_a_stopped_three_seed_batch_resumes_where_it_stopped, and
    notebook 07's table over three seeds is its smoke run on the shipped results."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from dynamind_lite import evaluate
    from dynamind_lite.paths import level_file

    command = [sys.executable, "-m", "dynamind_lite", "pipeline", "--preset", "tiny", "--name", "smoke", "--smoke",
               "--runs-dir", str(tmp_path), "--seeds", "0"]
    run, seed0 = tmp_path / "smoke", tmp_path / "smoke" / "seed-0"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 900
    while not (seed0 / "04_resim_sft.ipynb").is_file():
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "the run never reached notebook 04"
        time.sleep(0.5)
    time.sleep(3)
    os.killpg(first.pid, signal.SIGKILL)  # the pipeline and its notebook kernel, mid-notebook
    first.wait()
    assert not (run / "07_results.ipynb").exists()

    second = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    plan = second.stdout.split("plan:")[1].split("then")[0]
    assert "seed 0: 01 skip, 02 skip, 03 skip, 04 run, 05 run, 06 run" in plan
    results = json.loads((run / "results.json").read_text())
    seconds = results["notebook_seconds"]["seed-0"]
    assert [seconds[name] for name in pipeline.NOTEBOOKS[:3]] == [0.0] * 3 and seconds["04_resim_sft"] > 0
    methods = ["REACT (tiny base)", "RESIM (at inference)", "DISTILL(RESIM)", "+GRPO", "+DYNA-GRPO"]
    assert [row["method"] for row in results["rows"]] == methods
    for method in methods:
        assert f"| {method} | 1 |" in second.stdout, f"{method}: not a row of notebook 07's table"
    assert all((seed0 / f"{name}.ipynb").is_file() for name in pipeline.NOTEBOOKS)
    assert (run / "07_results.ipynb").is_file()

    for model in ("distill", "grpo", "dyna_grpo"):
        out = tmp_path / f"{model}_metrics.json"
        assert evaluate.main(["--model", str(seed0 / model), "--levels", str(level_file("id_test")), "--out",
                              str(out), "--limit", "2", "--max-steps", "2", "--max-new-tokens", "16"]) == 0
        assert json.loads(out.read_text())["num_levels"] == 2
    assert len((seed0 / "grpo" / "rl_metrics.jsonl").read_text().splitlines()) == 2
