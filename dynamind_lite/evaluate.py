"""Evaluation: success rate, Sim Score and Gen.Token of a policy on a level file.

Introduced in ``notebooks/04_resim_sft.ipynb`` (the results table); also the
command ``python -m dynamind_lite evaluate --model PATH --levels FILE.jsonl --out metrics.json``.

The three numbers of the paper's tables, as computed here:

- **Success rate**: fraction of levels solved within the step budget, with a 95%
  Wilson score interval (``metrics.wilson_ci95``).
- **Sim Score** (exact, Sokoban): every future state a response simulates is
  compared with the real one. A rollout ``Rollout i: A_1 .. A_n`` of a response
  (``response.parse_rollouts``) promises n states: its k-th ``After A_k:`` block
  is the state the policy claims the env reaches from the current state s_t by
  the plan prefix (A_1, ..., A_k); the real one is
  ``envs.sokoban.simulate_actions(s_t, [A_1..A_k])[-1]``. A state scores

      exact(sim, real)     = 1 if sim == real else 0
      cell_acc(sim, real)  = (# equal cells) / (# cells), 0 for a shape mismatch

  and scores 0 (both) when it is *missing* (the plan names more actions than
  there are blocks, e.g. a response cut at ``max_new_tokens``), *out of step*
  (the block's header names another action than the plan's k-th), or has no
  real counterpart (an unknown action word at or before k in the plan). Blocks
  beyond the plan's length are scored by their headers. The run's scores are
  means over *all states of all steps* (micro average: a response with five
  rollouts weighs more than one with one)::

      sim_score         = sum_states exact    / num_simulated_states
      sim_cell_accuracy = sum_states cell_acc / num_simulated_states

  Convention for responses that simulate nothing (no rollout, e.g. the base
  model): they add no state, so they neither raise nor lower the score;
  ``sim_step_fraction`` reports the fraction of steps that simulate at least one
  state, and a run in which no step simulates anything has ``sim_score = 0.0``
  (nothing was simulated correctly; the LLM judge scores a missing state 0 too).
- **Gen.Token**: mean generated tokens per step (``mean_gen_tokens``), and its
  ratio to the base model on the same levels (``gen_token_ratio``) when a base
  model is given.

- **Sim Score (exact, text worlds)**: the same rules, with the real state found
  by playing the plan prefix in the env from the step's snapshot
  (``simrollout.execute_plan``) and compared as text, line by line
  (``compare_simulated_texts``); a command that is not admissible really leads
  to "Nothing happens.". ``sim_cell_accuracy`` is then the exact score too.

Where we depart from the paper and why: its Sim Score is judged by Qwen3-235B;
Sokoban states can be compared exactly, which is free, deterministic and
unbiased. ``judge_sim_score`` keeps the judge route (``llm_sim_score``) for
environments whose states are free text, and as a cross-check here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamind_lite.envs.sokoban import is_solved, load_levels, simulate_actions, solution_length, step_grid
from dynamind_lite.generation import GenerationConfig, Generator, make_generator
from dynamind_lite.io import write_json_atomic
from dynamind_lite.llm import ChatClient, LLMError, fill_template, load_template, parse_number, shorten
from dynamind_lite.metrics import successes_by_optimal_length, wilson_ci95
from dynamind_lite.response import parse_answer, parse_rollouts, same_state
from dynamind_lite.rollout import EpisodeRecord, run_episodes
from dynamind_lite.simrollout import execute_plan
from dynamind_lite.worlds import SOKOBAN, get_world

# --------------------------------------------------------------------------- #
# Exact Sim Score (Sokoban)
# --------------------------------------------------------------------------- #


def cell_accuracy(simulated: str, real: str) -> float:
    """Fraction of grid cells equal in ``simulated`` and ``real`` (rows split on
    newlines), in [0, 1]; 0.0 when the shapes differ (row count or a row length)."""
    sim_rows, real_rows = simulated.split("\n"), real.split("\n")
    if len(sim_rows) != len(real_rows) or any(len(a) != len(b) for a, b in zip(sim_rows, real_rows)):
        return 0.0
    cells = sum(len(row) for row in real_rows)
    if cells == 0:
        return 0.0
    return sum(a == b for sim, rl in zip(sim_rows, real_rows) for a, b in zip(sim, rl)) / cells


@dataclass(frozen=True)
class SimulatedState:
    """One promised state of a rollout of a response, next to the real state.

    rollout: the ``Rollout i`` number; depth: k (1-based) within the rollout.
    actions: the prefix (A_1..A_k) of the plan (None for an unknown word).
    simulated: the grid the response wrote after ``After A_k:`` ('\\n'-joined
        rows, possibly empty), or None when the block is missing.
    real: the env's grid after the prefix, or None when the prefix holds an
        unknown action.
    in_step: the block's header names A_k (False for a missing block).
    exact: 1.0 or 0.0; cell_accuracy: in [0, 1].
    """

    rollout: int
    depth: int
    actions: tuple[str | None, ...]
    simulated: str | None
    real: str | None
    in_step: bool
    exact: float
    cell_accuracy: float


def compare_simulated_states(response: str, observation: str) -> list[SimulatedState]:
    """Every state promised by the rollouts of ``response``, compared with the
    real state reached from ``observation`` (s_t) by the plan prefix (rules in
    the module docstring). Never raises on malformed text."""
    compared = []
    for rollout in parse_rollouts(response):
        blocks = rollout.states  # [(header action or None, grid text)]
        plan = list(rollout.actions)
        # A_k: the plan's k-th action; blocks written beyond the plan name their own.
        actions = plan + [header for header, _ in blocks[len(plan):]]
        known = next((k for k, action in enumerate(actions) if action is None), len(actions))
        real_states = simulate_actions(observation, actions[:known]) if known else []
        for k, action in enumerate(actions):
            header, simulated = blocks[k] if k < len(blocks) else (None, None)
            real = real_states[k] if k < known else None
            in_step = simulated is not None and header == action
            scored = in_step and real is not None
            compared.append(SimulatedState(
                rollout=rollout.index, depth=k + 1, actions=tuple(actions[:k + 1]), simulated=simulated,
                real=real, in_step=in_step, exact=float(scored and simulated == real),
                cell_accuracy=cell_accuracy(simulated, real) if scored else 0.0))
    return compared


UNBOUNDED_STEPS = 10**6
"""Step budget of the env that replays text-world plans for the Sim Score."""


def compare_simulated_texts(env: Any, response: str) -> list[SimulatedState]:
    """Text worlds: every state promised by the rollouts of ``response``, compared
    with the real observation that the plan prefix reaches from ``env``'s current
    state (played from a snapshot; the env is put back). Same rules as
    ``compare_simulated_states``; never raises on malformed text."""
    compared = []
    for rollout in parse_rollouts(response, commands=True):
        blocks = rollout.states
        actions = list(rollout.actions) + [header for header, _ in blocks[len(rollout.actions):]]
        known = next((k for k, action in enumerate(actions) if action is None), len(actions))
        real_states = [state for _, state in execute_plan(env, actions[:known])] if known else []
        for k, action in enumerate(actions):
            header, simulated = blocks[k] if k < len(blocks) else (None, None)
            real = real_states[k] if k < len(real_states) else None
            in_step = simulated is not None and header == action
            exact = float(in_step and real is not None and same_state(simulated, real, commands=True))
            compared.append(SimulatedState(rollout=rollout.index, depth=k + 1, actions=tuple(actions[:k + 1]),
                                           simulated=simulated, real=real, in_step=in_step, exact=exact,
                                           cell_accuracy=exact))
    return compared


def _text_world_states(records: Iterable[EpisodeRecord], world: Any):
    """(step, compared states) of text-world records, replaying each level once.
    The replay env has no step budget to speak of: a plan's real states do not
    depend on the episode's budget (as ``simulate_actions`` for Sokoban)."""
    env = world.make_env(UNBOUNDED_STEPS)
    for record in records:
        world.start(env, record.level)
        for step in record.steps:
            env.restore(step.snapshot)
            yield step, compare_simulated_texts(env, step.response)


