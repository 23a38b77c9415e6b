"""Speed of RESIM search and of the RESIM agent (not a test: prints figures).

    python benchmarks/bench_resim.py [--splits id_test ood_test] [--levels N] [--b 2] [--d 3] [--workers 2]

For each split, from the start state of every level:

- ``tree_cold`` / ``tree_warm``: tree nodes per second of ``build_tree`` alone
  (noisy solver policy, exact value), with the solver's cache emptied first
  (every value is a BFS) and then warm (a second and third pass);
- ``agent``: decisions per second of the whole RESIM agent (search + template
  aggregation + env step), one process, solver cache emptied first;
- ``collect``: levels and decisions per second of ``collect_episodes`` with
  ``--workers`` processes (process start-up included), the way the CLI runs;
- env steps per decision: the search cost, independent of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from dynamind_lite.collect import ResimConfig, collect_episodes  # noqa: E402
from dynamind_lite.envs import sokoban  # noqa: E402
from dynamind_lite.paths import level_file  # noqa: E402
from dynamind_lite.search import ExactValue, NoisySolverPolicy, build_tree  # noqa: E402


def clear_solver_cache() -> None:
    sokoban._cached_solve.cache_clear()  # every ExactValue / NoisySolverPolicy call becomes a fresh BFS


def bench_trees(levels: list[dict], b: int, d: int, repeats: int) -> dict:
    env = sokoban.SokobanEnv(max_steps=30)
    policy, value_fn = NoisySolverPolicy(0.1), ExactValue()
    rng = random.Random(0)
    nodes = 0
    start = time.perf_counter()
    for _ in range(repeats):
        for level in levels:
            env.reset(options={"grid": level["grid"]})
            nodes += build_tree(env, env.snapshot(), policy, b, d, value_fn, rng).num_nodes() - 1
    elapsed = time.perf_counter() - start
    return {"trees": repeats * len(levels), "nodes": nodes, "seconds": round(elapsed, 4),
            "nodes_per_s": round(nodes / elapsed)}


def bench_agent(levels: list[dict], config: ResimConfig, workers: int) -> dict:
    start = time.perf_counter()
    episodes = collect_episodes(levels, config, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    steps = [s for e in episodes for s in e.steps]
    return {"workers": workers, "episodes": len(episodes), "decisions": len(steps), "seconds": round(elapsed, 3),
            "levels_per_s": round(len(episodes) / elapsed, 1), "decisions_per_s": round(len(steps) / elapsed),
            "env_steps_per_decision": round(sum(s.env_steps for s in steps) / len(steps), 3),
            "success_rate": sum(e.success for e in episodes) / len(episodes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=["id_test", "ood_test"])
    parser.add_argument("--levels", type=int, default=None, help="first N levels of each split (default: all)")
    parser.add_argument("--b", type=int, default=ResimConfig.b)
    parser.add_argument("--d", type=int, default=ResimConfig.d)
    parser.add_argument("--workers", type=int, default=2, help="processes for the collect measurement")
    args = parser.parse_args()
    config = ResimConfig(b=args.b, d=args.d)
    for split in args.splits:
        levels = sokoban.load_levels(level_file(split))[:args.levels]
        clear_solver_cache()
        cold = bench_trees(levels, args.b, args.d, repeats=1)
        warm = bench_trees(levels, args.b, args.d, repeats=2)
        clear_solver_cache()
        agent = bench_agent(levels, config, workers=1)
        collect = bench_agent(levels, config, workers=args.workers)
        print(json.dumps({"split": split, "levels": len(levels), "b": args.b, "d": args.d, "tree_cold": cold,
                          "tree_warm": warm, "agent": agent, "collect": collect}))


if __name__ == "__main__":
    main()
