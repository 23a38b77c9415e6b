"""Benchmark: ALFWorld env speed on mini-ALFWorld games (reset, step, with and without the planner).

    python benchmarks/bench_alfworld.py [--games 12]

Plays the planner's solution of the first ``--games`` games of
``data/alfworld/id_test.jsonl`` (two per task type at the default) and prints the
seconds per reset of a new game and per new step, with ``expert=True`` (the
planner replans after every new transition, for RESIM's exact value) and
without; one invalid command (which never reaches TextWorld); and, from the
remembered transitions, a ``restore`` to the state before the last step and the
whole solution replayed again. Needs ``pip install -e ".[alfworld]"``.
Nothing is asserted; figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=12)
    args = parser.parse_args(argv)

    from dynamind_lite.envs.alfworld import AlfWorldEnv, ReplaySnapshot, load_mini_games
    from dynamind_lite.envs.mini_alfworld import tw_pddl
    from dynamind_lite.results import cpu_name

    specs = load_mini_games(ROOT / "data" / "alfworld" / "id_test.jsonl")
    specs = [specs[i] for i in range(0, len(specs), max(1, len(specs) // args.games))][:args.games]
    games = [tw_pddl(spec) for spec in specs]
    plans = []
    planner = AlfWorldEnv(expert=True)
    for game in games:
        plans.append(planner.reset(game)[1]["expert_plan"])
    print(f"{len(games)} games, {sum(map(len, plans))} planner steps; CPU: {cpu_name()}")
    print("| env | new game: reset s | new step s | invalid step s | restore (seen) s | solution replayed s |\n"
          "|---|---|---|---|---|---|")
    for expert in (False, True):
        env = AlfWorldEnv(expert=expert)
        resets, steps, invalid, restores, replays = [], [], [], [], []
        for game, plan in zip(games, plans):
            started = time.perf_counter()
            env.reset(game)
            resets.append(time.perf_counter() - started)
            for command in plan:
                started = time.perf_counter()
                env.step(command)
                steps.append(time.perf_counter() - started)
            before_last = ReplaySnapshot(tuple(plan[:-1]))
            started = time.perf_counter()
            env.restore(before_last)
            restores.append(time.perf_counter() - started)
            started = time.perf_counter()
            env.reset()
            for command in plan:
                env.step(command)
            replays.append(time.perf_counter() - started)
            env.reset()
            started = time.perf_counter()
            env.step("fly to the moon")
            invalid.append(time.perf_counter() - started)
        print(f"| expert={expert} | {statistics.median(resets):.3f} | {statistics.median(steps):.4f} | "
              f"{statistics.median(invalid):.5f} | {statistics.median(restores):.5f} | "
              f"{statistics.median(replays):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