def sim_score_summary(records: Iterable[EpisodeRecord], world: Any = SOKOBAN) -> dict[str, float | int]:
    """Exact Sim Score over every step of ``records`` (aggregation in the module docstring).

    Returns ``sim_score``, ``sim_cell_accuracy`` (both in [0, 1]),
    ``sim_step_fraction`` (steps that simulate >= 1 state / steps) and
    ``num_simulated_states``. ``world``: where the records were played (text
    worlds replay the plans in the env)."""
    num_steps = simulating_steps = 0
    exact_sum = cell_sum = 0.0
    num_states = 0
    if world.commands:
        compared = _text_world_states(records, world)
    else:
        compared = ((step, compare_simulated_states(step.response, step.observation))
                    for record in records for step in record.steps)
    for _, states in compared:
        num_steps += 1
        simulating_steps += bool(states)
        num_states += len(states)
        exact_sum += sum(s.exact for s in states)
        cell_sum += sum(s.cell_accuracy for s in states)
    return {
        "sim_score": exact_sum / num_states if num_states else 0.0,
        "sim_cell_accuracy": cell_sum / num_states if num_states else 0.0,
        "sim_step_fraction": simulating_steps / num_steps if num_steps else 0.0,
        "num_simulated_states": num_states,
    }


def step_is_optimal(observation: str, action: str | None) -> bool:
    """True when ``action`` starts an optimal solution from ``observation`` (the solver's
    distance drops by one, or the move solves the level); False for an invalid step."""
    if action is None:
        return False
    remaining = solution_length(observation)
    after = step_grid(observation, action)
    return remaining is not None and (is_solved(after) or solution_length(after) == remaining - 1)


