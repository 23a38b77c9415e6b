"""Speed of the Sokoban MDP and its solver (not a test: prints figures).

    python benchmarks/bench_env.py [--steps 200000] [--invalid-rate 0.1] [--seed 0]

Over the shipped test levels (data/sokoban/id_test.jsonl and ood_test.jsonl):

- ``env.step``: SokobanEnv.step with random actions (valid, in random spellings,
  and a fraction of invalid ones), resetting to the next level when an
  episode ends (resets are included in the time);
- ``step_grid``: the pure text transition (parse + move + render per call),
  valid actions only (an invalid one is an error there);
- ``snapshot+restore``: one snapshot() and one restore() per iteration;
- ``solve``: the exact BFS on every test level, solver cache emptied first
  (``sokoban._cached_solve.cache_clear()``), so each call is a fresh search.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from dynamind_lite.envs import sokoban
from dynamind_lite.paths import level_file
from dynamind_lite.response import ACTIONS, canonical_action

SPELLINGS = [*ACTIONS, "up", "DOWN", " left ", "Right\n"]
INVALID = ["", "jump", "Up Left", "<answer>Up</answer>", "noop"]


def random_actions(rng: random.Random, n: int, invalid_rate: float) -> list[str]:
    return [rng.choice(INVALID) if rng.random() < invalid_rate else rng.choice(SPELLINGS) for _ in range(n)]


def bench_env_step(grids: list[str], actions: list[str]) -> float:
    env = sokoban.SokobanEnv(max_steps=30)
    level = 0
    env.reset(options={"grid": grids[0]})
    started = time.perf_counter()
    for action in actions:
        if env.done:
            level = (level + 1) % len(grids)
            env.reset(options={"grid": grids[level]})
        env.step(action)
    return len(actions) / (time.perf_counter() - started)


def bench_step_grid(grids: list[str], actions: list[str]) -> float:
    valid = [a for a in actions if canonical_action(a) is not None]
    grid, level = grids[0], 0
    started = time.perf_counter()
    for i, action in enumerate(valid):
        if i % 30 == 29:  # a fresh level every 30 steps, as an episode would
            level = (level + 1) % len(grids)
            grid = grids[level]
        grid = sokoban.step_grid(grid, action)
    return len(valid) / (time.perf_counter() - started)


def bench_snapshots(grids: list[str], n: int) -> float:
    env = sokoban.SokobanEnv(max_steps=30)
    env.reset(options={"grid": grids[0]})
    env.step("Up")
    started = time.perf_counter()
    for _ in range(n):
        env.restore(env.snapshot())
    return n / (time.perf_counter() - started)


def bench_solver(grids: list[str]) -> list[float]:
    sokoban._cached_solve.cache_clear()  # every call a fresh BFS
    times = []
    for grid in grids:
        started = time.perf_counter()
        plan = sokoban.solve(grid)
        times.append(1000 * (time.perf_counter() - started))
        assert plan is not None
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000, help="actions per step benchmark")
    parser.add_argument("--invalid-rate", type=float, default=0.1, help="fraction of invalid actions for env.step")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    splits = {split: [lv["grid"] for lv in sokoban.load_levels(level_file(split))] for split in ("id_test", "ood_test")}
    rng = random.Random(args.seed)
    actions = random_actions(rng, args.steps, args.invalid_rate)
    both = splits["id_test"] + splits["ood_test"]
    print(f"levels: {len(splits['id_test'])} id_test (6x6, 1 box) + {len(splits['ood_test'])} ood_test (8x8, 2 boxes)")
    print(f"env.step          {bench_env_step(both, actions):>11,.0f} steps/s  "
          f"({args.steps:,} actions, {args.invalid_rate:.0%} invalid, resets included)")
    print(f"step_grid         {bench_step_grid(both, actions):>11,.0f} steps/s  (parse + move + render per call)")
    print(f"snapshot+restore  {bench_snapshots(both, args.steps):>11,.0f} pairs/s")
    for split, grids in splits.items():
        times = bench_solver(grids)
        print(f"solve {split:<10}  mean {statistics.mean(times):7.2f} ms  median {statistics.median(times):7.2f} ms  "
              f"max {max(times):8.2f} ms  total {sum(times) / 1000:6.2f} s  ({len(grids)} levels, cache cleared)")


if __name__ == "__main__":
    main()
