"""Regenerate the shipped Sokoban level sets in data/sokoban/, byte-identically.

    python scripts/make_sokoban_levels.py            # writes data/sokoban/*.jsonl
    python scripts/make_sokoban_levels.py --check    # regenerates in memory, fails if a file differs

ID  = 6x6 boards with 1 box  (RAGEN's SimpleSokoban), solutions of 3..15 moves.
OOD = 8x8 boards with 2 boxes (RAGEN's LargerSokoban), solutions of 3..22 moves.
Level i of a family comes from ``generate_level(seed=base + i)``; a grid already
taken by an earlier level is skipped, so no grid appears in two splits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynamind_lite.envs.sokoban import generate_level, solve
from dynamind_lite.io import jsonl_text, write_text_atomic

FAMILIES = {
    # family: (size, num_boxes, max_moves, base seed, [(split, count), ...])
    "id": ((6, 6), 1, 15, 0, [("train", 2000), ("val", 100), ("test", 200)]),
    "ood": ((8, 8), 2, 22, 1_000_000, [("train", 300), ("val", 50), ("test", 100)]),
}


def make_family(name: str) -> dict[str, list[dict]]:
    """All splits of one family, as lists of level records."""
    size, num_boxes, max_moves, base, splits = FAMILIES[name]
    seen: set[str] = set()
    seed = base
    out: dict[str, list[dict]] = {}
    for split, count in splits:
        rows = []
        while len(rows) < count:
            grid = generate_level(seed, size, num_boxes, max_moves=max_moves)
            if grid not in seen:
                seen.add(grid)
                rows.append({"id": f"{name}_{split}_{len(rows):04d}", "grid": grid, "solution": solve(grid),
                             "size": list(size), "num_boxes": num_boxes, "seed": seed})
            seed += 1
        out[f"{name}_{split}"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "sokoban")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    mismatches = 0
    for family in FAMILIES:
        for split, rows in make_family(family).items():
            path = args.out / f"{split}.jsonl"
            text = jsonl_text(rows)
            if args.check:
                same = path.is_file() and path.read_text(encoding="utf-8") == text
                mismatches += not same
                print(f"{path}: {'identical' if same else 'DIFFERS'}")
            else:
                write_text_atomic(path, text)
                print(f"{path}: {len(rows)} levels")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