def all_states_exact(response: str, observation: str) -> bool | None:
    """Whether every state ``response`` simulates from ``observation`` equals the real one;
    None when it simulates none."""
    states = compare_simulated_states(response, observation)
    return None if not states else all(s.exact for s in states)


def refinement_effects(records: Iterable[EpisodeRecord]) -> dict[str, Any]:
    """What SimRollout's refinement changed, over every refined step of ``records``
    (``notebooks/05_simrollout.ipynb``).

    A simulation is *right* when every state the response simulates is exact; an
    action is *right* when it starts an optimal solution (``step_is_optimal``).
    Returns counts (``refined_steps``, ``plan_statuses``) and, for ``sim`` and
    ``action``: ``wrong_first`` (the first response was wrong), ``corrected``
    (wrong -> right), ``broken`` (right -> wrong) and their rates."""
    from collections import Counter

    statuses: Counter = Counter()
    counts = {key: Counter(wrong_first=0, corrected=0, broken=0) for key in ("sim", "action")}
    refined = 0
    for record in records:
        for step in record.steps:
            refinement = step.refinement
            if refinement is None:
                continue
            statuses[refinement.plan.status] += 1
            if not refinement.refined:
                continue
            refined += 1
            pairs = {"sim": (all_states_exact(refinement.first_response, step.observation),
                             all_states_exact(step.response, step.observation)),
                     "action": (step_is_optimal(step.observation, parse_answer(refinement.first_response)),
                                step_is_optimal(step.observation, step.action))}
            for key, (first, then) in pairs.items():
                first, then = bool(first), bool(then)
                counts[key]["wrong_first"] += not first
                counts[key]["corrected"] += (not first) and then
                counts[key]["broken"] += first and not then
    summary: dict[str, Any] = {"refined_steps": refined, "plan_statuses": dict(statuses)}
    for key, c in counts.items():
        right_first = refined - c["wrong_first"]
        summary[key] = {**c, "corrected_rate": c["corrected"] / c["wrong_first"] if c["wrong_first"] else 0.0,
                        "broken_rate": c["broken"] / right_first if right_first else 0.0}
    return summary


# --------------------------------------------------------------------------- #
# Sim Score by an LLM judge (free-text states; the paper's set-up)
# --------------------------------------------------------------------------- #


def _simulated_text(state: SimulatedState) -> str:
    if state.simulated is None:
        return "(missing)"
    return state.simulated if state.in_step else f"(out of step)\n{state.simulated}"


def simulation_texts(response: str, observation: str) -> tuple[str, str] | None:
    """(simulated, real) texts of one step for a judge, or None when the response
    simulates nothing. Both list the states as ``Rollout i, after A_1 .. A_k:``
    followed by the grid; a missing block has simulated text ``(missing)``, a
    block out of step ``(out of step)`` before its grid, and a prefix
    with an unknown action real text ``(no such action)``."""
    states = compare_simulated_states(response, observation)
    if not states:
        return None
    headers = [f"Rollout {s.rollout}, after {' '.join(a or '?' for a in s.actions)}:" for s in states]
    simulated = "\n".join(f"{h}\n{_simulated_text(s)}" for h, s in zip(headers, states))
    real = "\n".join(f"{h}\n{s.real if s.real is not None else '(no such action)'}" for h, s in zip(headers, states))
    return simulated, real


