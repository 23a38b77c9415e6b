"""Benchmark: ALFWorld env speed on mini-ALFWorld games (reset, step, with and without the planner).

    python benchmarks/bench_alfworld.py [--games 12] [--resim-games 30]

Plays the planner's solution of the first ``--games`` games of
``data/alfworld/id_test.jsonl`` (two per task type at the default) and prints the
seconds per reset of a new game and per new step, with ``expert=True`` (the
planner replans after every new transition, for RESIM's exact value) and
without; one invalid command (which never reaches TextWorld); and, from the
remembered transitions, a ``restore`` to the state before the last step and the
whole solution replayed again. With ``--resim-games N`` it also times the RESIM
agent (b=2, d=2, one process) collecting SFT data on the first N games of
``id_train``: the search trees jump between states, so this measures replays
(``AlfWorldEnv._replay``) as RESIM meets them. Needs ``pip install -e ".[alfworld]"``.
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
    parser.add_argument("--resim-games", type=int, default=0, help="also time RESIM data collection on N games")
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
    if args.resim_games:
        time_resim(args.resim_games)
    return 0


def time_resim(num_games: int) -> None:
    """Seconds the RESIM agent takes to collect SFT data on ``num_games`` training games, in one process."""
    import tempfile

    from dynamind_lite.collect import ResimConfig, collect_sft_data
    from dynamind_lite.envs.alfworld import load_mini_games

    games = load_mini_games(ROOT / "data" / "alfworld" / "id_train.jsonl")[:num_games]
    config = ResimConfig(env="alfworld", b=2, d=2, epsilon=0.1, history_len=5, max_steps=50, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = collect_sft_data(games, Path(tmp) / "train.jsonl", config, workers=1, progress=False)
        seconds = time.perf_counter() - started
    print(f"RESIM on {summary['num_levels']} id_train games (b=2, d=2, one process): {seconds:.1f} s, "
          f"{summary['num_decisions']} decisions, {summary['num_decisions'] / seconds:.1f} decisions/s")


if __name__ == "__main__":
    sys.exit(main())
