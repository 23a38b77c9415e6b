"""Generalisation of a policy to 6x6 one-box levels from *another* generator (not a test).

    python benchmarks/heldout_styles.py --model runs/demo/distill [--num-levels 200] [--seed 777000]

Our ID levels come from ``sokoban.generate_level`` (random reverse walk, keep the
state whose box is furthest from its target). A held-out check should not share
that bias, so this script makes levels the way gym-sokoban (and hence RAGEN's
SimpleSokoban) does, re-implemented here from its description:

- room: a random walk of int(1.7 * (H + W)) steps inside the border that keeps
  its direction with probability 0.65 and stamps one of five 3x3 masks (a line
  of three, a corner, a 2x2 block) at each position;
- player and target on two random floor cells, the box on the target;
- *exhaustive* reverse search (depth-first, pulls and plain moves, depth <= 300)
  keeping the state that maximises (number of pulls) x (box-to-target distance).

Levels already in a shipped split are skipped. The levels are written to
``--out`` (default ``runs/heldout/gym_style_6x6.jsonl``), played with the
evaluate command's code (greedy, step budget 30) and the script prints success,
Sim Score and success by optimal solution length. Unlike our ID split, about
two thirds of these levels need only 1-2 moves and a few need 8-10.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

from dynamind_lite.envs.sokoban import MOVES, load_levels, solve
from dynamind_lite.io import write_jsonl_atomic
from dynamind_lite.paths import level_file

Cell = tuple[int, int]
DIRECTIONS = list(MOVES.values())
MASKS = [  # offsets from the walk's position
    [(0, -1), (0, 0), (0, 1)],
    [(-1, 0), (0, 0), (1, 0)],
    [(0, -1), (0, 0), (1, 0)],
    [(0, -1), (0, 0), (1, -1), (1, 0)],
    [(0, 0), (0, 1), (1, 0)],
]


def walk_room(rng: random.Random, height: int, width: int, p_turn: float = 0.35) -> set[Cell]:
    """Floor cells of a direction-persistent random walk inside the border."""
    direction = rng.choice(DIRECTIONS)
    r, c = rng.randint(1, height - 1), rng.randint(1, width - 1)
    floor: set[Cell] = set()
    for _ in range(int(1.7 * (height + width))):
        if rng.random() < p_turn:
            direction = rng.choice(DIRECTIONS)
        r = min(max(r + direction[0], 1), height - 2)
        c = min(max(c + direction[1], 1), width - 2)
        floor |= {(r + dr, c + dc) for dr, dc in rng.choice(MASKS)
                  if 1 <= r + dr <= height - 2 and 1 <= c + dc <= width - 2}
    return floor


def furthest_pull_state(floor: set[Cell], target: Cell, player: Cell,
                        max_depth: int = 300) -> tuple[tuple[Cell, Cell], int]:
    """Reverse play from (player, box on target): the (player, box) state with the
    highest pulls x displacement score over a depth-first search; score 0 = none."""
    best, best_score = (player, target), 0
    seen: set[tuple[Cell, Cell]] = set()
    stack = [(player, target, 0, max_depth)]  # (player, box, pulls so far, depth left)
    while stack:
        at, box, pulls, depth = stack.pop()
        if depth <= 0 or (at, box) in seen:
            continue
        seen.add((at, box))
        score = pulls * (abs(box[0] - target[0]) + abs(box[1] - target[1]))
        if score > best_score:
            best, best_score = (at, box), score
        for dr, dc in DIRECTIONS:
            ahead = (at[0] + dr, at[1] + dc)
            if ahead not in floor or ahead == box:
                continue
            stack.append((ahead, box, pulls, depth - 1))  # plain move
            if (at[0] - dr, at[1] - dc) == box:  # pull the box behind the player
                stack.append((ahead, at, pulls + 1, depth - 1))
    return best, best_score


def render(height: int, width: int, floor: set[Cell], target: Cell, box: Cell, player: Cell) -> str:
    def symbol(cell: Cell) -> str:
        if cell not in floor:
            return "#"
        if cell == player:
            return "S" if cell == target else "P"
        if cell == box:
            return "√" if cell == target else "X"
        return "O" if cell == target else "_"

    return "\n".join("".join(symbol((r, c)) for c in range(width)) for r in range(height))


def gym_style_level(seed: int, height: int = 6, width: int = 6) -> str:
    """One solvable one-box level in the gym-sokoban style, the same for the same seed."""
    rng = random.Random(seed)
    while True:
        floor = walk_room(rng, height, width)
        if len(floor) < 3:
            continue
        cells = sorted(floor)
        player = rng.choice(cells)
        target = rng.choice([cell for cell in cells if cell != player])
        (player, box), score = furthest_pull_state(floor, target, player)
        if score > 0:
            return render(height, width, floor, target, box, player)


def make_levels(num_levels: int, first_seed: int) -> list[dict]:
    shipped = {level["grid"] for split in ("id_train", "id_val", "id_test") for level in load_levels(level_file(split))}
    levels, seed = [], first_seed
    while len(levels) < num_levels:
        grid = gym_style_level(seed)
        seed += 1
        if grid in shipped:
            continue
        shipped.add(grid)
        levels.append({"id": f"gym_style_{len(levels):04d}", "grid": grid, "solution": solve(grid), "seed": seed - 1})
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="save_pretrained directory of the policy")
    parser.add_argument("--num-levels", type=int, default=200)
    parser.add_argument("--seed", type=int, default=777_000, help="first generator seed")
    parser.add_argument("--out", default="runs/heldout/gym_style_6x6.jsonl")
    args = parser.parse_args()

    from dynamind_lite.evaluate import evaluate_generator, load_generator

    levels = make_levels(args.num_levels, args.seed)
    write_jsonl_atomic(args.out, levels)
    lengths = Counter(len(level["solution"]) for level in levels)
    print(f"{len(levels)} levels -> {args.out}; optimal moves: {dict(sorted(lengths.items()))}")
    generator = load_generator("hf", args.model, batch_size=200)
    metrics, records = evaluate_generator(generator, levels, max_steps=30, batch_size=200)
    by_length: dict[int, list[bool]] = defaultdict(list)
    for level, record in zip(levels, records, strict=True):
        by_length[len(level["solution"])].append(record.success)
    print(json.dumps({key: metrics[key] for key in ("success_rate", "ci95", "sim_score", "sim_cell_accuracy",
                                                    "invalid_action_rate", "mean_gen_tokens")}, indent=2))
    for length, outcomes in sorted(by_length.items()):
        print(f"  {length:2d} moves: {sum(outcomes):3d} / {len(outcomes):3d} solved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