def llm_sim_score(client: ChatClient, simulated: str, real: str, template: str | None = None,
                  max_tokens: int = 256) -> float:
    """How well ``simulated`` matches ``real``, judged by an LLM: a score in [0, 1].

    Introduced in ``notebooks/04_resim_sft.ipynb``. 1 = the simulated future
    state(s) are the real ones; 0 = unrelated or missing. ``simulated`` is the
    text the policy wrote (possibly empty), ``real`` what the env rendered.

    Raises LLMError when the judge's answer holds no unambiguous score in [0, 1].
    """
    if not isinstance(simulated, str) or not isinstance(real, str):
        raise ValueError("simulated and real must be strings")
    if not real.strip():
        raise ValueError("real must be the non-empty text of the real future state(s)")
    prompt = fill_template(load_template("sim_judge") if template is None else template,
                           simulated=simulated.strip("\n") or "(the agent wrote no state)",
                           real=real.strip("\n"))
    text = client.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens).text
    score = parse_number(text, "Score")
    if score is None or not 0.0 <= score <= 1.0:
        raise LLMError(f"Sim Score judge {client.model!r}: no score in [0, 1] in its answer: {shorten(repr(text))}")
    return score


def judge_sim_score(client: ChatClient, pairs: Sequence[tuple[str, str]]) -> float:
    """Sim Score by an LLM judge: mean of ``llm_sim_score(client, simulated, real)``
    over ``pairs`` of (simulated, real) texts, one per step, in [0, 1].

    For Sokoban build the pairs with ``simulation_texts``; for an environment
    with free-text states pass the texts directly. Raises ValueError on no pairs."""
    if not pairs:
        raise ValueError("judge_sim_score needs at least one (simulated, real) pair")
    return sum(llm_sim_score(client, simulated, real) for simulated, real in pairs) / len(pairs)


# --------------------------------------------------------------------------- #
# All metrics of one run
# --------------------------------------------------------------------------- #


def episode_metrics(records: Sequence[EpisodeRecord], world: Any = SOKOBAN) -> dict[str, Any]:
    """The metrics of one evaluation run (JSON-ready).

    success_rate in [0, 1] with ci95 = [low, high] (Wilson); mean_steps, mean_return;
    invalid_action_rate = invalid steps / steps; invalid_after_invalid_rate = the
    share of steps right after an invalid one that are invalid again (an agent
    stuck replaying a command; None when no invalid step has a next step);
    truncated_response_rate = steps cut at max_new_tokens / steps; mean_gen_tokens
    = generated tokens / steps; plus the exact Sim Score fields of ``sim_score_summary``."""
    if not records:
        raise ValueError("no episodes to score")
    steps = [step for record in records for step in record.steps]
    successes = sum(record.success for record in records)
    after_invalid = [step.invalid for record in records
                     for before, step in zip(record.steps, record.steps[1:]) if before.invalid]
    metrics: dict[str, Any] = {
        "num_levels": len(records),
        "num_successes": successes,
        "success_rate": successes / len(records),
        "ci95": list(wilson_ci95(successes, len(records))),
        "mean_steps": len(steps) / len(records),
        "mean_return": sum(r.total_reward for r in records) / len(records),
        "num_steps": len(steps),
        "invalid_action_rate": sum(s.invalid for s in steps) / len(steps),
        "invalid_after_invalid_rate": sum(after_invalid) / len(after_invalid) if after_invalid else None,
        "truncated_response_rate": sum(s.finish_reason == "length" for s in steps) / len(steps),
        "mean_gen_tokens": sum(s.num_tokens for s in steps) / len(steps),
    }
    metrics.update(sim_score_summary(records, world))
    metrics["successes_by_optimal_length"] = successes_by_optimal_length(records)
    return metrics



# --------------------------------------------------------------------------- #
# The paper-style results table (notebook 04, the pipeline)
# --------------------------------------------------------------------------- #


def _split_columns(metrics: dict[str, Any] | None, suffix: str, *, sim_is_real: bool = False,
                   tokens_key: str = "mean_gen_tokens") -> dict[str, Any]:
    """The per-split columns of a results row (``suffix`` "id" or "ood"); all None without metrics."""
    keys = ("success", "ci95", "num_levels", "sim_score", "sim_cell_accuracy", "sim_step_fraction",
            "mean_gen_tokens", "invalid_action_rate", "successes_by_optimal_length")
    if metrics is None:
        return {f"{key}_{suffix}": None for key in keys}
    return {
        f"success_{suffix}": metrics["success_rate"], f"ci95_{suffix}": metrics["ci95"],
        f"num_levels_{suffix}": metrics["num_levels"],
        f"sim_score_{suffix}": 1.0 if sim_is_real else metrics["sim_score"],
        f"sim_cell_accuracy_{suffix}": 1.0 if sim_is_real else metrics["sim_cell_accuracy"],
        f"sim_step_fraction_{suffix}": 1.0 if sim_is_real else metrics["sim_step_fraction"],
        f"mean_gen_tokens_{suffix}": metrics.get(tokens_key, 0.0),
        f"invalid_action_rate_{suffix}": 0.0 if sim_is_real else metrics["invalid_action_rate"],
        f"successes_by_optimal_length_{suffix}": metrics.get("successes_by_optimal_length"),
    }


def _finish_row(row: dict[str, Any], base_gen_tokens: float | None) -> dict[str, Any]:
    successes = [row[k] for k in ("success_id", "success_ood") if row[k] is not None]
    row["success_avg"] = sum(successes) / len(successes)
    row["gen_token_ratio"] = row["mean_gen_tokens_id"] / base_gen_tokens if base_gen_tokens else None
    return row


def results_row(method: str, id_metrics: dict[str, Any], ood_metrics: dict[str, Any] | None = None, *,
                base_gen_tokens: float | None = None, order: int = 0) -> dict[str, Any]:
    """One row of the results table from the metrics of the ID and OOD test runs.

    Per split (suffix ``_id`` / ``_ood``): success in [0, 1] and its ci95, Sim
    Score, cell accuracy, fraction of steps that simulate, mean generated tokens
    per step, invalid-action rate. ``success_avg`` is the mean success over the
    splits (the paper's AVG); ``gen_token_ratio`` = ID tokens per step /
    ``base_gen_tokens`` (the REACT base model's ID tokens per step), as the
    paper reads Sim Score and Gen.Token on the ID set. ``order`` sorts the rows."""
    row = {"method": method, "order": order, **_split_columns(id_metrics, "id"), **_split_columns(ood_metrics, "ood")}
    return _finish_row(row, base_gen_tokens)


def resim_results_row(resim_metrics: dict[str, Any], *, base_gen_tokens: float | None = None,
                      order: int = 0) -> dict[str, Any]:
    """The RESIM (at inference) row from ``collect.evaluate_resim``'s output
    (``{run_dir}/resim/metrics.json`` of notebook 03): search + aggregation at
    every step. Its simulated states are the real ones by construction
    (``resim.validate_resim_response``), so Sim Score = 1.0; Gen.Token is the
    length of a^ReSim in the policy's tokenizer (``mean_response_tokens``)."""
    splits = resim_metrics["splits"]
    id_split = next((v for k, v in splits.items() if k.startswith("id")), None)
    ood_split = next((v for k, v in splits.items() if k.startswith("ood")), None)
    if id_split is None:
        raise ValueError(f"RESIM metrics have no ID split (splits: {sorted(splits)})")
    row = {"method": resim_metrics.get("method", "RESIM"), "order": order,
           **_split_columns(id_split, "id", sim_is_real=True, tokens_key="mean_response_tokens"),
           **_split_columns(ood_split, "ood", sim_is_real=True, tokens_key="mean_response_tokens")}
    return _finish_row(row, base_gen_tokens)


def results_table_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The paper-style table (Markdown) of ``results_row`` dicts: success ID / OOD
    (%, 95% CI), AVG, Sim Score ID and OOD (cell accuracy), Gen.Token on ID
    (x base), invalid actions ID / OOD."""

    def pct(value: float | None, ci: Sequence[float] | None = None) -> str:
        if value is None:
            return "-"
        return f"{100 * value:.1f}" + (f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci else "")

    def sim(row: dict[str, Any], suffix: str) -> str:
        if row[f"success_{suffix}"] is None:
            return "-"
        if not row[f"sim_step_fraction_{suffix}"]:
            return "- (no sim.)"
        return f"{row[f'sim_score_{suffix}']:.2f} ({row[f'sim_cell_accuracy_{suffix}']:.2f})"

    lines = ["| Method | Success ID % [95% CI] | Success OOD % [95% CI] | AVG % | Sim Score ID (cells) "
             "| Sim Score OOD (cells) | Gen.Token ID (x base) | Invalid % ID / OOD |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ratio = f" ({row['gen_token_ratio']:.2f}x)" if row.get("gen_token_ratio") else ""
        lines.append(f"| {row['method']} | {pct(row['success_id'], row['ci95_id'])} "
                     f"| {pct(row['success_ood'], row['ci95_ood'])} | {pct(row['success_avg'])} "
                     f"| {sim(row, 'id')} | {sim(row, 'ood')} | {row['mean_gen_tokens_id']:.1f}{ratio} "
                     f"| {pct(row['invalid_action_rate_id'])} / {pct(row['invalid_action_rate_ood'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# Playing a level file (Python API, used by notebook 04 and the command)
# --------------------------------------------------------------------------- #


def evaluate_generator(
    generator: Generator,
    levels: Sequence[dict | str],
    *,
    max_steps: int,
    history_len: int = 1,
    generation_config: GenerationConfig | None = None,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
    world: Any = SOKOBAN,
) -> tuple[dict[str, Any], list[EpisodeRecord]]:
    """Play ``levels`` with ``generator`` (``rollout.run_episodes``, same arguments)
    and score the episodes (``episode_metrics``). Returns ``(metrics, records)``."""
    records = run_episodes(generator, levels, max_steps=max_steps, history_len=history_len,
                           generation_config=generation_config, batch_size=batch_size, seed=seed,
                           progress=progress, world=world)
    return episode_metrics(records, world), records


STAGE2_SPLITS = ("id_test", "ood_test", "style_test_random_placement")
"""The splits notebook 06 plays every model on: ID, OOD and the held-out generator style."""


def evaluation_key(model: str, split: str, limit: int | None) -> str:
    """The key of one (model, split, level limit) result in an evaluation cache: ``"name|split|limit"``."""
    return f"{model}|{split}|{limit}"


def evaluate_models(models: dict[str, Any], splits: Sequence[str], cache_file: str | Path, *, limit: int | None,
                    max_steps: int, history_len: int, generation_config: GenerationConfig, batch_size: int,
                    seed: int = 0, canvas: int = 0, dtype: str | None = None, device: str | None = None,
                    known: dict[str, dict] | None = None) -> dict[str, dict]:
    """Metrics of every model (name -> save_pretrained folder) on every split's first ``limit``
    levels, keyed by ``evaluation_key`` (``notebooks/06_dyna_grpo.ipynb``).

    Results already in ``cache_file`` or in ``known`` are not computed again; the
    cache is rewritten atomically after each new result, so an interrupted run
    keeps what it finished. A model is loaded only when one of its splits is missing.
    """
    from dynamind_lite.paths import level_file

    cache_file = Path(cache_file)
    evaluation = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    for key, metrics in (known or {}).items():
        evaluation.setdefault(key, metrics)
    for name, path in models.items():
        generator = None
        for split in splits:
            key = evaluation_key(name, split, limit)
            if key in evaluation:
                continue
            generator = generator or load_generator("hf", str(path), batch_size=batch_size, dtype=dtype, device=device)
            levels = load_levels(level_file(split), canvas=canvas)[:limit]
            evaluation[key], _ = evaluate_generator(generator, levels, max_steps=max_steps, history_len=history_len,
                                                    generation_config=generation_config, batch_size=batch_size,
                                                    seed=seed)
            write_json_atomic(cache_file, evaluation)
    return evaluation


def splits_table_markdown(evaluation: dict[str, dict], models: Sequence[str], limit: int | None) -> str:
    """DISTILL vs +GRPO vs +DYNA-GRPO on ``STAGE2_SPLITS``: success %, Sim Score (ID, held-out), Gen.Token ID."""
    lines = ["| Method | ID % | OOD % | held-out style % | Sim Score ID | Sim Score held-out | Gen.Token ID |",
             "|---|---|---|---|---|---|---|"]
    for name in models:
        ident, ood, held = (evaluation[evaluation_key(name, split, limit)] for split in STAGE2_SPLITS)
        lines.append(f"| {name} | {100 * ident['success_rate']:.1f} | {100 * ood['success_rate']:.1f} | "
                     f"{100 * held['success_rate']:.1f} | {ident['sim_score']:.2f} | {held['sim_score']:.2f} | "
                     f"{ident['mean_gen_tokens']:.0f} |")
    return "\n".join(lines)


def load_generator(backend: str, model: str, *, batch_size: int, base_url: str | None = None,
                   dtype: str | None = None, device: str | None = None) -> Generator:
    """The policy ``model`` behind ``backend``: ``"hf"`` loads it in this process
    (``models.load_policy`` with ``dtype``/``device``; None or "auto" picks), ``"vllm"``
    hands the name to vLLM, ``"openai"`` talks to the server at ``base_url`` that serves it."""
    if backend == "hf":
        from dynamind_lite.models import load_policy

        policy, tokenizer = load_policy(model, dtype=dtype, device=None if device == "auto" else device)
        return make_generator("hf", model=policy, tokenizer=tokenizer, batch_size=batch_size)
    if backend == "vllm":
        return make_generator("vllm", model=model)
    from dynamind_lite.llm import ChatClient

    return make_generator("openai", client=ChatClient(base_url, model), max_workers=batch_size)


# --------------------------------------------------------------------------- #
# Command line (plumbing)
# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dynamind_lite evaluate",
        description="Play every level of a JSONL level file with a model; write and print metrics JSON "
                    "(success rate with 95%% CI, exact Sim Score, Gen.Token, invalid-action rate).")
    parser.add_argument("--model", required=True, help="policy: save_pretrained directory or hub id "
                        "(for --backend openai: the model name the server knows)")
    parser.add_argument("--levels", required=True, help="JSONL level file in the format of data/sokoban/ "
                        "(--env alfworld: of data/alfworld/, or a folder of real games <task>/trial_*/game.tw-pddl)")
    parser.add_argument("--env", choices=("sokoban", "alfworld"), default="sokoban",
                        help="the world the levels belong to (dynamind_lite.worlds)")
    parser.add_argument("--out", required=True, help="where to write the metrics JSON (atomically)")
    parser.add_argument("--preset", default="tiny", help="preset giving the defaults below (tiny, small, full)")
    parser.add_argument("--max-steps", type=str, default=None,
                        help="step budget per episode (>= 1; default: the preset's for Sokoban, 50 for ALFWorld)")
    parser.add_argument("--limit", type=str, default=None, help="play only the first N levels (>= 1)")
    parser.add_argument("--batch-size", type=str, default=None, help="episodes in flight at once (>= 1)")
    parser.add_argument("--max-new-tokens", type=str, default=None, help="generation cap per response (>= 1)")
    parser.add_argument("--temperature", type=str, default=None, help="0 = greedy (default); sampling in (0, 2]")
    parser.add_argument("--history-len", type=str, default=None, help="h, previous steps in the prompt (>= 0)")
    parser.add_argument("--seed", type=str, default="0", help="sampling seed (round k uses seed + k)")
    parser.add_argument("--backend", choices=("hf", "vllm", "openai"), default=None,
                        help="generation engine (default: the preset's)")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server of --model (--backend openai)")
    parser.add_argument("--base-model", default=None, help="base model to play the same levels with, "
                        "for gen_token_ratio (same backend)")
    parser.add_argument("--judge-base-url", default=None, help="OpenAI-compatible server of an LLM judge "
                        "(adds sim_score_judge)")
    parser.add_argument("--judge-model", default=None, help="model name of the LLM judge")
    parser.add_argument("--judge-max-steps", type=str, default="50", help="judge at most this many steps (>= 1)")
    return parser


def _number(args: argparse.Namespace, name: str, kind: type, minimum: float | None = None,
            maximum: float | None = None) -> int | float | None:
    """The value of option ``--name`` converted to ``kind`` and range-checked (None stays None)."""
    raw = getattr(args, name.replace("-", "_"))
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"--{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number, got {raw!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"--{name} must be {bounds}, got {raw!r}")
    return value


def _check_model(option: str, name: str, backend: str) -> None:
    """A local-looking model path must be a checkpoint directory (hub ids and
    server-side names pass)."""
    if backend == "openai":
        return
    from dynamind_lite.models.loader import check_model_source

    try:
        check_model_source(name)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{option}: {err}") from None


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any], list[dict]]:
    """Parse and validate the command line before anything heavy is loaded.

    Returns ``(args, settings, levels)``: settings holds the checked numbers with
    the preset's defaults filled in; levels the (limited) parsed level file.
    Raises ValueError naming the bad option."""
    from dynamind_lite.config import get_preset

    args = build_parser().parse_args(list(argv))
    try:
        preset = get_preset(args.preset)
    except (KeyError, ValueError, FileNotFoundError) as err:
        raise ValueError(f"--preset: {err}") from None
    settings = {
        "max_steps": _number(args, "max-steps", int, 1),
        "limit": _number(args, "limit", int, 1),
        "batch_size": _number(args, "batch-size", int, 1),
        "max_new_tokens": _number(args, "max-new-tokens", int, 1),
        "temperature": _number(args, "temperature", float, 0.0, 2.0),
        "history_len": _number(args, "history-len", int, 0),
        "seed": _number(args, "seed", int),
        "judge_max_steps": _number(args, "judge-max-steps", int, 1),
    }
    world = get_world(args.env)
    defaults = {"max_steps": preset.max_steps if world is SOKOBAN else world.default_max_steps,
                "batch_size": preset.eval_batch_size,
                "max_new_tokens": preset.max_new_tokens, "temperature": preset.temperature,
                "history_len": preset.history_len}
    settings.update({key: value for key, value in defaults.items() if settings[key] is None})
    args.backend = args.backend or preset.generation_backend
    args.dtype, args.device = preset.dtype, preset.device
    if args.backend == "openai" and not args.base_url:
        raise ValueError("--backend openai needs --base-url (the server that serves --model)")
    if bool(args.judge_base_url) != bool(args.judge_model):
        raise ValueError("the LLM judge needs both --judge-base-url and --judge-model")
    if args.judge_model and world is not SOKOBAN:
        raise ValueError(f"the LLM judge cross-checks Sokoban's Sim Score; --env {args.env} has an exact text "
                         "Sim Score already")
    _check_model("--model", args.model, args.backend)
    if args.base_model is not None:
        _check_model("--base-model", args.base_model, args.backend)
    levels_path = Path(args.levels)
    if world is SOKOBAN and not levels_path.is_file():
        raise ValueError(f"levels file {args.levels!r} does not exist")
    try:
        world.check_installed()
        canvas = preset.board_canvas if world is SOKOBAN else 0  # the board layout the preset's model plays
        levels = world.load_levels(levels_path, canvas)
    except (ValueError, KeyError, json.JSONDecodeError, FileNotFoundError, ImportError) as err:
        raise ValueError(f"levels file {args.levels!r}: {err}") from None
    if not levels:
        raise ValueError(f"levels file {args.levels!r} holds no level")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {args.out!r} is a directory; give a file name such as metrics.json")
    return args, settings, levels[:settings["limit"]] if settings["limit"] else levels


def run_command(args: argparse.Namespace, settings: dict[str, Any], levels: list[dict]) -> dict[str, Any]:
    """Play ``levels`` with ``--model`` (and ``--base-model``), return the metrics dict."""
    temperature = settings["temperature"]
    generation_config = GenerationConfig(max_new_tokens=settings["max_new_tokens"], temperature=temperature,
                                         do_sample=temperature > 0, seed=settings["seed"])
    play = dict(max_steps=settings["max_steps"], history_len=settings["history_len"],
                generation_config=generation_config, batch_size=settings["batch_size"], seed=settings["seed"],
                progress=sys.stderr.isatty(), world=get_world(args.env))

    loading = dict(batch_size=settings["batch_size"], base_url=args.base_url, dtype=args.dtype, device=args.device)
    generator = load_generator(args.backend, args.model, **loading)
    metrics, records = evaluate_generator(generator, levels, **play)
    del generator
    if args.base_model is not None:
        base_generator = load_generator(args.backend, args.base_model, **loading)
        base_metrics, _ = evaluate_generator(base_generator, levels, **play)
        metrics["base_mean_gen_tokens"] = base_metrics["mean_gen_tokens"]
        metrics["gen_token_ratio"] = (metrics["mean_gen_tokens"] / base_metrics["mean_gen_tokens"]
                                      if base_metrics["mean_gen_tokens"] else None)
    if args.judge_model:
        from dynamind_lite.llm import ChatClient

        pairs = [pair for record in records for step in record.steps
                 if (pair := simulation_texts(step.response, step.observation)) is not None]
        pairs = pairs[:settings["judge_max_steps"]]
        metrics["sim_score_judge"] = judge_sim_score(ChatClient(args.judge_base_url, args.judge_model), pairs) \
            if pairs else None
        metrics["judge_model"] = args.judge_model
        metrics["num_judged_steps"] = len(pairs)
    metrics.update(model=args.model, base_model=args.base_model, levels=str(args.levels), env=args.env,
                   backend=args.backend,
                   preset=args.preset, **settings)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dynamind_lite evaluate ...``: 0 on success, 2 on a bad argument,
    1 when the model cannot be loaded."""
    try:
        args, settings, levels = parse_arguments(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse: --help (0) or a malformed command line (2)
        return int(exit_.code or 0)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        metrics = run_command(args, settings, levels)
    except OSError as err:  # a model that cannot be loaded (e.g. a hub id not cached while offline)
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_json_atomic(args.out, metrics)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0
